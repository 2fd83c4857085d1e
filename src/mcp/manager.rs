//! The MCP manager: keeps the running servers in line with the `[mcp]` config, and their
//! tools in the agent's [`LiveTools`].
//!
//! Each enabled server has a supervisor task: connect, list tools (all pages), offer them,
//! then wait for a stop, a restart request, a `tools/list_changed`, or the server going away.
//! A server that fails or exits is reported (`failed` with the reason), its tools are
//! withdrawn, and it is started again after a back-off (1 s doubling to 60 s, reset after a
//! minute of health). [`McpManager::apply`] diffs a new config against the running set:
//! removed or changed servers are stopped, new or changed ones started, the rest untouched.
//! The config file is watched, so an edit takes effect within about 100 ms.
//!
//! Invariant: the tools offered are exactly those of servers in `ready` state, named by one
//! [`NameAllocator`] pass over all of them in server-name order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pryx_api::{McpOverview, McpServerConfig, McpServerState, McpServerStatus, McpToolInfo};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config_file::{self, EditError};
use super::connection::{ConnectContext, ConnectError, Connection, ServerSignals};
use super::names::NameAllocator;
use super::oauth::{CredentialsAt, LoginError, PendingLogins};
use super::tool::{McpTool, SharedTool};
use crate::config::{Config, McpConfig};
use crate::sandbox::Sandbox;
use crate::secrets::SecretsHandle;
use crate::tools::{LiveTools, Tool};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Edits arrive as bursts of file events; wait this long for the burst to end.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How long one `tools/list` may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an MCP request from the API failed.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("there is no MCP server named `{0}`")]
    NotFound(String),
    #[error("Pryx was started without a config file to write to")]
    NoConfigFile,
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("`{0}` is not an HTTP server; only those sign in")]
    NotHttp(String),
    #[error("sign-in needs Pryx's own address for the browser to come back to, and it is not serving yet")]
    NoRedirect,
    #[error(transparent)]
    Login(#[from] LoginError),
}

/// What the servers of one runtime get from the rest of Pryx.
pub struct McpEnvironment {
    /// Resolves `secret:NAME` values in `env` and `headers`.
    pub secrets: SecretsHandle,
    /// Where HTTP servers' OAuth tokens are kept.
    pub credentials: CredentialsAt,
    /// Directories offered to servers as MCP roots (the workspace); the first is also the
    /// working directory of stdio servers without their own `cwd`.
    pub roots: Vec<PathBuf>,
    /// The config file to watch and to write `mcp.add`/`mcp.remove` to.
    pub config_path: Option<PathBuf>,
    /// Contains stdio servers: their own PID namespace (nothing they start outlives Pryx),
    /// Pryx's files hidden. `None` starts them as they are.
    pub sandbox: Option<Arc<Sandbox>>,
}

/// Owns every MCP server of one agent runtime.
pub struct McpManager {
    live: Arc<LiveTools>,
    secrets: SecretsHandle,
    credentials: CredentialsAt,
    logins: PendingLogins,
    /// `http://127.0.0.1:PORT`: OAuth sign-ins come back to `/oauth/callback` under it.
    redirect_base: Mutex<Option<String>>,
    /// `file://` URIs of the roots.
    roots: Arc<Vec<String>>,
    default_cwd: PathBuf,
    config_path: Option<PathBuf>,
    sandbox: Option<Arc<Sandbox>>,
    /// The roots as paths: a contained server still sees them.
    root_paths: Vec<PathBuf>,
    state: Mutex<State>,
    /// Serialises config applications (file watcher and API calls).
    applying: tokio::sync::Mutex<()>,
    status_events: broadcast::Sender<McpServerStatus>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Default)]
struct State {
    servers: BTreeMap<String, Server>,
    max_output_bytes: usize,
    config_error: Option<String>,
    /// Keeps the file watcher alive.
    watcher: Option<notify::RecommendedWatcher>,
}

