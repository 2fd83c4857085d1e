//! The shell sandbox: how `shell_execute` starts a command so that it can neither wreck the
//! machine nor outlive Pryx.
//!
//! Pryx never runs `sh -c` directly. It starts itself as a small helper,
//! `pryx __sandbox-exec --write DIR… -- COMMAND`, in a fresh process group, with a cleared
//! environment and a parent-death signal. The helper, still single-threaded, then:
//! 1. enters new user and PID namespaces when the kernel allows it, and forks: the command
//!    runs as PID 1 of its own namespace, so when it ends, or Pryx dies even by `kill -9`,
//!    the kernel kills every process it left behind;
//! 2. restricts itself with Landlock: read anywhere, write only in the workspace roots,
//!    the temp dir and a few device files;
//! 3. execs `/bin/sh -c COMMAND`.
//!
//! MCP stdio servers use the same helper in its containing mode,
//! `pryx __sandbox-exec --unrestricted --program -- PROGRAM ARGS…`: step 1 only (no
//! Landlock: a server writes where its user configured it to), then PROGRAM is executed
//! directly. So a server started through `npx` leaves nothing behind either.
//!
//! Each layer is best effort and reported (`pryx doctor`, `system.info`): where Landlock or
//! namespaces are missing the command still runs in its process group, which Pryx kills on
//! timeout, cancel and shutdown. macOS and Windows get the process group / job and the
//! cleared environment only (see ARCHITECTURE.md).

pub mod workspace;

use std::ffi::OsString;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The hidden subcommand the helper runs as.
pub const HELPER_SUBCOMMAND: &str = "__sandbox-exec";

/// What protection a sandboxed command gets on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    /// `full`, `partial` or `none`: how much of the Landlock write restriction the kernel enforces.
    pub landlock: String,
    /// Whether commands run in their own PID namespace (nothing survives them).
    pub pid_namespace: bool,
}

impl Protection {
    /// One line for people.
    pub fn describe(&self) -> String {
        let landlock = match self.landlock.as_str() {
            "full" => "Landlock fully enforced: commands can write only in the workspace and temp dirs",
            "partial" => "Landlock partly enforced (older kernel): writes outside the workspace are mostly blocked",
            _ => "no Landlock: commands can write wherever this user can; only approvals protect you",
        };
        let pid = if self.pid_namespace {
            "own PID namespace: no process outlives a command"
        } else {
            "no PID namespace: leftover processes are killed by process group"
        };
        format!("{landlock}; {pid}")
    }
}

/// Parsed helper arguments: `--write DIR` (repeatable), `--unrestricted` (no Landlock),
/// `--program` (run argv directly, not a shell line), `--probe`, then `--` and the command.
struct HelperArgs {
    write: Vec<PathBuf>,
    unrestricted: bool,
    program: bool,
    probe: bool,
    command: Vec<OsString>,
}

fn parse_helper_args(args: &[OsString]) -> Result<HelperArgs, String> {
    let mut parsed =
        HelperArgs { write: Vec::new(), unrestricted: false, program: false, probe: false, command: Vec::new() };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.to_str() {
            Some("--write") => parsed.write.push(iter.next().ok_or("--write needs a directory")?.into()),
            Some("--unrestricted") => parsed.unrestricted = true,
            Some("--program") => parsed.program = true,
            Some("--probe") => parsed.probe = true,
            Some("--") => {
                parsed.command = iter.cloned().collect();
                if parsed.command.is_empty() {
                    return Err("-- needs a command".into());
                }
                if !parsed.program && parsed.command.len() > 1 {
                    return Err("a shell command is one argument".into());
                }
                break;
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Ok(parsed)
}

/// Entry point of the helper: called from `main` before anything else (no threads of ours
/// yet; see [`enter_pid_namespace`] for the one a library may have started), with the
/// arguments after the subcommand. Never returns.
// The helper runs before any logger exists and execs away: stderr is its only voice.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn helper_main(args: &[OsString]) -> ! {
    let args = match parse_helper_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pryx sandbox: {e}");
            std::process::exit(125);
        }
    };
    let pid_namespace = enter_pid_namespace();
    let landlock = if args.unrestricted { "none".into() } else { restrict_writes(&args.write) };
    if args.probe {
        let protection = Protection { landlock, pid_namespace };
        println!("{}", serde_json::to_string(&protection).unwrap_or_default());
        std::process::exit(0);
    }
    let mut command = args.command.into_iter();
    let Some(first) = command.next() else {
        eprintln!("pryx sandbox: no command");
        std::process::exit(125);
    };
    if args.program {
        exec_program(first, command.collect())
    } else {
        exec_shell(first)
    }
}

