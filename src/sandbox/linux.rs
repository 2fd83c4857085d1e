//! The Linux confinement: a [`Plan`] is prepared in Pryx (paths as C strings, the uid map,
//! the Landlock ruleset's file descriptor); `crate::sandbox::process` clones the child
//! straight into [`Plan::clone_flags`]' namespaces, and there [`Plan::confine`] finishes the
//! job before exec.
//!
//! Invariant: [`Plan::confine`] and everything it calls make raw system calls only. The child
//! of a multi-threaded process may not allocate or take a lock (another thread may have held
//! it at the clone).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::rules::{self, RuleSpec};
use super::{CommandJail, CommandNetwork, Hiding, PrivatePaths, Protection};

/// Most directories a plan can bind back into a hidden one (workspace roots).
const MAX_KEPT: usize = 32;

/// What the kernel here allows, found once per process.
struct Support {
    /// User, mount, PID and network namespaces, and mounting in them.
    namespaces: bool,
    /// Landlock's ABI version (0: none).
    landlock_abi: i32,
}

fn support() -> &'static Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT.get_or_init(|| Support { namespaces: namespaces_work(), landlock_abi: rules::kernel_abi() })
}

/// Run `/bin/sh -c :` under a plan with every namespace and a private `/tmp`.
fn namespaces_work() -> bool {
    let mut plan = Plan::new(Path::new("/"));
    plan.namespaces = Some(Namespaces {
        flags: libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWNET,
        empty_dirs: vec![(c"/tmp".to_owned(), TMP_OPTIONS)],
        loopback: true,
        ..Namespaces::identity()
    });
    let probe = super::Program::new("/bin/sh", ["-c", ":"], Path::new("/"));
    super::process::run_to_end(&plan, &probe).is_ok_and(|status| status.success())
}

/// What programs get here.
pub(super) fn protection(shell_network: bool) -> Protection {
    let support = support();
    let landlock = match support.landlock_abi {
        0 => "none",
        1..=5 => "partial",
        _ => "full",
    };
    let hiding = match (support.namespaces, support.landlock_abi) {
        (true, _) => Hiding::MountNamespace,
        (false, 1..) => Hiding::LandlockRules,
        (false, _) => Hiding::None,
    };
    let network = match (shell_network, support.namespaces || SECCOMP_HERE) {
        (true, _) => CommandNetwork::On,
        (false, true) => CommandNetwork::Off,
        (false, false) => CommandNetwork::Open,
    };
    Protection { landlock: landlock.into(), pid_namespace: support.namespaces, hiding, network }
}

/// Whether Pryx knows this architecture's system call numbers for its seccomp filter.
const SECCOMP_HERE: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// tmpfs options: a private directory, and a shared temp dir.
const PRIVATE_OPTIONS: &CStr = c"mode=0700";
const TMP_OPTIONS: &CStr = c"mode=1777";

/// Everything the child does, prepared.
pub(super) struct Plan {
    namespaces: Option<Namespaces>,
    landlock: Option<OwnedFd>,
    /// A seccomp filter refusing the kernel keyring and some sockets (`rules::seccomp_filter`).
    seccomp: Option<Vec<libc::sock_filter>>,
    /// Where the program starts (entered after the mounts).
    cwd: CString,
}

struct Namespaces {
    flags: libc::c_int,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// Files covered with `/dev/null`.
    empty_files: Vec<CString>,
    /// Directories covered with an empty tmpfs, deepest first, so one inside another is
    /// covered before the outer one hides it.
    empty_dirs: Vec<(CString, &'static CStr)>,
    /// Directories bound back into a covered one.
    kept: Vec<Kept>,
    loopback: bool,
}

struct Kept {
    path: CString,
    /// The directories to make in the covering tmpfs first, outermost first.
    make: Vec<CString>,
}

impl Namespaces {
    /// User, mount and PID namespaces mapping this user to itself; nothing hidden yet.
    fn identity() -> Namespaces {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Namespaces {
            flags: libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID,
            uid_map: format!("{uid} {uid} 1").into_bytes(),
            gid_map: format!("{gid} {gid} 1").into_bytes(),
            empty_files: Vec::new(),
            empty_dirs: Vec::new(),
            kept: Vec::new(),
            loopback: false,
        }
    }

