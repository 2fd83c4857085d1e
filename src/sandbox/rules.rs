//! Landlock rulesets, built in Pryx before the fork and handed to the child as a file
//! descriptor (the child only calls `landlock_restrict_self` on it).
//!
//! Landlock allows, it cannot deny: to keep a directory unreadable while everything around
//! it stays readable, [`carve`] grants every sibling along the way instead of the common
//! ancestor. That is the fallback where no mount namespace can hide the directory.
//!
//! Also here: the seccomp filter ([`seccomp_filter`]) that refuses the kernel keyring and
//! the sockets a program may not open where no namespace isolates them.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError, Scope, ABI,
};

/// The newest Landlock ABI Pryx asks for: file access (V5), TCP (V4), scopes (V6). Older
/// kernels enforce what they know (best effort).
const ABI_WANTED: ABI = ABI::V6;

/// Devices a shell command may write to wherever it runs.
const WRITABLE_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/urandom", "/dev/random"];

/// What a ruleset allows.
pub(super) struct RuleSpec {
    /// Read (and execute) beneath these.
    pub read: Vec<PathBuf>,
    /// Everything beneath these.
    pub full: Vec<PathBuf>,
    /// Refuse abstract Unix sockets and signals to processes outside the sandbox.
    pub scope_ipc: bool,
}

impl RuleSpec {
    /// A shell command: read what is visible, write in `write_roots`, `/tmp` and the devices.
    /// `hidden` (except the write roots inside it) is kept out too: only needed without a
    /// mount namespace.
    pub fn command(write_roots: &[PathBuf], hidden: &[PathBuf]) -> RuleSpec {
        let mut writable: Vec<PathBuf> = write_roots.to_vec();
        writable.push(PathBuf::from("/tmp"));
        let mut full: Vec<PathBuf> = writable.iter().flat_map(|root| carve(root, hidden, write_roots)).collect();
        full.extend(WRITABLE_DEVICES.iter().map(PathBuf::from));
        RuleSpec { read: carve(Path::new("/"), hidden, write_roots), full, scope_ipc: true }
    }

    /// An MCP server without a mount namespace: anything but `hidden` (except `keep`).
    pub fn server(hidden: &[PathBuf], keep: &[PathBuf]) -> RuleSpec {
        RuleSpec { read: Vec::new(), full: carve(Path::new("/"), hidden, keep), scope_ipc: false }
    }

    /// The ruleset as a file descriptor; `None` where the kernel has no Landlock.
    pub fn build(&self) -> Result<Option<OwnedFd>, RulesetError> {
        let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(ABI_WANTED))?;
        if self.scope_ipc {
            ruleset = ruleset.scope(Scope::from_all(ABI_WANTED))?;
        }
        let created = ruleset
            .create()?
            .add_rules(path_beneath_rules(&self.read, AccessFs::from_read(ABI_WANTED)))?
            .add_rules(path_beneath_rules(&self.full, AccessFs::from_all(ABI_WANTED)))?;
        Ok(created.into())
    }
}

/// The kernel's Landlock ABI version (0: none).
pub(super) fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented way to ask for the version: no ruleset, size 0, the flag.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(version).unwrap_or(0).max(0)
}

/// Paths whose union is everything beneath `root` that is visible: a path is hidden when
/// the nearest of `hidden` and `keep` at or above it is a hidden one (so a workspace kept
/// inside the hidden data dir stays, and a data dir inside the workspace goes). Whole
/// directories are granted where nothing below them changes that; otherwise their entries,
/// recursively. A symbolic link whose target is, holds or lies in a hidden path is left
/// out (a rule on it would follow it). Paths must be canonical. Entries made later in a
/// carved directory are not covered: this is a fallback, weaker than a mount namespace.
pub(super) fn carve(root: &Path, hidden: &[PathBuf], keep: &[PathBuf]) -> Vec<PathBuf> {
    let below = |paths: &[PathBuf]| paths.iter().any(|p| p.starts_with(root) && p != root);
    let visible = is_visible(root, hidden, keep);
    if visible && !below(hidden) {
        return vec![root.to_owned()];
    }
    if !visible && !below(keep) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut allowed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            allowed.extend(carve(&path, hidden, keep));
        } else if kind.is_symlink() {
            let touches_hidden = match path.canonicalize() {
                Ok(target) => hidden.iter().any(|h| target.starts_with(h) || h.starts_with(&target)),
                Err(_) => false,
            };
            if !touches_hidden && is_visible(&path, hidden, keep) {
                allowed.push(path);
            }
        } else if is_visible(&path, hidden, keep) {
            allowed.push(path);
        }
    }
    allowed
}

/// Whether the nearest of `hidden` and `keep` at or above `path` (if any) is a kept one.
fn is_visible(path: &Path, hidden: &[PathBuf], keep: &[PathBuf]) -> bool {
    let nearest =
        |paths: &[PathBuf]| paths.iter().filter(|p| path.starts_with(p)).map(|p| p.components().count()).max();
    match (nearest(hidden), nearest(keep)) {
        (None, _) => true,
        (Some(hidden), Some(kept)) => kept > hidden,
        (Some(_), None) => false,
    }
}

/// The kernel keyring's system calls: Pryx's secrets live there on headless machines, and
/// the persistent keyring outlives the session a program was given.
pub(super) const KEYRING_CALLS: &[libc::c_long] = &[libc::SYS_keyctl, libc::SYS_add_key, libc::SYS_request_key];
/// `io_uring` can open sockets without `socket()`, past a filter on it.
pub(super) const IO_URING_CALLS: &[libc::c_long] =
    &[libc::SYS_io_uring_setup, libc::SYS_io_uring_enter, libc::SYS_io_uring_register];