/// Start a child in new user + PID namespaces; the child continues as PID 1, the parent
/// waits and exits with the child's status. `false` when the kernel refuses.
///
/// This is one `clone` with `CLONE_NEWUSER | CLONE_NEWPID`, not `unshare` then `fork`:
/// `unshare(CLONE_NEWUSER)` refuses a process with more than one thread, and the desktop
/// build links WebKit, whose JavaScriptCore starts a thread from a library constructor
/// before `main` runs. The child of a clone has one thread; until it maps its ids it only
/// makes raw syscalls with what the parent prepared.
#[cfg(target_os = "linux")]
fn enter_pid_namespace() -> bool {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("{uid} {uid} 1");
    let gid_map = format!("{gid} {gid} 1");
    let flags = (libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: a fork-like clone (no new stack): the child gets a copy of this thread only.
    let child = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match child {
        -1 => false,
        0 => {
            // Map our own ids so files keep their owner.
            write_proc(c"/proc/self/setgroups", b"deny");
            write_proc(c"/proc/self/uid_map", uid_map.as_bytes());
            write_proc(c"/proc/self/gid_map", gid_map.as_bytes());
            // The command (PID 1 of the namespace) dies with the helper.
            // SAFETY: a plain prctl on ourselves.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            true
        }
        child => {
            let child = child as libc::pid_t;
            let mut status = 0;
            // SAFETY: waiting for our own child.
            while unsafe { libc::waitpid(child, &mut status, 0) } == -1 {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    std::process::exit(125);
                }
            }
            let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
            std::process::exit(code);
        }
    }
}

/// Write `bytes` to a /proc file with plain syscalls (no allocation).
#[cfg(target_os = "linux")]
fn write_proc(path: &std::ffi::CStr, bytes: &[u8]) {
    // SAFETY: a NUL-terminated path and a live buffer of the length given.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            libc::close(fd);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn enter_pid_namespace() -> bool {
    false
}

/// Allow writes only beneath `roots`, the temp dir and the usual device files.
#[cfg(target_os = "linux")]
fn restrict_writes(roots: &[PathBuf]) -> String {
    use landlock::{
        path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
    };
    let abi = ABI::V5;
    let mut writable: Vec<PathBuf> = roots.to_vec();
    writable.push(std::env::temp_dir());
    writable
        .extend(["/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/urandom", "/dev/random"].map(PathBuf::from));
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(&writable, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self());
    match status {
        Ok(s) if s.ruleset == RulesetStatus::FullyEnforced => "full".into(),
        Ok(s) if s.ruleset == RulesetStatus::PartiallyEnforced => "partial".into(),
        _ => "none".into(),
    }
}

#[cfg(not(target_os = "linux"))]
fn restrict_writes(_roots: &[PathBuf]) -> String {
    "none".into()
}

#[cfg(unix)]
// The helper runs before any logger exists and execs away: stderr is its only voice.
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn exec_shell(command: OsString) -> ! {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new("/bin/sh").arg("-c").arg(command).exec();
    eprintln!("pryx sandbox: cannot run /bin/sh: {error}");
    std::process::exit(127);
}

#[cfg(unix)]
// The helper runs before any logger exists and execs away: stderr is its only voice.
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn exec_program(program: OsString, args: Vec<OsString>) -> ! {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new(&program).args(args).exec();
    eprintln!("pryx sandbox: cannot run {}: {error}", program.to_string_lossy());
    std::process::exit(127);
}

#[cfg(not(unix))]
// The helper runs before any logger exists and execs away: stderr is its only voice.
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn exec_program(program: OsString, args: Vec<OsString>) -> ! {
    let status = std::process::Command::new(program).args(args).status();
    std::process::exit(status.ok().and_then(|s| s.code()).unwrap_or(127));
}

#[cfg(not(unix))]
// The helper runs before any logger exists and execs away: stderr is its only voice.
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn exec_shell(command: OsString) -> ! {
    let status = std::process::Command::new("cmd").arg("/C").arg(command).status();
    std::process::exit(status.ok().and_then(|s| s.code()).unwrap_or(127));
}

/// Ask the helper what protection it gets here (runs it once with `--probe`).
pub fn probe(write_roots: &[PathBuf]) -> Protection {
    let fallback = Protection { landlock: "none".into(), pid_namespace: false };
    let Ok(exe) = std::env::current_exe() else { return fallback };
    let mut command = std::process::Command::new(exe);
    command.arg(HELPER_SUBCOMMAND).arg("--probe");
    for root in write_roots {
        command.arg("--write").arg(root);
    }
    match command.output() {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout).unwrap_or(fallback),
        _ => fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_arguments_parse_and_reject_junk() {
        let args: Vec<OsString> = ["--write", "/ws", "--write", "/x", "--", "echo hi"].map(OsString::from).to_vec();
        let parsed = parse_helper_args(&args).unwrap();
        assert_eq!(parsed.write, [PathBuf::from("/ws"), PathBuf::from("/x")]);
        assert_eq!(parsed.command, [OsString::from("echo hi")]);
        assert!(!parsed.program && !parsed.unrestricted);
        let program: Vec<OsString> =
            ["--unrestricted", "--program", "--", "node", "server.js", "--", "x"].map(OsString::from).to_vec();
        let parsed = parse_helper_args(&program).unwrap();
        assert!(parsed.program && parsed.unrestricted);
        assert_eq!(parsed.command, ["node", "server.js", "--", "x"].map(OsString::from));
        let two_shell_args: Vec<OsString> = ["--", "echo", "hi"].map(OsString::from).to_vec();
        assert!(parse_helper_args(&two_shell_args).is_err(), "a shell line is one argument");
        assert!(parse_helper_args(&[OsString::from("--bogus")]).is_err());
        assert!(parse_helper_args(&[OsString::from("--write")]).is_err());
    }
}
