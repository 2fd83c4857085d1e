//! Starting a program and waiting for it, for everything Pryx runs on its user's behalf
//! (shell commands, MCP stdio servers).
//!
//! On Linux one `clone` goes from Pryx straight into the plan's namespaces: the child is
//! the program's process (PID 1 of its namespace when it has one), Pryx is its parent, and
//! no helper process sits between them, so nothing of Pryx (the desktop build's WebKit
//! included) is loaded or kept for it. Like `posix_spawn`, the child borrows Pryx's memory
//! (`CLONE_VM | CLONE_VFORK`, on a stack of its own) instead of copying its page tables,
//! which for a desktop app of a few hundred MiB took longer than the rest of the start; the
//! calling thread waits until the child has exec'd, and all signals are blocked meanwhile.
//! Before exec the child makes raw system calls only: it
//! leads a new process group, takes its standard streams, dies with Pryx (parent-death
//! signal), marks every other descriptor close-on-exec, and confines itself
//! (`Plan::confine`). A failure before exec comes back through a close-on-exec pipe as an
//! errno. Pryx learns of the exit through a pidfd (a thread on kernels before 5.3).
//!
//! Elsewhere the program is started with `tokio::process` in its own process group.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A program to start: its path or name (looked up in its own `PATH`), arguments, whole
/// environment (nothing is inherited) and working directory. Standard output and error are
/// always piped; standard input is piped or `/dev/null`.
#[derive(Debug, Clone)]
pub struct Program {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub stdin_piped: bool,
}

impl Program {
    pub fn new<I, A>(program: impl Into<OsString>, args: I, cwd: &Path) -> Program
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        Program {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: cwd.to_owned(),
            stdin_piped: false,
        }
    }

    pub fn env(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> &mut Program {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The executable: a path with a `/` as given (relative to the working directory), a
    /// bare name looked up in the program's `PATH` (Pryx's own when it sets none).
    fn executable(&self) -> std::io::Result<PathBuf> {
        let name = Path::new(&self.program);
        if self.program.to_string_lossy().contains('/') {
            return Ok(self.cwd.join(name));
        }
        let path = self
            .env
            .iter()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| value.clone())
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| self.cwd.join(dir).join(name))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("`{}` is not found in PATH", self.program.to_string_lossy()),
                )
            })
    }
}

