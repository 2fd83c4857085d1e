//! `shell_execute`: run a command line in the workspace, inside the sandbox of
//! `crate::sandbox`, with a cleared environment, a timeout and capped output.
//!
//! The command and everything it starts form one process group that is killed on timeout,
//! on cancel and at shutdown; on Linux it also carries a parent-death signal and, where
//! allowed, its own PID namespace, so nothing survives Pryx. It has no network unless
//! `[tools] shell_network` is on or the call asks for it (`network: true`), which a person
//! must then approve ("with network").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{parse_args, schema, Risk, Tool, ToolContext, ToolError};
use crate::sandbox::workspace::Workspace;
use crate::sandbox::{Child, CommandJail, Program, Sandbox};

/// Settings of `shell_execute` (from `[tools]` in the config).
#[derive(Debug, Clone)]
pub struct ShellConfig {
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    /// Bytes of output kept per stream (half from the start, half from the end).
    pub max_output_bytes: usize,
    /// Environment variables passed through; everything else is cleared.
    pub env_allowlist: Vec<String>,
    /// `[tools] shell_network`: every command has network, without asking for it.
    pub network: bool,
    /// What commands are kept from (Pryx's own files, the user's session).
    pub sandbox: Arc<Sandbox>,
}

impl Default for ShellConfig {
    fn default() -> Self {
        ShellConfig {
            default_timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(600),
            max_output_bytes: 64 * 1024,
            env_allowlist: DEFAULT_ENV_ALLOWLIST.iter().map(|s| s.to_string()).collect(),
            network: false,
            sandbox: Arc::default(),
        }
    }
}

/// What a command may see of Pryx's environment by default: nothing secret.
pub const DEFAULT_ENV_ALLOWLIST: &[&str] = &["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "USER", "LOGNAME"];

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ShellArgs {
    /// The command line, run by /bin/sh -c.
    command: String,
    /// Directory to run in, relative to the workspace (default: the workspace).
    cwd: Option<String>,
    /// Seconds before the command and everything it started are killed (default 60).
    timeout_secs: Option<u64>,
    /// Set true only when the command needs the internet (installing packages, downloading);
    /// the user is asked to allow it with network. Commands have no network otherwise.
    network: Option<bool>,
}

pub struct ShellExecute {
    workspace: Arc<Workspace>,
    config: ShellConfig,
}

impl ShellExecute {
    pub fn new(workspace: Arc<Workspace>, config: ShellConfig) -> Self {
        ShellExecute { workspace, config }
    }
}

#[async_trait]
impl Tool for ShellExecute {
    fn name(&self) -> &str {
        "shell_execute"
    }
    fn description(&self) -> &str {
        "Run a shell command (/bin/sh -c) in the workspace and return its exit code, stdout and stderr. \
         It can write only inside the workspace and temp dirs, sees no secrets from the environment, and is killed after timeout_secs."
    }
    fn parameters(&self) -> Value {
        schema::<ShellArgs>()
    }
    fn risk(&self) -> Risk {
        Risk::Execute
    }
    fn summary(&self, arguments: &Value) -> String {
        let command = arguments["command"].as_str().unwrap_or("?");
        let place = arguments["cwd"].as_str().map(|cwd| format!(" in {cwd}")).unwrap_or_default();
        let network = self.widens(arguments).map(|what| format!(" with {what}")).unwrap_or_default();
        format!("run `{command}`{place}{network}")
    }
    fn widens(&self, arguments: &Value) -> Option<&'static str> {
        (!self.config.network && arguments["network"] == Value::Bool(true)).then_some("network")
    }
    async fn call(&self, arguments: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        let args: ShellArgs = parse_args(arguments)?;
        if args.command.trim().is_empty() {
            return Err(ToolError::InvalidArguments("the command is empty".into()));
        }
        if args.command.contains('\0') {
            return Err(ToolError::InvalidArguments("the command contains a NUL byte".into()));
        }
        let (cwd, _) = self.workspace.resolve_dir(args.cwd.as_deref().unwrap_or(""))?;
        let timeout =
            args.timeout_secs.map_or(self.config.default_timeout, Duration::from_secs).min(self.config.max_timeout);
        let network = self.config.network || args.network == Some(true);
        let mut child = self.spawn(&args.command, &cwd, network)?;
        let cap = self.config.max_output_bytes;
        let stdout = tokio::spawn(collect(child.stdout.take(), cap));
        let stderr = tokio::spawn(collect(child.stderr.take(), cap));

        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(status.map_err(|e| ToolError::Failed(format!("cannot wait for the command: {e}")))?),
            _ = tokio::time::sleep(timeout) => Ended::TimedOut,
            _ = ctx.cancel.cancelled() => Ended::Cancelled,
        };
        // The command, or the background processes it left behind.
        child.kill_group();
        if !matches!(ended, Ended::Exited(_)) {
            let _ = child.wait().await;
        }
        let stdout = stdout.await.unwrap_or_default();
        let stderr = stderr.await.unwrap_or_default();
        let report = format!("--- stdout ---\n{}\n--- stderr ---\n{}", stdout.render(), stderr.render());
        match ended {
            Ended::Exited(status) => {
                let code = status.code().map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string());
                Ok(format!("exit code: {code}\n{report}"))
            }
            Ended::TimedOut => Err(ToolError::Failed(format!(
                "timed out after {}s; the command and everything it started were killed\n{report}",
                timeout.as_secs()
            ))),
            Ended::Cancelled => Err(ToolError::Failed(format!("cancelled; the command was killed\n{report}"))),
        }
    }
}

enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    Cancelled,
}

impl ShellExecute {
    fn spawn(&self, command_line: &str, cwd: &std::path::Path, network: bool) -> Result<Child, ToolError> {
        let mut program = shell(command_line, cwd);
        for name in &self.config.env_allowlist {
            if let Some(value) = std::env::var_os(name) {
                program.env(name, value);
            }
        }
        program.env("HOME", self.workspace.root()).env("PWD", cwd);
        let write_roots: Vec<PathBuf> = self.workspace.roots().map(PathBuf::from).collect();
        let jail = CommandJail { write_roots: &write_roots, network };
        self.config
            .sandbox
            .start_command(&program, &jail)
            .map_err(|e| ToolError::Failed(format!("cannot start the command in its sandbox: {e}")))
    }
}

/// The system shell running `line` in `cwd`.
fn shell(line: &str, cwd: &std::path::Path) -> Program {
    #[cfg(windows)]
    let (program, flag) = ("cmd", "/C");
    #[cfg(not(windows))]
    let (program, flag) = ("/bin/sh", "-c");
    Program::new(program, [flag, line], cwd)
}

/// The first and last bytes of a stream, and how much there was.
#[derive(Default)]
struct Captured {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    total: usize,
    cap: usize,
}

impl Captured {
    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        let head_room = (self.cap / 2).saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(head_room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        self.tail.extend(rest);
        let tail_cap = self.cap - self.cap / 2;
        while self.tail.len() > tail_cap {
            self.tail.pop_front();
        }
    }

    fn render(&self) -> String {
        let kept = self.head.len() + self.tail.len();
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        if kept >= self.total {
            return String::from_utf8_lossy(&[self.head.as_slice(), &tail].concat()).into_owned();
        }
        format!(
            "{}\n[… {} bytes cut of {} …]\n{}",
            String::from_utf8_lossy(&self.head),
            self.total - kept,
            self.total,
            String::from_utf8_lossy(&tail)
        )
    }
}

async fn collect(stream: Option<impl AsyncRead + Unpin>, cap: usize) -> Captured {
    let mut captured = Captured { cap, ..Captured::default() };
    let Some(mut stream) = stream else { return captured };
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        captured.push(&buffer[..n]);
    }
    captured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_head_and_tail_and_says_what_was_cut() {
        let mut captured = Captured { cap: 10, ..Captured::default() };
        captured.push(b"0123456789abcdefghij");
        let shown = captured.render();
        assert!(shown.starts_with("01234"), "{shown}");
        assert!(shown.ends_with("fghij"), "{shown}");
        assert!(shown.contains("10 bytes cut of 20"), "{shown}");

        let mut small = Captured { cap: 10, ..Captured::default() };
        small.push(b"hi");
        small.push(b" there");
        assert_eq!(small.render(), "hi there");
    }
}
