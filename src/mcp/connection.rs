//! One live connection to one MCP server, over stdio or streamable HTTP, through `rmcp`.
//!
//! A stdio server is started with a clean environment (the few variables programs expect,
//! plus its configured `env`: Pryx's own secrets never leak into it), in its own process
//! group, with a parent-death signal, so stopping it can take its whole process tree and a
//! killed Pryx takes it too. Its stderr goes to the log under the server's name, and the
//! last lines are kept to explain a failure. Its stdout is watched for lines that are not
//! JSON-RPC: the SDK skips them, and Pryx remembers a sample so a server that prints
//! garbage fails with a message that says so instead of a bare time-out.
//!
//! [`Connection::shutdown`] follows the MCP shutdown sequence: close stdin, wait, SIGTERM
//! the group, wait, SIGKILL. Dropping a connection without it kills the group at once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use pryx_api::McpServerConfig;
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam, ProgressToken, ProtocolVersion,
};
// Logging and roots are deprecated by SEP-2577 (protocol 2026-07-28) but are how 2025-11-25
// servers, which Pryx speaks to, log and learn where the user's files are.
#[allow(deprecated)]
use rmcp::model::{ListRootsResult, LoggingLevel, LoggingMessageNotificationParam, Root};
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::transport::auth::AuthClient;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ServiceExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, ReadBuf};
use tokio::sync::{mpsc, Notify};

use super::oauth::ServerCredentials;
use crate::sandbox::process::{ChildStdin, ChildStdout};
use crate::sandbox::{Child, Program, Sandbox};
use crate::secrets::SecretsHandle;

/// Environment variables a stdio server inherits from Pryx (everything else is dropped).
const INHERITED_ENV: &[&str] =
    &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "XDG_RUNTIME_DIR"];
/// Stderr lines kept to explain why a server failed.
const STDERR_KEPT: usize = 5;
/// How much of a stderr line (characters) or a stray stdout line (bytes) is kept.
const SAMPLE_BYTES: usize = 300;

/// Why a server could not be connected.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Config(String),
    #[error("cannot start `{command}`: {error}")]
    Spawn { command: String, error: std::io::Error },
    #[error("a secret it needs is not available: {0}")]
    Secret(String),
    #[error("{0}")]
    Handshake(String),
    /// The server answered 401 (or its tokens were refused): a sign-in is needed. Carries
    /// the server's `WWW-Authenticate` challenge for the sign-in to start from.
    #[error("the server needs you to sign in (run `pryx mcp login {server}`)")]
    AuthRequired { server: String, challenge: Option<String> },
}

/// A progress report of a running call.
#[derive(Debug, Clone)]
pub struct Progress {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// What the server tells the client on its own; shared with the server's supervisor.
#[derive(Clone)]
pub struct ServerSignals {
    server: Arc<str>,
    /// Fires on `notifications/tools/list_changed`.
    pub tools_changed: Arc<Notify>,
    /// Fires when a request was refused for want of (enough) authorization; the server's
    /// challenge is kept for the next sign-in.
    pub auth_lost: Arc<Notify>,
    challenge: Arc<Mutex<Option<String>>>,
    /// Running calls that want progress reports, by progress token.
    progress: Arc<Mutex<HashMap<ProgressToken, mpsc::UnboundedSender<Progress>>>>,
    /// `file://` URIs answered to `roots/list` (the workspace, when the server's config asks
    /// for it; otherwise empty and the capability is not offered).
    roots: Arc<Vec<String>>,
}

impl ServerSignals {
    pub fn new(server: &str, roots: Arc<Vec<String>>) -> Self {
        ServerSignals {
            roots,
            server: server.into(),
            tools_changed: Arc::new(Notify::new()),
            auth_lost: Arc::new(Notify::new()),
            challenge: Arc::new(Mutex::new(None)),
            progress: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A request was refused with this challenge: the server needs a (new) sign-in.
    pub fn report_auth_lost(&self, challenge: Option<String>) {
        *self.challenge.lock().unwrap_or_else(|p| p.into_inner()) = challenge;
        self.auth_lost.notify_one();
    }

    /// The challenge of the last refusal, if any.
    pub fn take_challenge(&self) -> Option<String> {
        self.challenge.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Deliver progress for `token` to `sender` until [`Self::stop_watching`].
    pub fn watch_progress(&self, token: ProgressToken, sender: mpsc::UnboundedSender<Progress>) {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).insert(token, sender);
    }

    pub fn stop_watching(&self, token: &ProgressToken) {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).remove(token);
    }
}

impl ClientHandler for ServerSignals {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(target: "pryx::mcp", server = %self.server, "the server's tool list changed");
        self.tools_changed.notify_one();
    }