    /// Cover `files` and `dirs` and keep `keep` visible. A kept directory that is itself
    /// covered is refused (the directory to hide would be in reach).
    fn hide(&mut self, files: &[PathBuf], dirs: &[(PathBuf, &'static CStr)], keep: &[PathBuf]) -> io::Result<()> {
        self.empty_files = files.iter().map(|f| c_path(f)).collect::<io::Result<_>>()?;
        let mut dirs = dirs.to_vec();
        dirs.sort_by_key(|(dir, _)| std::cmp::Reverse(dir.components().count()));
        self.empty_dirs = dirs.iter().map(|(dir, options)| Ok((c_path(dir)?, *options))).collect::<io::Result<_>>()?;
        for path in keep {
            if dirs.iter().any(|(dir, _)| dir == path) {
                return Err(io::Error::other(format!(
                    "{} is one of the directories programs may not see; choose another workspace",
                    path.display()
                )));
            }
            // The outermost covering directory is what is visible there after the mounts.
            let Some((outer, _)) =
                dirs.iter().filter(|(dir, _)| path.starts_with(dir)).min_by_key(|(dir, _)| dir.components().count())
            else {
                continue;
            };
            let mut make = Vec::new();
            let mut at = outer.clone();
            for part in path.strip_prefix(outer).map_err(io::Error::other)?.components() {
                at.push(part);
                make.push(c_path(&at)?);
            }
            self.kept.push(Kept { path: c_path(path)?, make });
        }
        if self.kept.len() > MAX_KEPT {
            return Err(io::Error::other(format!("more than {MAX_KEPT} workspace roots lie in hidden directories")));
        }
        Ok(())
    }
}

/// `paths` as canonical paths where they resolve (mounts and rules need the real ones).
fn canonical(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths.iter().map(|path| path.canonicalize().unwrap_or_else(|_| path.clone())).collect()
}

/// Pryx's private directories, each to be covered with a private tmpfs.
fn covered(private: &PrivatePaths) -> Vec<(PathBuf, &'static CStr)> {
    private.dirs.iter().map(|dir| (dir.clone(), PRIVATE_OPTIONS)).collect()
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other(format!("{path:?} contains a NUL byte")))
}

/// A shell command's seccomp filter: no kernel keyring, no `io_uring`, no sockets of `domains`.
fn command_filter(domains: &[libc::c_int]) -> Option<Vec<libc::sock_filter>> {
    SECCOMP_HERE.then(|| rules::seccomp_filter(&[rules::KEYRING_CALLS, rules::IO_URING_CALLS].concat(), domains))
}

/// The per-user runtime dir (session bus, keyring, other programs' sockets).
fn runtime_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        // SAFETY: getuid cannot fail.
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", unsafe { libc::getuid() })));
    dir.canonicalize().ok().filter(|d| d.is_dir() && d != Path::new("/"))
}

impl Plan {
    /// Nothing but a start in `cwd`: for programs Pryx trusts as they are.
    pub(super) fn new(cwd: &Path) -> Plan {
        Plan { namespaces: None, landlock: None, seccomp: None, cwd: c_path(cwd).unwrap_or_else(|_| c"/".to_owned()) }
    }

    /// A shell command: see the module docs of `crate::sandbox`.
    pub(super) fn for_command(private: &PrivatePaths, jail: &CommandJail<'_>, cwd: &Path) -> io::Result<Plan> {
        let support = support();
        let write_roots = canonical(jail.write_roots);
        let runtime = runtime_dir();
        let mut plan = Plan::new(cwd);
        if support.namespaces {
            let mut namespaces = Namespaces::identity();
            if !jail.network {
                namespaces.flags |= libc::CLONE_NEWNET;
                namespaces.loopback = true;
            }
            let mut dirs = covered(private);
            dirs.extend(runtime.map(|dir| (dir, PRIVATE_OPTIONS)));
            // A workspace that is the temp dir itself keeps the shared one.
            for shared in ["/tmp", "/dev/shm"].map(PathBuf::from) {
                if shared.is_dir() && !write_roots.contains(&shared) {
                    dirs.push((shared, TMP_OPTIONS));
                }
            }
            namespaces.hide(&private.files, &dirs, &write_roots)?;
            plan.namespaces = Some(namespaces);
            if support.landlock_abi > 0 {
                plan.landlock = RuleSpec::command(&write_roots, &[]).build().map_err(io::Error::other)?;
            }
            // Abstract Unix sockets (a session bus's other address) ignore mounts: a network
            // namespace or Landlock's scope closes them; without either, no Unix sockets.
            let domains: &[libc::c_int] = if jail.network && support.landlock_abi < 6 { &[libc::AF_UNIX] } else { &[] };
            plan.seccomp = command_filter(domains);
        } else {
            let mut hidden: Vec<PathBuf> = private.paths().map(Path::to_path_buf).collect();
            hidden.extend(runtime);
            if support.landlock_abi > 0 {
                plan.landlock = RuleSpec::command(&write_roots, &hidden).build().map_err(io::Error::other)?;
            }
            // Nothing hides the session bus or Pryx's port here: no Unix sockets, and no
            // Internet sockets without network.
            let mut domains = vec![libc::AF_UNIX];
            if !jail.network {
                domains.extend([libc::AF_INET, libc::AF_INET6]);
            }
            plan.seccomp = command_filter(&domains);
        }
        Ok(plan)
    }