/// The soft limit on open files this process started with (`u64::MAX`: never changed).
static ORIGINAL_FILE_LIMIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// Raise this process's soft limit on open files towards `wanted` (within the hard limit):
/// the server holds a descriptor per connection, and many systems start at 1,024. Programs
/// Pryx starts get the original limit back (some old ones misbehave with a large one).
// `rlim_t` is `u64` here, not everywhere.
#[allow(clippy::unnecessary_cast)]
pub fn raise_open_file_limit(wanted: u64) {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: reading and setting this process's own limit.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur as u64 >= wanted {
                return;
            }
            let original = limit.rlim_cur as u64;
            limit.rlim_cur = (wanted as libc::rlim_t).min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                let _ = ORIGINAL_FILE_LIMIT.compare_exchange(
                    u64::MAX,
                    original,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = wanted;
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(target_os = "linux")]
pub(super) use linux::{run_to_end, start};
#[cfg(target_os = "linux")]
pub use linux::{Child, ChildStderr, ChildStdin, ChildStdout};
#[cfg(not(target_os = "linux"))]
pub(super) use portable::start;
#[cfg(not(target_os = "linux"))]
pub use portable::{Child, ChildStderr, ChildStdin, ChildStdout};

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use tokio::io::unix::AsyncFd;

    use super::Program;
    use crate::sandbox::linux::Plan;

    pub type ChildStdin = tokio::net::unix::pipe::Sender;
    pub type ChildStdout = tokio::net::unix::pipe::Receiver;
    pub type ChildStderr = tokio::net::unix::pipe::Receiver;

    /// A started program. Dropped before it was waited for, it is killed with its whole
    /// process group (and reaped in the background).
    pub struct Child {
        pid: libc::pid_t,
        exit: Exit,
        status: Option<ExitStatus>,
        pub stdin: Option<ChildStdin>,
        pub stdout: Option<ChildStdout>,
        pub stderr: Option<ChildStderr>,
    }

    enum Exit {
        /// Readable once the process has exited; then `waitpid` does not block.
        Pidfd(AsyncFd<OwnedFd>),
        /// Kernels without pidfds: a thread waits and hands over the status.
        Thread(tokio::sync::oneshot::Receiver<libc::c_int>),
    }

    impl Child {
        /// The process ID, which is also its process group's.
        pub fn id(&self) -> u32 {
            self.pid as u32
        }

        /// Wait for the program to exit.
        pub async fn wait(&mut self) -> io::Result<ExitStatus> {
            if let Some(status) = self.status {
                return Ok(status);
            }
            let raw = match &mut self.exit {
                Exit::Pidfd(pidfd) => loop {
                    let mut ready = pidfd.readable().await?;
                    if let Some(raw) = reap(self.pid, libc::WNOHANG)? {
                        break raw;
                    }
                    ready.clear_ready();
                },
                Exit::Thread(receiver) => {
                    receiver.await.map_err(|_| io::Error::other("the thread waiting for the program ended"))?
                }
            };
            let status = ExitStatus::from_raw(raw);
            self.status = Some(status);
            Ok(status)
        }

        /// The exit status if the program has exited, without waiting.
        pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
            if self.status.is_none() {
                let raw = match &mut self.exit {
                    Exit::Pidfd(_) => reap(self.pid, libc::WNOHANG)?,
                    Exit::Thread(receiver) => receiver.try_recv().ok(),
                };
                self.status = raw.map(ExitStatus::from_raw);
            }
            Ok(self.status)
        }

        /// Signal the program's process group: the program, and what it left behind even
        /// after it exited (the group's ID goes to no other process while a member lives).
        pub fn signal_group(&mut self, signal: libc::c_int) {
            // SAFETY: a signal to the process group this program leads; ESRCH is fine.
            unsafe { libc::killpg(self.pid, signal) };
        }

        /// SIGKILL the program's process group (see [`Self::signal_group`]).
        pub fn kill_group(&mut self) {
            self.signal_group(libc::SIGKILL);
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            if self.try_wait().ok().flatten().is_some() {
                return;
            }
            self.kill_group();
            if let Exit::Pidfd(_) = self.exit {
                let pid = self.pid;
                // A zombie left behind would keep its PID; reaping takes a moment after SIGKILL.
                let _ = std::thread::Builder::new().name("pryx-reap".into()).spawn(move || reap(pid, 0));
            }
        }
    }

    /// `waitpid`: `Some(raw status)` once it has exited.
    fn reap(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<libc::c_int>> {
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            match unsafe { libc::waitpid(pid, &mut status, flags) } {
                0 => return Ok(None),
                -1 if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
                -1 => return Err(io::Error::last_os_error()),
                _ => return Ok(Some(status)),
            }
        }
    }

    /// A started program's ID and Pryx's ends of its pipes.
    struct Started {
        pid: libc::pid_t,
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    }

    /// Start `program` under `plan` (needs a tokio runtime for the pipes and the pidfd).
    pub(in crate::sandbox) fn start(plan: &Plan, program: &Program) -> io::Result<Child> {
        let started = start_raw(plan, program)?;
        let pid = started.pid;
        // From here on a failure must not leave the process running unowned.
        let kill = |error: io::Error| {
            // SAFETY: the group of the child just started.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
            let _ = reap(pid, 0);
            error
        };
        // SAFETY: pidfd_open on our own child's PID, which is not reaped yet.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let exit = if pidfd >= 0 {
            // SAFETY: a new descriptor we own.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
            // SAFETY: the descriptor is owned by what is registered, and stays open as long.
            let registered = unsafe { AsyncFd::register(pidfd) };
            Exit::Pidfd(registered.map_err(|e| kill(e.into_parts().1))?)
        } else {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("pryx-wait".into())
                .spawn(move || {
                    if let Ok(Some(raw)) = reap(pid, 0) {
                        let _ = sender.send(raw);
                    }
                })
                .map_err(kill)?;
            Exit::Thread(receiver)
        };
        let stdin = started.stdin.map(ChildStdin::from_owned_fd).transpose().map_err(kill)?;
        let stdout = ChildStdout::from_owned_fd(started.stdout).map_err(kill)?;
        let stderr = ChildStderr::from_owned_fd(started.stderr).map_err(kill)?;
        Ok(Child { pid, exit, status: None, stdin, stdout: Some(stdout), stderr: Some(stderr) })
    }

    /// Run `program` under `plan` to its end, discarding its output (no runtime needed).
    pub(in crate::sandbox) fn run_to_end(plan: &Plan, program: &Program) -> io::Result<ExitStatus> {
        let started = start_raw(plan, program)?;
        drop((started.stdin, started.stdout, started.stderr));
        let raw = reap(started.pid, 0)?.unwrap_or(0);
        Ok(ExitStatus::from_raw(raw))
    }

    fn c_string(bytes: &[u8]) -> io::Result<CString> {
        CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an argument contains a NUL byte"))
    }

    fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both were just created.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }

    /// Everything the child needs, as raw pointers into memory that lives until `start_raw`
    /// returns.
    struct ChildSetup<'a> {
        plan: &'a Plan,
        path: &'a CString,
        argv: &'a [*const libc::c_char],
        envp: &'a [*const libc::c_char],
        stdin: RawFd,
        stdout: RawFd,
        stderr: RawFd,
        report: RawFd,
        /// The soft limit on open files to give back (`u64::MAX`: unchanged).
        file_limit: u64,
    }

    fn start_raw(plan: &Plan, program: &Program) -> io::Result<Started> {
        let path = c_string(program.executable()?.as_os_str().as_bytes())?;
        let mut strings = vec![c_string(program.program.as_bytes())?];
        for arg in &program.args {
            strings.push(c_string(arg.as_bytes())?);
        }
        let env: Vec<CString> = program
            .env
            .iter()
            .map(|(key, value)| c_string(&[key.as_bytes(), b"=", value.as_bytes()].concat()))
            .collect::<io::Result<_>>()?;
        let argv: Vec<*const libc::c_char> =
            strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let envp: Vec<*const libc::c_char> =
            env.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();

        let (stdin_child, stdin_ours) = if program.stdin_piped {
            let (read, write) = pipe()?;
            (read, Some(write))
        } else {
            // SAFETY: opening /dev/null.
            let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if null == -1 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: just opened.
            (unsafe { OwnedFd::from_raw_fd(null) }, None)
        };
        let (stdout_ours, stdout_child) = pipe()?;
        let (stderr_ours, stderr_child) = pipe()?;
        let (report_ours, report_child) = pipe()?;
        let setup = ChildSetup {
            plan,
            path: &path,
            argv: &argv,
            envp: &envp,
            stdin: stdin_child.as_raw_fd(),
            stdout: stdout_child.as_raw_fd(),
            stderr: stderr_child.as_raw_fd(),
            report: report_child.as_raw_fd(),
            file_limit: super::ORIGINAL_FILE_LIMIT.load(std::sync::atomic::Ordering::Relaxed),
        };
        let stack = ChildStack::new()?;
        let flags = plan.clone_flags() | libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        // SAFETY: the child runs `child_entry` on its own stack, sharing this memory until it
        // execs (this thread waits meanwhile: CLONE_VFORK); it writes only its stack and
        // makes raw system calls. No signal handler may run in it: all are blocked here,
        // and the child sets them to their defaults before unblocking.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
            let pid = libc::clone(child_entry, stack.top(), flags, (&raw const setup).cast_mut().cast());
            let error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
            if pid == -1 {
                return Err(error);
            }
            pid
        };
        drop(stack);
        drop((stdin_child, stdout_child, stderr_child, report_child));
        // The child's end closes at exec; before that, a failure sends its errno.
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < errno.len() {
            // SAFETY: reading into our own buffer.
            let n = unsafe { libc::read(report_ours.as_raw_fd(), errno[got..].as_mut_ptr().cast(), errno.len() - got) };
            match n {
                -1 if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
                n if n <= 0 => break,
                n => got += n as usize,
            }
        }
        if got == errno.len() {
            let _ = reap(pid, 0);
            return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
        }
        Ok(Started { pid, stdin: stdin_ours, stdout: stdout_ours, stderr: stderr_ours })
    }

    /// The child, from clone to exec. Raw system calls only: Pryx has other threads, whose
    /// locks (the allocator's among them) may be held forever in this copy of its memory.
    unsafe fn child_main(setup: &ChildSetup<'_>) -> ! {
        let fail = |error: io::Error| fail(setup.report, error);
        // Signals as a fresh program expects them: Pryx's handlers must not run here (this
        // is Pryx's memory), Rust ignores SIGPIPE, and Pryx blocked everything for the clone.
        // The handler table is this child's own copy (no CLONE_SIGHAND).
        let default: libc::sigaction = std::mem::zeroed(); // SIG_DFL, no flags, empty mask
        for signal in 1..libc::SIGRTMAX() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Die with Pryx; and if Pryx is already gone (its end of the report pipe closed),
        // run nothing.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        let mut report = libc::pollfd { fd: setup.report, events: 0, revents: 0 };
        if libc::poll(&mut report, 1, 0) == 1 && report.revents & libc::POLLERR != 0 {
            libc::_exit(125);
        }
        if libc::setpgid(0, 0) == -1 {
            fail(io::Error::last_os_error());
        }
        for (from, to) in [(setup.stdin, 0), (setup.stdout, 1), (setup.stderr, 2)] {
            if libc::dup2(from, to) == -1 {
                fail(io::Error::last_os_error());
            }
        }
        if setup.file_limit != u64::MAX {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur = setup.file_limit as libc::rlim_t;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
        // No descriptor of Pryx's reaches the program, even one a library opened without
        // close-on-exec (kernels before 5.11 lack the flag; there they must be close-on-exec).
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
        if let Err(error) = setup.plan.confine() {
            fail(error);
        }
        libc::execve(setup.path.as_ptr(), setup.argv.as_ptr(), setup.envp.as_ptr());
        fail(io::Error::last_os_error())
    }

    extern "C" fn child_entry(setup: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `start_raw` passes its `ChildSetup`, alive until this child has exec'd or
        // exited (its thread waits: CLONE_VFORK).
        unsafe { child_main(&*setup.cast_const().cast::<ChildSetup<'_>>()) }
    }

    /// The child's stack: mapped, with a guard page below it, for one clone.
    struct ChildStack {
        base: *mut libc::c_void,
        size: usize,
    }

    impl ChildStack {
        /// Plenty for `child_main` and `Plan::confine` (a few KiB of frames).
        const SIZE: usize = 256 * 1024;
        const GUARD: usize = 64 * 1024;

        fn new() -> io::Result<ChildStack> {
            let size = Self::SIZE + Self::GUARD;
            // SAFETY: a fresh private anonymous mapping, then its lowest part made inaccessible.
            unsafe {
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK;
                let base = libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0);
                if base == libc::MAP_FAILED {
                    return Err(io::Error::last_os_error());
                }
                let stack = ChildStack { base, size };
                if libc::mprotect(base, Self::GUARD, libc::PROT_NONE) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(stack)
            }
        }

        /// Where the stack starts (it grows down), 16-byte aligned.
        fn top(&self) -> *mut libc::c_void {
            // SAFETY: one past the end of the mapping, which `clone` wants.
            unsafe { self.base.cast::<u8>().add(self.size).cast() }
        }
    }

    impl Drop for ChildStack {
        fn drop(&mut self) {
            // SAFETY: our own mapping, which no one uses any more (the child exec'd or exited).
            unsafe { libc::munmap(self.base, self.size) };
        }
    }

    /// Report `error` to Pryx through the report pipe and end the child.
    unsafe fn fail(report: RawFd, error: io::Error) -> ! {
        let errno = error.raw_os_error().unwrap_or(libc::EINVAL).to_ne_bytes();
        libc::write(report, errno.as_ptr().cast(), errno.len());
        libc::_exit(127)
    }
}

#[cfg(not(target_os = "linux"))]
mod portable {
    use std::io;
    use std::process::{ExitStatus, Stdio};

    use super::Program;

    pub type ChildStdin = tokio::process::ChildStdin;
    pub type ChildStdout = tokio::process::ChildStdout;
    pub type ChildStderr = tokio::process::ChildStderr;

    /// A started program, killed when dropped before it exited.
    pub struct Child {
        inner: tokio::process::Child,
        pub stdin: Option<ChildStdin>,
        pub stdout: Option<ChildStdout>,
        pub stderr: Option<ChildStderr>,
    }

    impl Child {
        pub fn id(&self) -> u32 {
            self.inner.id().unwrap_or(0)
        }
        pub async fn wait(&mut self) -> io::Result<ExitStatus> {
            self.inner.wait().await
        }
        pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
            self.inner.try_wait()
        }
        /// Signal the program's process group (Unix); end the program elsewhere.
        pub fn signal_group(&mut self, signal: i32) {
            #[cfg(unix)]
            if let Some(pid) = self.inner.id() {
                // SAFETY: a signal to the process group this program leads.
                unsafe { libc::killpg(pid as libc::pid_t, signal) };
            }
            #[cfg(not(unix))]
            {
                let _ = signal;
                let _ = self.inner.start_kill();
            }
        }

        /// Kill the program and, on Unix, its process group.
        pub fn kill_group(&mut self) {
            #[cfg(unix)]
            self.signal_group(libc::SIGKILL);
            #[cfg(not(unix))]
            self.signal_group(9);
        }
    }

    pub(in crate::sandbox) fn start(program: &Program) -> io::Result<Child> {
        let mut command = tokio::process::Command::new(program.executable()?);
        command
            .args(&program.args)
            .env_clear()
            .envs(program.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&program.cwd)
            .stdin(if program.stdin_piped { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut inner = command.spawn()?;
        let (stdin, stdout, stderr) = (inner.stdin.take(), inner.stdout.take(), inner.stderr.take());
        Ok(Child { inner, stdin, stdout, stderr })
    }
}