    async fn on_progress(&self, params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        let watchers = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = watchers.get(&params.progress_token) {
            let _ = sender.send(Progress { progress: params.progress, total: params.total, message: params.message });
        }
    }

    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let text = match &params.data {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let text = crate::tools::clip(&text, 2000);
        match params.level {
            LoggingLevel::Debug => tracing::debug!(target: "pryx::mcp", server = %self.server, "{text}"),
            LoggingLevel::Info | LoggingLevel::Notice => {
                tracing::info!(target: "pryx::mcp", server = %self.server, "{text}")
            }
            LoggingLevel::Warning => tracing::warn!(target: "pryx::mcp", server = %self.server, "{text}"),
            _ => tracing::error!(target: "pryx::mcp", server = %self.server, "{text}"),
        }
    }

    /// The workspace, so servers that work on files know where the user's files are.
    #[allow(deprecated)]
    async fn list_roots(
        &self,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, rmcp::ErrorData> {
        let roots = self.roots.iter().map(|uri| Root::new(uri.clone()).with_name("Pryx workspace")).collect();
        Ok(ListRootsResult::new(roots))
    }

    /// Pryx offers protocol 2025-11-25, the newest with the `initialize` handshake, which
    /// every server tested here speaks. 2026-07-28 moves `list_changed` to `listen` streams
    /// that Pryx does not open yet, so offering it would lose tool-list updates.
    #[allow(deprecated)]
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if !self.roots.is_empty() {
            capabilities.roots = Some(rmcp::model::RootsCapabilities::default());
        }
        ClientConfig::new(capabilities, Implementation::new("pryx", env!("CARGO_PKG_VERSION")))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

/// What a stdio server printed that was not protocol, and on stderr.
#[derive(Default)]
pub struct OutputWitness {
    stray_stdout_lines: u64,
    stray_stdout_sample: Option<String>,
    stderr_tail: VecDeque<String>,
}

impl OutputWitness {
    /// A sentence explaining a failure from what the server printed, if it printed anything.
    pub fn explain(&self) -> Option<String> {
        if let Some(sample) = &self.stray_stdout_sample {
            return Some(format!(
                "it printed {} line(s) on stdout that are not MCP messages, e.g. `{sample}`",
                self.stray_stdout_lines
            ));
        }
        self.stderr_tail.back().map(|line| format!("its last error output: `{line}`"))
    }
}

/// What opening a connection needs from the rest of Pryx.
pub struct ConnectContext<'a> {
    /// Working directory of a stdio server without its own `cwd`.
    pub default_cwd: &'a std::path::Path,
    /// Resolves `secret:NAME` values.
    pub secrets: &'a SecretsHandle,
    /// Where this server's OAuth tokens are kept (HTTP servers).
    pub credentials: ServerCredentials,
    /// Contains a stdio server (see `crate::sandbox`); `None` starts it as it is.
    pub sandbox: Option<&'a Sandbox>,
    /// Directories a contained server still sees (the workspace roots).
    pub roots: &'a [std::path::PathBuf],
}

/// A connected server.
pub struct Connection {
    pub service: RunningService<RoleClient, ServerSignals>,
    child: Option<ServerProcess>,
    pub witness: Arc<Mutex<OutputWitness>>,
}

impl Connection {
    /// Spawn or connect, then handshake, within the server's start-up timeout.
    pub async fn open(
        name: &str,
        config: &McpServerConfig,
        context: ConnectContext<'_>,
        signals: ServerSignals,
    ) -> Result<Connection, ConnectError> {
        let ConnectContext { default_cwd, secrets, credentials, sandbox, roots } = context;
        let witness = Arc::new(Mutex::new(OutputWitness::default()));
        let timeout = Duration::from_secs(config.startup_timeout_secs.max(1));
        let explain = |witness: &Arc<Mutex<OutputWitness>>, what: String| {
            let why = witness.lock().unwrap_or_else(|p| p.into_inner()).explain();
            ConnectError::Handshake(match why {
                Some(why) => format!("{what}; {why}"),
                None => what,
            })
        };
        match (&config.command, &config.url) {
            (Some(command), None) => {
                let env = resolve_values(&config.env, secrets).await?;
                let cwd = config.cwd.as_deref().map(std::path::PathBuf::from).unwrap_or_else(|| default_cwd.to_owned());
                let (process, stdout, stdin) =
                    ServerProcess::spawn(name, (sandbox, roots), command, &config.args, &env, &cwd, &witness)?;
                let stdout =
                    WatchedStdout { inner: stdout, witness: witness.clone(), line: Vec::new(), server: name.into() };
                let handshake = signals.serve((stdout, stdin));
                match tokio::time::timeout(timeout, handshake).await {
                    Ok(Ok(service)) => Ok(Connection { service, child: Some(process), witness }),
                    Ok(Err(e)) => {
                        // Let the process finish writing to stderr before reading why it failed.
                        let mut process = process;
                        process.wait_exit(Duration::from_millis(300)).await;
                        Err(explain(&witness, format!("the MCP handshake failed: {e}")))
                    }
                    Err(_) => {
                        Err(explain(&witness, format!("no answer to the MCP handshake within {}s", timeout.as_secs())))
                    }
                }
            }
            (None, Some(url)) => {
                let headers = resolve_values(&config.headers, secrets).await?;
                let mut custom = HashMap::new();
                for (key, value) in headers {
                    let key = http::HeaderName::try_from(key.as_str())
                        .map_err(|e| ConnectError::Config(format!("header `{key}`: {e}")))?;
                    let value = http::HeaderValue::try_from(value)
                        .map_err(|e| ConnectError::Config(format!("header `{key}`: {e}")))?;
                    custom.insert(key, value);
                }
                let transport_config =
                    StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom);
                let signed_in = super::oauth::stored_authorization(url, credentials)
                    .await
                    .map_err(|e| ConnectError::Handshake(format!("cannot use the stored sign-in: {e}")))?;
                let handshake = async {
                    match signed_in {
                        Some(manager) => {
                            let client = AuthClient::new(reqwest::Client::new(), manager);
                            let transport = StreamableHttpClientTransport::with_client(client, transport_config);
                            signals.serve(transport).await
                        }
                        None => signals.serve(StreamableHttpClientTransport::from_config(transport_config)).await,
                    }
                };
                match tokio::time::timeout(timeout, handshake).await {
                    Ok(Ok(service)) => Ok(Connection { service, child: None, witness }),
                    Ok(Err(e)) if e.is_authorization_required() => Err(ConnectError::AuthRequired {
                        server: name.to_owned(),
                        challenge: e.auth_challenge().map(str::to_owned),
                    }),
                    Ok(Err(e)) => Err(ConnectError::Handshake(format!("cannot connect to {url}: {e}"))),
                    Err(_) => Err(ConnectError::Handshake(format!(
                        "{url} did not complete the MCP handshake within {}s",
                        timeout.as_secs()
                    ))),
                }
            }
            _ => Err(ConnectError::Config("set exactly one of `command` and `url`".into())),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.child.id())
    }