    /// An MCP stdio server: Pryx's private paths hidden, `keep` visible, nothing else changed.
    pub(super) fn for_server(private: &PrivatePaths, cwd: &Path, keep: &[PathBuf]) -> io::Result<Plan> {
        let support = support();
        let keep = canonical(keep);
        let mut plan = Plan::new(cwd);
        if support.namespaces {
            let mut namespaces = Namespaces::identity();
            namespaces.hide(&private.files, &covered(private), &keep)?;
            plan.namespaces = Some(namespaces);
            // A Landlock domain that allows every file access still keeps the server from
            // tracing Pryx, so `/proc/PID/root`, `environ` and `fd` of Pryx stay closed
            // even where the kernel refuses it a fresh `/proc` (in containers).
            if support.landlock_abi > 0 {
                plan.landlock = RuleSpec::server(&[], &[]).build().map_err(io::Error::other)?;
            }
        } else if support.landlock_abi > 0 {
            let hidden: Vec<PathBuf> = private.paths().map(Path::to_path_buf).collect();
            if !hidden.is_empty() {
                plan.landlock = RuleSpec::server(&hidden, &keep).build().map_err(io::Error::other)?;
            }
            // Without a user namespace, the persistent keyring is the user's own.
            if SECCOMP_HERE {
                plan.seccomp = Some(rules::seccomp_filter(rules::KEYRING_CALLS, &[]));
            }
        }
        Ok(plan)
    }

    /// The namespaces to clone the child into (with `SIGCHLD`: a plain child otherwise).
    pub(super) fn clone_flags(&self) -> libc::c_int {
        self.namespaces.as_ref().map_or(0, |namespaces| namespaces.flags)
    }