struct Server {
    config: McpServerConfig,
    status: McpServerStatus,
    tools: Vec<SharedTool>,
    stop: CancellationToken,
    restart: Arc<Notify>,
    /// Fires when the supervisor task has stopped the server.
    stopped: Arc<tokio::sync::Semaphore>,
    /// The last `WWW-Authenticate` challenge, where a sign-in starts from.
    challenge: Option<String>,
}

impl McpManager {
    /// Start the configured servers (in the background) and, if asked, watch the file.
    pub fn start(config: &McpConfig, live: Arc<LiveTools>, environment: McpEnvironment) -> Arc<McpManager> {
        let (status_events, _) = broadcast::channel(256);
        let McpEnvironment { secrets, credentials, roots: root_paths, config_path, sandbox } = environment;
        let default_cwd = root_paths.first().cloned().unwrap_or_else(std::env::temp_dir);
        let roots = root_paths.iter().filter_map(|r| url::Url::from_directory_path(r).ok()).map(String::from).collect();
        let manager = Arc::new(McpManager {
            live,
            secrets,
            credentials,
            logins: PendingLogins::default(),
            redirect_base: Mutex::new(None),
            roots: Arc::new(roots),
            default_cwd,
            config_path,
            sandbox,
            root_paths,
            state: Mutex::new(State { max_output_bytes: config.max_output_bytes, ..State::default() }),
            applying: tokio::sync::Mutex::new(()),
            status_events,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        manager.apply_now(config);
        if config.watch_config {
            manager.watch_config_file();
        }
        manager
    }

    /// Make the running servers match `config`.
    pub async fn apply(self: &Arc<Self>, config: &McpConfig) {
        let _one_at_a_time = self.applying.lock().await;
        let stopping = self.apply_now(config);
        for stopped in stopping {
            let _ = stopped.acquire().await;
        }
    }

    /// Start what is new or changed, signal the rest to stop; returns what to wait for.
    fn apply_now(self: &Arc<Self>, config: &McpConfig) -> Vec<Arc<tokio::sync::Semaphore>> {
        let mut stopping = Vec::new();
        let mut state = self.lock();
        state.max_output_bytes = config.max_output_bytes;
        state.config_error = None;
        let gone: Vec<String> = state
            .servers
            .iter()
            .filter(|(name, server)| config.servers.get(*name) != Some(&server.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(server) = state.servers.remove(&name) {
                tracing::info!(target: "pryx::mcp", server = %name, "stopping (configuration changed or removed)");
                server.stop.cancel();
                stopping.push(server.stopped);
            }
        }
        for (name, server_config) in &config.servers {
            if state.servers.contains_key(name) {
                continue;
            }
            let server = self.launch(name, server_config.clone());
            let _ = self.status_events.send(server.status.clone());
            state.servers.insert(name.clone(), server);
        }
        self.publish_tools(&mut state);
        stopping
    }

    fn launch(self: &Arc<Self>, name: &str, config: McpServerConfig) -> Server {
        let transport = if config.url.is_some() { "http" } else { "stdio" };
        let status = McpServerStatus {
            name: name.to_owned(),
            state: if config.enabled { McpServerState::Starting } else { McpServerState::Disabled },
            reason: None,
            transport: transport.into(),
            pid: None,
            server_info: None,
            protocol_version: None,
            tools: 0,
            restarts: 0,
        };
        let stop = self.shutdown.child_token();
        let restart = Arc::new(Notify::new());
        let stopped = Arc::new(tokio::sync::Semaphore::new(0));
        if config.enabled {
            let supervisor = Supervisor {
                manager: Arc::downgrade(self),
                name: name.to_owned(),
                config: config.clone(),
                stop: stop.clone(),
                restart: restart.clone(),
            };
            let done = stopped.clone();
            self.tasks.spawn(async move {
                supervisor.run().await;
                done.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
            });
        } else {
            stopped.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
        }
        Server { config, status, tools: Vec::new(), stop, restart, stopped, challenge: None }
    }

    /// Re-read the config file and apply its `[mcp]` section. A file that does not load is
    /// reported (in `mcp.list` and the log) and changes nothing.
    pub async fn reload_from_file(self: &Arc<Self>) -> Result<(), McpError> {
        let path = self.config_path.as_ref().ok_or(McpError::NoConfigFile)?;
        match Config::load(path, false) {
            Ok(config) => {
                self.apply(&config.mcp).await;
                Ok(())
            }
            Err(e) => {
                tracing::error!(target: "pryx::mcp", "the config file no longer loads; MCP servers left as they were: {e}");
                self.lock().config_error = Some(e.to_string());
                Err(McpError::Edit(EditError::Config(e)))
            }
        }
    }

    fn watch_config_file(self: &Arc<Self>) {
        use notify::Watcher;
        let Some(path) = self.config_path.clone() else { return };
        let Some(dir) = path.parent().map(PathBuf::from) else { return };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(target: "pryx::mcp", "not watching {}: {e}", dir.display());
            return;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let file_name = path.file_name().map(|n| n.to_owned());
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let ours = event.paths.iter().any(|p| p.file_name() == file_name.as_deref());
                if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                    let _ = tx.send(());
                }
            }
        };
        let watcher = notify::recommended_watcher(handler)
            .and_then(|mut w| w.watch(&dir, notify::RecursiveMode::NonRecursive).map(|()| w));
        match watcher {
            Ok(watcher) => self.lock().watcher = Some(watcher),
            Err(e) => {
                tracing::warn!(target: "pryx::mcp", "not watching {} for changes: {e}", path.display());
                return;
            }
        }
        let manager = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = rx.recv() => if event.is_none() { return },
                }
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
                let Some(manager) = manager.upgrade() else { return };
                let _ = manager.reload_from_file().await;
            }
        });
    }

    // ---- what the API asks ----

    /// The config file the API edits, if Pryx runs with one.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    pub fn overview(&self) -> McpOverview {
        let state = self.lock();
        McpOverview {
            servers: state.servers.values().map(|s| s.status.clone()).collect(),
            config_error: state.config_error.clone(),
            config_path: self.config_path.as_ref().map(|p| p.display().to_string()),
        }
    }

    pub fn status(&self, name: &str) -> Result<McpServerStatus, McpError> {
        self.lock().servers.get(name).map(|s| s.status.clone()).ok_or_else(|| McpError::NotFound(name.to_owned()))
    }

    /// The tools offered now; `rule` is left for the caller (the agent knows the policy).
    /// The server that offers the tool the model knows as `exposed`.
    pub fn server_of(&self, exposed: &str) -> Option<String> {
        let state = self.lock();
        state.servers.values().flat_map(|s| s.tools.iter()).find(|t| t.exposed == exposed).map(|t| t.server.clone())
    }

    /// The tools of one server (or all), each with what `rule_for` says the policy does with
    /// it (the policy is the agent's; a tool it does not offer now asks).
    pub fn tools(
        &self,
        server: Option<&str>,
        rule_for: impl Fn(&str) -> Option<pryx_api::Rule>,
    ) -> Result<Vec<McpToolInfo>, McpError> {
        let state = self.lock();
        if let Some(name) = server {
            if !state.servers.contains_key(name) {
                return Err(McpError::NotFound(name.to_owned()));
            }
        }
        Ok(state
            .servers
            .iter()
            .filter(|(name, _)| server.is_none_or(|s| s == name.as_str()))
            .flat_map(|(_, s)| s.tools.iter())
            .map(|t| McpToolInfo {
                server: t.server.clone(),
                name: t.exposed.clone(),
                tool: t.tool.clone(),
                title: t.title.clone(),
                description: t.description.clone(),
                input_schema: t.input_schema.clone(),
                hints: t.hints.clone(),
                rule: rule_for(&t.exposed).unwrap_or(pryx_api::Rule::Ask),
            })
            .collect())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<McpServerStatus> {
        self.status_events.subscribe()
    }

    /// Write servers into the config file and apply it; waits until each has started or
    /// failed, so the answer says how it went.
    pub async fn add(
        self: &Arc<Self>,
        servers: Vec<(String, McpServerConfig)>,
        replace: bool,
    ) -> Result<Vec<McpServerStatus>, McpError> {
        let path = self.config_path.as_ref().ok_or(McpError::NoConfigFile)?;
        config_file::add_servers(path, &servers, replace)?;
        self.reload_from_file().await?;
        let mut statuses = Vec::new();
        for (name, config) in servers {
            statuses.push(self.settled_status(&name, &config, 0).await?);
        }
        Ok(statuses)
    }

    pub async fn remove(self: &Arc<Self>, name: &str) -> Result<(), McpError> {
        let path = self.config_path.as_ref().ok_or(McpError::NoConfigFile)?;
        config_file::remove_server(path, name)?;
        self.reload_from_file().await
    }

    pub async fn restart(self: &Arc<Self>, name: &str) -> Result<McpServerStatus, McpError> {
        let (restart, config, status) = {
            let state = self.lock();
            let server = state.servers.get(name).ok_or_else(|| McpError::NotFound(name.to_owned()))?;
            (server.restart.clone(), server.config.clone(), server.status.clone())
        };
        if status.state == McpServerState::Disabled {
            return Ok(status);
        }
        restart.notify_one();
        // The next start counts one more restart: wait for that one to settle.
        self.settled_status(name, &config, status.restarts + 1).await
    }

    /// The status once a start counted at least `restarts` is no longer `starting` (or the
    /// start-up time is over).
    async fn settled_status(
        &self,
        name: &str,
        config: &McpServerConfig,
        restarts: u64,
    ) -> Result<McpServerStatus, McpError> {
        let mut events = self.subscribe();
        let deadline = Instant::now() + Duration::from_secs(config.startup_timeout_secs + 2);
        loop {
            let status = self.status(name)?;
            let settled = status.restarts >= restarts && status.state != McpServerState::Starting;
            if settled || status.state == McpServerState::Disabled {
                return Ok(status);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(status);
            }
            let _ = tokio::time::timeout(remaining, events.recv()).await;
        }
    }

    /// Where Pryx serves, so OAuth sign-ins can come back to it.
    pub fn set_redirect_base(&self, base_url: String) {
        *self.redirect_base.lock().unwrap_or_else(|p| p.into_inner()) = Some(base_url);
    }

    /// Start an OAuth sign-in for an HTTP server; answers the URL for the browser.
    pub async fn login(&self, name: &str) -> Result<String, McpError> {
        let redirect_uri = self.redirect_base.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let redirect_uri = format!("{}/oauth/callback", redirect_uri.ok_or(McpError::NoRedirect)?);
        self.login_with_redirect(name, &redirect_uri).await
    }

    /// [`Self::login`] with a given redirect URI (the conformance probe has no server).
    pub async fn login_with_redirect(&self, name: &str, redirect_uri: &str) -> Result<String, McpError> {
        let (config, challenge) = {
            let state = self.lock();
            let server = state.servers.get(name).ok_or_else(|| McpError::NotFound(name.to_owned()))?;
            (server.config.clone(), server.challenge.clone())
        };
        if config.url.is_none() {
            return Err(McpError::NotHttp(name.to_owned()));
        }
        let credentials = self.credentials.for_server(name);
        Ok(self.logins.begin(name, &config, credentials, redirect_uri, challenge, &self.secrets).await?)
    }

    /// The browser came back: store the tokens and reconnect the server. Answers its name.
    pub async fn complete_login(&self, query: &std::collections::HashMap<String, String>) -> Result<String, McpError> {
        let server = self.logins.complete(query).await?;
        tracing::info!(target: "pryx::mcp", server = %server, "signed in");
        if let Some(restart) = self.lock().servers.get(&server).map(|s| s.restart.clone()) {
            restart.notify_one();
        }
        Ok(server)
    }

    /// Forget a server's tokens and reconnect it.
    pub async fn logout(&self, name: &str) -> Result<(), McpError> {
        let restart = self.lock().servers.get(name).map(|s| s.restart.clone());
        let restart = restart.ok_or_else(|| McpError::NotFound(name.to_owned()))?;
        self.credentials
            .for_server(name)
            .forget()
            .await
            .map_err(|e| McpError::Login(LoginError::Failed(e.to_string())))?;
        restart.notify_one();
        Ok(())
    }

    /// Stop every server (politely, then by force) and wait for them.
    pub async fn shutdown(&self) {
        self.lock().watcher = None;
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.live.replace_extra(Vec::new());
    }

    // ---- helpers for the supervisors ----

    fn connect_context(&self, server: &str) -> ConnectContext<'_> {
        ConnectContext {
            default_cwd: &self.default_cwd,
            secrets: &self.secrets,
            credentials: self.credentials.for_server(server),
            sandbox: self.sandbox.as_deref(),
            roots: &self.root_paths,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Update one server's status and tools (if it is still the configured one).
    /// `restart` identifies the supervisor: a server removed and added again under the same
    /// name has a new one, and the old supervisor must not touch it.
    fn update(&self, name: &str, restart: &Arc<Notify>, change: impl FnOnce(&mut Server)) {
        let mut state = self.lock();
        let Some(server) = state.servers.get_mut(name) else { return };
        if !Arc::ptr_eq(&server.restart, restart) || server.stop.is_cancelled() {
            return;
        }
        change(server);
        server.status.tools = server.tools.len();
        let _ = self.status_events.send(server.status.clone());
        self.publish_tools(&mut state);
    }

    /// Name every ready server's tools in one pass and offer them.
    fn publish_tools(&self, state: &mut State) {
        let mut names = NameAllocator::default();
        let mut offered: Vec<Arc<dyn Tool>> = Vec::new();
        for server in state.servers.values_mut() {
            for tool in &mut server.tools {
                let exposed = names.allocate(&tool.server, &tool.tool);
                if exposed != tool.exposed {
                    *tool = Arc::new(tool.renamed(exposed));
                }
                offered.push(tool.clone());
            }
        }
        self.live.replace_extra(offered);
    }
}

/// Runs one server for as long as it is configured.
struct Supervisor {
    manager: std::sync::Weak<McpManager>,
    name: String,
    config: McpServerConfig,
    stop: CancellationToken,
    restart: Arc<Notify>,
}

/// How a connected period ended.
enum Ended {
    Stopped,
    RestartRequested,
    Failed(String),
    NeedsAuth { reason: String, challenge: Option<String> },
}

impl Supervisor {
    async fn run(self) {
        let mut backoff = FIRST_BACKOFF;
        let mut restarts = 0u64;
        loop {
            let Some(manager) = self.manager.upgrade() else { return };
            self.set(&manager, |s| {
                s.status.state = McpServerState::Starting;
                s.status.restarts = restarts;
            });
            let roots = if self.config.workspace_root { manager.roots.clone() } else { Arc::default() };
            let signals = ServerSignals::new(&self.name, roots);
            let opened = tokio::select! {
                _ = self.stop.cancelled() => return,
                opened = Connection::open(&self.name, &self.config, manager.connect_context(&self.name), signals.clone()) => opened,
            };
            let started = Instant::now();
            let ended = match opened {
                Ok(connection) => self.serve(&manager, connection, signals).await,
                Err(e @ ConnectError::AuthRequired { .. }) => {
                    let reason = e.to_string();
                    let ConnectError::AuthRequired { challenge, .. } = e else { unreachable!() };
                    Ended::NeedsAuth { reason, challenge }
                }
                Err(e) => Ended::Failed(e.to_string()),
            };
            self.set(&manager, |s| s.tools.clear());
            drop(manager);
            match ended {
                Ended::Stopped => return,
                Ended::RestartRequested => backoff = FIRST_BACKOFF,
                Ended::NeedsAuth { reason, challenge } => {
                    tracing::warn!(target: "pryx::mcp", server = %self.name, "{reason}");
                    if let Some(manager) = self.manager.upgrade() {
                        self.set(&manager, |s| {
                            s.status.state = McpServerState::NeedsAuth;
                            s.status.reason = Some(reason);
                            s.status.pid = None;
                            s.challenge = challenge;
                        });
                    }
                    // Nothing to retry until someone signs in (which asks for a restart).
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = self.restart.notified() => backoff = FIRST_BACKOFF,
                    }
                }
                Ended::Failed(reason) => {
                    tracing::warn!(target: "pryx::mcp", server = %self.name, "failed: {reason}; retrying in {}s", backoff.as_secs());
                    if let Some(manager) = self.manager.upgrade() {
                        self.set(&manager, |s| {
                            s.status.state = McpServerState::Failed;
                            s.status.reason = Some(reason);
                            s.status.pid = None;
                        });
                    }
                    if started.elapsed() >= HEALTHY_AFTER {
                        backoff = FIRST_BACKOFF;
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = self.restart.notified() => backoff = FIRST_BACKOFF,
                        _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(MAX_BACKOFF),
                    }
                }
            }
            restarts += 1;
        }
    }

    /// List tools, offer them, and keep them current until the connection ends.
    async fn serve(&self, manager: &Arc<McpManager>, mut connection: Connection, signals: ServerSignals) -> Ended {
        let peer_info = connection.service.peer_info();
        let server_info =
            peer_info.as_ref().and_then(|i| i.server_info.as_ref()).map(|i| format!("{} {}", i.name, i.version));
        let protocol = peer_info.as_ref().map(|i| i.protocol_version.to_string());
        let pid = connection.pid();
        let ended = loop {
            let listed = tokio::time::timeout(LIST_TIMEOUT, connection.service.list_all_tools()).await;
            let tools = match listed {
                Ok(Ok(tools)) => tools,
                Ok(Err(e)) if e.is_authorization_required() || e.auth_challenge().is_some() => {
                    break Ended::NeedsAuth {
                        reason: format!("the server needs you to sign in (run `pryx mcp login {}`)", self.name),
                        challenge: e.auth_challenge().map(str::to_owned),
                    };
                }
                Ok(Err(e)) => break Ended::Failed(format!("cannot list its tools: {e}")),
                Err(_) => break Ended::Failed("did not list its tools within 30s".into()),
            };
            let max_output_bytes = manager.lock().max_output_bytes;
            let tools: Vec<SharedTool> = tools
                .iter()
                .map(|tool| {
                    Arc::new(McpTool {
                        server: self.name.clone(),
                        exposed: super::names::exposed_name(&self.name, &tool.name),
                        tool: tool.name.to_string(),
                        title: tool.title.clone(),
                        description: McpTool::model_description(&self.name, tool),
                        input_schema: McpTool::schema_of(tool),
                        hints: McpTool::hints_of(tool),
                        trusted: self.config.trusted || self.config.trusted_tools.iter().any(|t| t == &*tool.name),
                        peer: connection.service.peer().clone(),
                        signals: signals.clone(),
                        call_timeout: Duration::from_secs(self.config.call_timeout_secs),
                        max_output_bytes,
                    })
                })
                .collect();
            tracing::info!(target: "pryx::mcp", server = %self.name, tools = tools.len(), "ready");
            self.set(manager, |s| {
                s.tools = tools;
                s.status.state = McpServerState::Ready;
                s.status.reason = None;
                s.status.pid = pid;
                s.status.server_info = server_info.clone();
                s.status.protocol_version = protocol.clone();
            });
            tokio::select! {
                _ = self.stop.cancelled() => break Ended::Stopped,
                _ = self.restart.notified() => break Ended::RestartRequested,
                _ = signals.tools_changed.notified() => continue,
                _ = signals.auth_lost.notified() => break Ended::NeedsAuth {
                    reason: format!("the server asks for a new sign-in (run `pryx mcp login {}`)", self.name),
                    challenge: signals.take_challenge(),
                },
                reason = connection.closed() => break Ended::Failed(reason),
            }
        };
        connection.shutdown().await;
        ended
    }

    fn set(&self, manager: &McpManager, change: impl FnOnce(&mut Server)) {
        manager.update(&self.name, &self.restart, change);
    }
}
