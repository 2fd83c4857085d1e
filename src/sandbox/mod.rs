//! The sandbox: how Pryx starts programs it does not trust (a shell command the model wrote,
//! an MCP stdio server) so that they can neither take over Pryx nor outlive it.
//!
//! Pryx starts them itself (`process`): on Linux one `clone` puts the child straight into
//! new namespaces, where it confines itself with raw system calls before exec (everything
//! it needs was prepared before the clone, so nothing in the child allocates or takes a
//! lock, and no helper re-executes Pryx: the desktop build's WebKit is never loaded for a
//! command). Where the kernel allows unprivileged namespaces:
//!
//! 1. the program runs as PID 1 of its own user and PID namespaces (and, for a shell
//!    command without network, a network namespace with only its own loopback): when it
//!    ends, or Pryx dies even by `kill -9`, the kernel kills everything it left behind;
//! 2. in its private mount namespace, Pryx's data dir and config dir are empty tmpfs
//!    directories (the workspace, when it lies inside, is bound back), a shell command also
//!    gets its own `/tmp` and `/dev/shm` and no per-user runtime dir (the session bus, the
//!    keyring, other programs' sockets), and `/proc` shows only its own processes;
//! 3. it drops every capability, so it cannot undo those mounts (a nested namespace sees
//!    them locked);
//! 4. a shell command restricts itself with Landlock: read anywhere it can still see, write
//!    only in the workspace roots, `/tmp` and a few device files, no abstract Unix sockets
//!    (the session bus's other address) and no signals to processes outside.
//!
//! Where namespaces are refused (some distributions restrict them), the same paths are kept
//! out by Landlock read rules instead (files become unreadable; sockets such as the session
//! bus stay reachable), and a shell command's TCP is refused by Landlock. Each layer is
//! reported as it holds ([`Protection`], in `pryx doctor` and `system.info`). macOS and
//! Windows get the process group / job and the cleared environment only (see
//! ARCHITECTURE.md).

#[cfg(target_os = "linux")]
mod linux;
pub mod process;
#[cfg(target_os = "linux")]
mod rules;
pub mod workspace;

use std::path::{Path, PathBuf};

pub use process::{Child, Program};
pub use pryx_api::{CommandNetwork, Hiding};

/// What protection programs Pryx starts get on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// `full`, `partial` or `none`: how much of Landlock the kernel enforces.
    pub landlock: String,
    /// Whether programs run in their own PID namespace (nothing survives them).
    pub pid_namespace: bool,
    /// How Pryx's files and the user's session are kept from them.
    pub hiding: Hiding,
    /// A shell command's network unless it asked for more.
    pub network: CommandNetwork,
}

impl Protection {
    /// One line for people.
    pub fn describe(&self) -> String {
        let landlock = match self.landlock.as_str() {
            "full" => "Landlock fully enforced: commands write only in the workspace and temp dirs",
            "partial" => "Landlock partly enforced (older kernel): writes outside the workspace are mostly blocked",
            _ => "no Landlock: commands can write wherever this user can; only approvals protect you",
        };
        let hiding = match self.hiding {
            Hiding::MountNamespace => {
                "Pryx's data, config, session bus and keyring are hidden from commands and MCP servers"
            }
            Hiding::LandlockRules => {
                "Pryx's data and config are unreadable to commands and MCP servers (Landlock rules), commands open no Unix sockets (no session bus or keyring); weaker than namespaces, which this kernel refuses"
            }
            Hiding::None => "Pryx's token, data and keyring are NOT hidden from commands",
        };
        let network = match self.network {
            CommandNetwork::Off => "commands have no network unless approved with it",
            CommandNetwork::On => "commands have network ([tools] shell_network)",
            CommandNetwork::Open => "commands have network (nothing here can cut it)",
        };
        let pid = if self.pid_namespace {
            "own PID namespace: no process outlives a command"
        } else {
            "no PID namespace: leftover processes are killed by process group"
        };
        format!("{landlock}; {hiding}; {network}; {pid}")
    }
}