    /// In the child (cloned with [`Self::clone_flags`]), before exec: map the ids, arrange the
    /// mounts, start in the working directory, drop every capability, restrict with Landlock.
    /// Raw system calls only (see the module docs).
    pub(super) fn confine(&self) -> io::Result<()> {
        // SAFETY: each call below is a plain system call on memory prepared before the clone.
        unsafe {
            if let Some(namespaces) = &self.namespaces {
                // Map this user to itself, so files keep their owner.
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &namespaces.uid_map)?;
                write_file(c"/proc/self/gid_map", &namespaces.gid_map)?;
                arrange(namespaces)?;
            }
            check(libc::chdir(self.cwd.as_ptr()))?;
            // A fresh, empty session keyring: the one inherited from Pryx may hold its secrets
            // (the kernel-keyring backend). Fails only where the kernel has no keyrings.
            const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
            libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, std::ptr::null::<libc::c_char>());
            drop_capabilities();
            if self.landlock.is_some() || self.seccomp.is_some() {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            if let Some(ruleset) = &self.landlock {
                check(libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0) as libc::c_int)?;
            }
            if let Some(filter) = &self.seccomp {
                let program =
                    libc::sock_fprog { len: filter.len() as libc::c_ushort, filter: filter.as_ptr().cast_mut() };
                check(libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ))?;
            }
        }
        Ok(())
    }
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// The mounts, in the new namespaces: hide, bind the kept directories back, fresh `/proc`.
unsafe fn arrange(namespaces: &Namespaces) -> io::Result<()> {
    let none = std::ptr::null::<libc::c_char>();
    check(libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
    // Handles on the kept directories, taken before anything covers them.
    let mut kept_fds = [-1 as libc::c_int; MAX_KEPT];
    for (slot, kept) in kept_fds.iter_mut().zip(&namespaces.kept) {
        *slot = check(libc::open(kept.path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC))?;
    }
    for file in &namespaces.empty_files {
        check(libc::mount(c"/dev/null".as_ptr(), file.as_ptr(), none, libc::MS_BIND, std::ptr::null()))?;
    }
    for (dir, options) in &namespaces.empty_dirs {
        let flags = libc::MS_NOSUID | libc::MS_NODEV;
        check(libc::mount(c"tmpfs".as_ptr(), dir.as_ptr(), c"tmpfs".as_ptr(), flags, options.as_ptr().cast()))?;
    }
    for (fd, kept) in kept_fds.iter().zip(&namespaces.kept) {
        for dir in &kept.make {
            if libc::mkdir(dir.as_ptr(), 0o755) == -1 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
            {
                return Err(io::Error::last_os_error());
            }
        }
        let mut source = [0u8; 32];
        fd_path(*fd, &mut source);
        check(libc::mount(
            source.as_ptr().cast(),
            kept.path.as_ptr(),
            none,
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
        libc::close(*fd);
    }
    if namespaces.loopback {
        loopback_up();
    }
    // Only this namespace's processes in /proc. Best effort: a kernel that masks parts of
    // /proc (in a container) refuses; Landlock still keeps Pryx's /proc entries closed.
    let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    libc::mount(c"proc".as_ptr(), c"/proc".as_ptr(), c"proc".as_ptr(), proc_flags, std::ptr::null());
    Ok(())
}

/// `/proc/self/fd/N` into `buffer`, NUL-terminated, without allocating.
fn fd_path(fd: libc::c_int, buffer: &mut [u8; 32]) {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buffer[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut count = 0;
    let mut rest = fd.max(0) as u32;
    loop {
        digits[count] = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for (i, digit) in digits[..count].iter().rev().enumerate() {
        buffer[PREFIX.len() + i] = *digit;
    }
    buffer[PREFIX.len() + count] = 0;
}

/// Bring up the new network namespace's loopback, so programs can talk to themselves.
unsafe fn loopback_up() {
    let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if socket < 0 {
        return;
    }
    let mut request: libc::ifreq = std::mem::zeroed();
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    if libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request) == 0 {
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        libc::ioctl(socket, libc::SIOCSIFFLAGS, &request);
    }
    libc::close(socket);
}

/// No capabilities from here on, not even through exec as root: the program cannot undo
/// the mounts. Fails silently where there were none to drop.
unsafe fn drop_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    for capability in 0..64 {
        libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0);
    }
    libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    let header = Header { version: CAPABILITY_VERSION_3, pid: 0 };
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    libc::syscall(libc::SYS_capset, &header, data.as_ptr());
}

/// Write `bytes` to a /proc file. A missing `setgroups` (kernels before 3.19) is fine.
unsafe fn write_file(path: &CStr, bytes: &[u8]) -> io::Result<()> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        let error = io::Error::last_os_error();
        return if error.raw_os_error() == Some(libc::ENOENT) { Ok(()) } else { Err(error) };
    }
    let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
    libc::close(fd);
    if written < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_paths_are_written_without_allocating() {
        let mut buffer = [0u8; 32];
        for (fd, expected) in [(0, "/proc/self/fd/0"), (7, "/proc/self/fd/7"), (1234567, "/proc/self/fd/1234567")] {
            fd_path(fd, &mut buffer);
            assert_eq!(CStr::from_bytes_until_nul(&buffer).unwrap().to_str().unwrap(), expected);
        }
    }

    #[test]
    fn kept_directories_are_rebuilt_inside_the_outermost_cover() {
        let mut namespaces = Namespaces::identity();
        let dirs = [
            (PathBuf::from("/tmp"), TMP_OPTIONS),
            (PathBuf::from("/tmp/t/data"), PRIVATE_OPTIONS),
            (PathBuf::from("/home/me/.local/share/pryx"), PRIVATE_OPTIONS),
        ];
        let keep = [PathBuf::from("/tmp/t/data/workspace"), PathBuf::from("/home/me/code")];
        namespaces.hide(&[], &dirs, &keep).unwrap();
        let covered: Vec<&str> = namespaces.empty_dirs.iter().map(|(d, _)| d.to_str().unwrap()).collect();
        assert_eq!(covered, ["/home/me/.local/share/pryx", "/tmp/t/data", "/tmp"], "deepest first");
        assert_eq!(namespaces.kept.len(), 1, "a root outside every cover needs nothing");
        let made: Vec<&str> = namespaces.kept[0].make.iter().map(|d| d.to_str().unwrap()).collect();
        assert_eq!(made, ["/tmp/t", "/tmp/t/data", "/tmp/t/data/workspace"]);

        let mut clash = Namespaces::identity();
        let error = clash.hide(&[], &dirs, &[PathBuf::from("/tmp/t/data")]).unwrap_err();
        assert!(error.to_string().contains("choose another workspace"), "{error}");
    }
}