    /// Waits until the connection is gone (the process exited or the transport closed) and
    /// says why.
    pub async fn closed(&mut self) -> String {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            if let Some(process) = &mut self.child {
                tokio::select! {
                    _ = process.child.wait() => break,
                    _ = tick.tick() => {}
                }
            } else {
                tick.tick().await;
            }
            if self.service.is_transport_closed() || self.service.is_closed() {
                break;
            }
        }
        self.exit_reason().await
    }

    /// Why the connection ended, as far as the process tells.
    async fn exit_reason(&mut self) -> String {
        let mut reason = match &mut self.child {
            Some(process) => match process.wait_exit(Duration::from_millis(500)).await {
                Some(status) => format!("the server exited ({status})"),
                None => "the server closed its connection".to_owned(),
            },
            None => "the server closed the connection".to_owned(),
        };
        if let Some(why) = self.witness.lock().unwrap_or_else(|p| p.into_inner()).explain() {
            reason = format!("{reason}; {why}");
        }
        reason
    }

    /// Stop politely (close the transport, which closes the server's stdin), then by force.
    pub async fn shutdown(self) {
        let Connection { service, child, .. } = self;
        let _ = tokio::time::timeout(Duration::from_secs(2), service.cancel()).await;
        if let Some(mut process) = child {
            process.stop().await;
        }
    }
}