/// The files and directories of Pryx's own that no program it starts may see: its data dir
/// (token, databases, instance socket) and its config.
#[derive(Debug, Clone, Default)]
pub struct PrivatePaths {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl PrivatePaths {
    /// Pryx's data dir, its config dir (`~/.config/pryx`, made if missing, so a config
    /// written there later is hidden too) and the config file in use wherever it lives.
    /// Other paths that do not exist are left out.
    pub fn of_pryx(data_dir: &Path, config_dir: Option<&Path>, config_file: Option<&Path>) -> PrivatePaths {
        let mut paths = PrivatePaths::default();
        paths.add_dir(data_dir);
        if let Some(dir) = config_dir {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::debug!("cannot make the config dir {}: {e}", dir.display());
            }
            paths.add_dir(dir);
        }
        if let Some(file) = config_file {
            if !paths.covers(&file.canonicalize().unwrap_or_else(|_| file.to_owned())) {
                paths.add_file(file);
            }
        }
        paths
    }

    fn add_dir(&mut self, dir: &Path) {
        if let Ok(dir) = dir.canonicalize() {
            if dir.is_dir() && dir != Path::new("/") && !self.dirs.contains(&dir) {
                self.dirs.push(dir);
            }
        }
    }

    fn add_file(&mut self, file: &Path) {
        if let Ok(file) = file.canonicalize() {
            if file.is_file() && !self.files.contains(&file) {
                self.files.push(file);
            }
        }
    }

    /// Every private path (canonical).
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().chain(&self.files).map(PathBuf::as_path)
    }

    /// Whether `path` lies in (or is) one of the private paths.
    pub fn covers(&self, path: &Path) -> bool {
        self.dirs.iter().chain(&self.files).any(|private| path.starts_with(private))
    }
}

/// A shell command to contain.
pub struct CommandJail<'a> {
    /// Where it may write (the workspace roots); they stay visible even inside a private
    /// directory.
    pub write_roots: &'a [PathBuf],
    /// Whether it may reach the network.
    pub network: bool,
}

/// Confines the programs Pryx starts; one per runtime, shared by the shell tool and the MCP
/// manager.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    private: PrivatePaths,
}

impl Sandbox {
    pub fn new(private: PrivatePaths) -> Sandbox {
        Sandbox { private }
    }

    /// The paths this sandbox hides.
    pub fn private_paths(&self) -> &PrivatePaths {
        &self.private
    }

    /// What shell commands and MCP servers get here; `shell_network` is `[tools] shell_network`.
    pub fn protection(&self, shell_network: bool) -> Protection {
        #[cfg(target_os = "linux")]
        {
            linux::protection(shell_network)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let network = if shell_network { CommandNetwork::On } else { CommandNetwork::Open };
            Protection { landlock: "none".into(), pid_namespace: false, hiding: Hiding::None, network }
        }
    }

    /// Start `program` (a shell) as a shell command: everything above, with writes limited
    /// to `jail.write_roots`. Fails when the confinement cannot be set up (then nothing runs).
    pub fn start_command(&self, program: &Program, jail: &CommandJail<'_>) -> std::io::Result<Child> {
        #[cfg(target_os = "linux")]
        {
            process::start(&linux::Plan::for_command(&self.private, jail, &program.cwd)?, program)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = jail;
            process::start(program)
        }
    }

    /// Start `program` (an MCP stdio server): its own PID namespace, Pryx's data and config
    /// hidden, no capabilities, a Landlock domain that restricts no file but forbids tracing
    /// Pryx; its network, display and session bus stay (a browser-driving
    /// server needs them), and it writes where its user configured it to. `keep` are paths it
    /// must still see (the workspace roots).
    pub fn start_server(&self, program: &Program, keep: &[PathBuf]) -> std::io::Result<Child> {
        #[cfg(target_os = "linux")]
        {
            process::start(&linux::Plan::for_server(&self.private, &program.cwd, keep)?, program)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = keep;
            process::start(program)
        }
    }
}

/// Start `program` as it is, uncontained (in its own process group, dying with Pryx): for
/// programs the user runs as themselves, like a benchmark's reference client.
pub fn start_uncontained(program: &Program) -> std::io::Result<Child> {
    #[cfg(target_os = "linux")]
    {
        process::start(&linux::Plan::new(&program.cwd), program)
    }
    #[cfg(not(target_os = "linux"))]
    {
        process::start(program)
    }
}