/// A seccomp filter refusing (with `EACCES`) the system calls `calls` and `socket()` for
/// `domains`. Other architectures' system calls (a 32-bit program on a 64-bit kernel) are
/// refused too: their numbers differ.
pub(super) fn seccomp_filter(calls: &[libc::c_long], domains: &[libc::c_int]) -> Vec<libc::sock_filter> {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    const ARCH: u32 = 0; // unknown: every call is refused; `Plan` installs no filter there
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // Offsets in `struct seccomp_data`: nr, arch, args[0] (its low half, little-endian).
    const NR: u32 = 0;
    const ARCH_OFFSET: u32 = 4;
    const ARG0: u32 = 16;
    let load = |offset| libc::sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k: offset,
    };
    let ret = |value| libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: value };
    // Layout: 0 load arch, 1 check, 2 load nr, 3 x32, call checks, socket check, load arg,
    // domain checks, ALLOW, DENY.
    let allow = 6 + calls.len() + domains.len();
    let deny = allow + 1;
    let mut program = Vec::with_capacity(deny + 1);
    // A jump from instruction `at`: `jt` when the comparison holds, `jf` otherwise.
    let jump = |at: usize, op: u32, k: u32, jt: usize, jf: usize| libc::sock_filter {
        code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
        jt: (jt - at - 1) as u8,
        jf: (jf - at - 1) as u8,
        k,
    };
    program.push(load(ARCH_OFFSET));
    program.push(jump(1, libc::BPF_JEQ, ARCH, 2, deny));
    program.push(load(NR));
    program.push(jump(3, libc::BPF_JGE, X32_SYSCALL_BIT, deny, 4));
    for (i, call) in calls.iter().enumerate() {
        let at = 4 + i;
        program.push(jump(at, libc::BPF_JEQ, *call as u32, deny, at + 1));
    }
    let at = 4 + calls.len();
    program.push(jump(at, libc::BPF_JEQ, libc::SYS_socket as u32, at + 1, allow));
    program.push(load(ARG0));
    for (i, domain) in domains.iter().enumerate() {
        let at = 6 + calls.len() + i;
        program.push(jump(at, libc::BPF_JEQ, *domain as u32, deny, at + 1));
    }
    program.push(ret(libc::SECCOMP_RET_ALLOW));
    program.push(ret(libc::SECCOMP_RET_ERRNO | (libc::EACCES as u32 & libc::SECCOMP_RET_DATA)));
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carving_grants_everything_but_the_hidden_paths_and_links_into_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for sub in ["home/me/.local/share/pryx", "home/me/.local/share/other", "home/me/code", "home/you", "etc"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("home/me/notes.txt"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("home/me/.local/share/pryx"), root.join("home/me/shortcut")).unwrap();
        std::os::unix::fs::symlink(root.join("home/me/.local"), root.join("home/me/dotlocal")).unwrap();
        std::os::unix::fs::symlink(root.join("etc"), root.join("home/me/etc-link")).unwrap();
        let hidden = [root.join("home/me/.local/share/pryx")];

        let mut granted = carve(&root, &hidden, &[]);
        granted.sort();
        let relative: Vec<String> =
            granted.iter().map(|p| p.strip_prefix(&root).unwrap().display().to_string()).collect();
        assert_eq!(
            relative,
            ["etc", "home/me/.local/share/other", "home/me/code", "home/me/etc-link", "home/me/notes.txt", "home/you"]
        );
        assert!(granted.iter().all(|p| !hidden[0].starts_with(p)), "no grant covers the hidden dir");
        assert_eq!(carve(&root.join("etc"), &hidden, &[]), [root.join("etc")], "nothing hidden inside: one rule");
        assert!(carve(&hidden[0], &hidden, &[]).is_empty(), "the hidden dir itself: nothing");
    }

    #[test]
    fn a_kept_workspace_inside_a_hidden_dir_stays_and_a_hidden_dir_inside_the_workspace_goes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for sub in ["data/workspace/src", "data/other", "code/.pryx-data"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("data/token"), "t").unwrap();
        std::fs::write(root.join("code/main.rs"), "m").unwrap();
        let hidden = [root.join("data"), root.join("code/.pryx-data")];
        let keep = [root.join("data/workspace"), root.join("code")];
        let mut granted = carve(&root, &hidden, &keep);
        granted.sort();
        assert_eq!(granted, [root.join("code/main.rs"), root.join("data/workspace")]);
    }

    #[test]
    fn the_socket_filter_jumps_stay_inside_the_program() {
        let calls = [KEYRING_CALLS, IO_URING_CALLS].concat();
        let program = seccomp_filter(&calls, &[libc::AF_UNIX, libc::AF_INET, libc::AF_INET6]);
        for (at, instruction) in program.iter().enumerate() {
            if instruction.code as u32 & 0x07 == libc::BPF_JMP {
                for offset in [instruction.jt, instruction.jf] {
                    assert!(at + 1 + (offset as usize) < program.len(), "instruction {at} jumps out");
                }
            }
        }
        let last = program[program.len() - 1];
        assert_eq!(last.k, libc::SECCOMP_RET_ERRNO | libc::EACCES as u32, "the last instruction refuses");
    }
}