/// `secret:NAME` values resolved from the keychain; other values as written.
async fn resolve_values(
    values: &BTreeMap<String, String>,
    secrets: &SecretsHandle,
) -> Result<Vec<(String, String)>, ConnectError> {
    let mut resolved = Vec::with_capacity(values.len());
    for (key, value) in values {
        let value = if value.starts_with(crate::secrets::REFERENCE_PREFIX) {
            let reference = value.clone();
            secrets
                .run(move |s| s.resolve(&reference))
                .await
                .map_err(|e| ConnectError::Secret(format!("`{key}`: {e}")))?
                .expose()
                .to_owned()
        } else {
            value.clone()
        };
        resolved.push((key.clone(), value));
    }
    Ok(resolved)
}

/// A stdio server's process group (killed and reaped when dropped, by `Child`).
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    fn spawn(
        name: &str,
        (sandbox, roots): (Option<&Sandbox>, &[std::path::PathBuf]),
        command: &str,
        args: &[String],
        env: &[(String, String)],
        cwd: &std::path::Path,
        witness: &Arc<Mutex<OutputWitness>>,
    ) -> Result<(ServerProcess, ChildStdout, ChildStdin), ConnectError> {
        let mut program = Program::new(command, args, cwd);
        program.stdin_piped = true;
        for key in INHERITED_ENV {
            if let Some(value) = std::env::var_os(key) {
                program.env(key, value);
            }
        }
        for (key, value) in env {
            program.env(key, value);
        }
        let spawn_error = |error| ConnectError::Spawn { command: command.to_owned(), error };
        let mut child = match sandbox {
            Some(sandbox) => sandbox.start_server(&program, roots),
            None => crate::sandbox::start_uncontained(&program),
        }
        .map_err(spawn_error)?;
        let pid = child.id();
        let (Some(stdout), Some(stdin), Some(stderr)) = (child.stdout.take(), child.stdin.take(), child.stderr.take())
        else {
            return Err(spawn_error(std::io::Error::other("no pipes to the child")));
        };
        tracing::info!(target: "pryx::mcp", server = %name, pid, "started `{command}`");
        let (server, witness) = (name.to_owned(), witness.clone());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = crate::tools::clip(&line, SAMPLE_BYTES);
                tracing::info!(target: "pryx::mcp", server = %server, "stderr: {line}");
                let mut witness = witness.lock().unwrap_or_else(|p| p.into_inner());
                if witness.stderr_tail.len() == STDERR_KEPT {
                    witness.stderr_tail.pop_front();
                }
                if !line.trim().is_empty() {
                    witness.stderr_tail.push_back(line);
                }
            }
        });
        Ok((ServerProcess { child }, stdout, stdin))
    }

    /// The exit status if the leader exits within `wait`.
    async fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        // `wait` after an exit answers at once with the same status.
        match tokio::time::timeout(wait, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => None,
        }
    }

    /// SIGTERM the group unless the leader left on its own, then SIGKILL whatever remains.
    async fn stop(&mut self) {
        if self.wait_exit(Duration::from_secs(1)).await.is_none() {
            self.signal_group(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(2)).await.is_none() {
                self.signal_group(libc::SIGKILL);
                let _ = self.wait_exit(Duration::from_secs(2)).await;
            }
        }
        // Helpers the server started may outlive it in its group.
        self.signal_group(libc::SIGKILL);
    }

    fn signal_group(&mut self, signal: libc::c_int) {
        self.child.signal_group(signal);
    }
}

/// The server's stdout, passed through to the SDK, noting lines that are not JSON-RPC.
struct WatchedStdout {
    inner: ChildStdout,
    witness: Arc<Mutex<OutputWitness>>,
    /// The start of the current line, up to [`SAMPLE_BYTES`].
    line: Vec<u8>,
    server: String,
}

impl WatchedStdout {
    fn observe(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                let line = String::from_utf8_lossy(&self.line).trim().to_owned();
                if !line.is_empty() && !line.starts_with('{') && !line.starts_with('[') {
                    let mut witness = self.witness.lock().unwrap_or_else(|p| p.into_inner());
                    witness.stray_stdout_lines += 1;
                    if witness.stray_stdout_lines <= 3 {
                        tracing::warn!(target: "pryx::mcp", server = %self.server, "non-MCP output on stdout ignored: {line}");
                    }
                    witness.stray_stdout_sample.get_or_insert(line);
                }
                self.line.clear();
            } else if self.line.len() < SAMPLE_BYTES {
                self.line.push(byte);
            }
        }
    }
}

impl AsyncRead for WatchedStdout {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.observe(&buf.filled()[before..]);
        }
        result
    }
}
