//! The agent: everything Pryx does on the owner's behalf, behind one façade the API,
//! the channels and the desktop shell call.
//!
//! It is cut along its seams:
//! - `turns.rs`, `step.rs`, `tool_calls.rs`, `context.rs`: the turn engine (turns in
//!   order, the streaming model loop, tool calls through the policy, what the model is
//!   sent). It knows the store, the provider, the tools and the approval broker, nothing
//!   else;
//! - `provider.rs`, `settings.rs`, `tool_rules.rs` and this file: the control surface
//!   (sessions, approvals, the provider, tool rules, secrets, settings, the sandbox probe).
//!
//! [`Agent::assemble`] is the composition root: the one place the parts are built and wired.
//! This module never touches HTTP.

mod context;
mod login;
mod provider;
mod settings;
mod step;
mod tool_calls;
mod tool_rules;
mod turns;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pryx_api::{Activity, Approval, ApprovalDecision, SandboxInfo, Session, SessionDetail, Surface, SystemInfo};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::approvals::{Broker, Policy};
use crate::config::edit::EditError;
use crate::config::Config;
use crate::llm::ProviderResolver;
use crate::mcp::McpManager;
use crate::sandbox::workspace::{Workspace, WorkspaceError};
use crate::sandbox::{PrivatePaths, Sandbox};
use crate::secrets::{SecretError, SecretName, SecretString, SecretsHandle};
use crate::store::{now_ms, Store, StoreError};
use crate::telemetry::history::{HistoryError, SpanHistory};
use crate::tools::shell::ShellConfig;
use crate::tools::{LiveTools, ToolRegistry};
use context::{validate_title, DEFAULT_TITLE};
pub use tool_rules::ToolRules;
pub use turns::TurnEngine;

/// What the API layer can be told went wrong.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Conflict(String),
    #[error("Pryx is paused; resume it to start new turns")]
    Paused,
    #[error("fault injection is disabled (debug build and PRYX_FAULT_INJECTION=1 needed)")]
    FaultsDisabled,
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Config(#[from] EditError),
    #[error(transparent)]
    Spans(#[from] HistoryError),
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AgentError::NotFound(what),
            other => AgentError::Store(other),
        }
    }
}

/// The owner's pause switch. It outlives runtime incarnations (a restart after a panic
/// does not resume a paused agent), so the supervisor owns it and hands it to each `Agent`.
#[derive(Debug, Clone, Default)]
pub struct PauseSwitch(Arc<AtomicBool>);

impl PauseSwitch {
    pub fn is_paused(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    fn set(&self, paused: bool) {
        self.0.store(paused, Ordering::SeqCst);
    }
}

/// Test-only switches, compiled out of release builds.
pub struct Faults {
    enabled: bool,
    pub(crate) turn_panic: AtomicBool,
    runtime_panic: mpsc::UnboundedSender<()>,
}

impl Faults {
    /// `runtime_panic` is the channel the runtime's root future listens on.
    pub fn new(runtime_panic: mpsc::UnboundedSender<()>) -> Self {
        let enabled = cfg!(debug_assertions) && std::env::var("PRYX_FAULT_INJECTION").as_deref() == Ok("1");
        Faults { enabled, turn_panic: AtomicBool::new(false), runtime_panic }
    }
}

/// What one runtime incarnation's agent is made from; see [`Agent::assemble`].
pub struct AgentSetup {
    pub store: Store,
    /// The span history in `telemetry.db`, for `spans.query`.
    pub spans: SpanHistory,
    pub config: Arc<Config>,
    pub data_dir: PathBuf,
    /// How many times the supervisor restarted the runtime before this one.
    pub runtime_restarts: u64,
    pub faults: Faults,
    /// The file the config came from: the API edits it, and MCP follows its edits.
    pub config_path: Option<PathBuf>,
    pub pause: PauseSwitch,
}

/// The agent of one runtime incarnation. Cheap to share (`Arc<Agent>`).
pub struct Agent {
    turns: Arc<TurnEngine>,
    store: Store,
    spans: SpanHistory,
    config: Arc<Config>,
    llm: Arc<ProviderResolver>,
    mcp: Arc<McpManager>,
    workspace: Arc<Workspace>,
    rules: Arc<ToolRules>,
    /// One `provider.set` at a time, so the file and the settings in use agree.
    provider_edit: tokio::sync::Mutex<()>,
    approvals: Arc<Broker>,
    secrets: SecretsHandle,
    sandbox: Arc<Sandbox>,
    data_dir: PathBuf,
    runtime_restarts: u64,
    started_at: i64,
    /// Cancelled to ask the supervisor for a new runtime with the config read again.
    reload: CancellationToken,
    faults: Arc<Faults>,
    /// Logins started from the Control Center, waiting for their users.
    logins: login::Logins,
}

impl Agent {
    /// The composition root: build the workspace, the tools (built-in and MCP), the policy,
    /// the approval broker and the turn engine from the config, and wire them together.
    pub fn assemble(setup: AgentSetup) -> Result<Arc<Agent>, WorkspaceError> {
        let AgentSetup { store, spans, config, data_dir, runtime_restarts, faults, config_path, pause } = setup;
        let root = config.tools.workspace.clone().unwrap_or_else(|| data_dir.join("workspace"));
        let private =
            PrivatePaths::of_pryx(&data_dir, crate::datadir::default_config_dir().as_deref(), config_path.as_deref());
        let mut workspace = Workspace::open(&root, &config.tools.extra_roots)?;
        workspace.keep_out(&private);
        let workspace = Arc::new(workspace);
        let sandbox = Arc::new(Sandbox::new(private));
        let shell = ShellConfig {
            default_timeout: Duration::from_secs(config.tools.shell_timeout_secs),
            max_timeout: Duration::from_secs(config.tools.shell_max_timeout_secs),
            max_output_bytes: config.tools.shell_output_bytes,
            env_allowlist: config.tools.shell_env.clone(),
            network: config.tools.shell_network,
            sandbox: sandbox.clone(),
        };
        let policy = Policy::new(config.policy.clone());
        let secrets = SecretsHandle::new(config.secrets.backend);
        let tools = Arc::new(LiveTools::new(ToolRegistry::with_builtins(workspace.clone(), shell)));
        let mcp = McpManager::start(
            &config.mcp,
            tools.clone(),
            crate::mcp::McpEnvironment {
                secrets: secrets.clone(),
                credentials: crate::mcp::oauth::CredentialsAt::Keychain(secrets.clone()),
                roots: workspace.roots().map(Path::to_path_buf).collect(),
                config_path,
                sandbox: Some(sandbox.clone()),
            },
        );
        let approvals = Arc::new(Broker::new(store.clone(), policy.approval_timeout()));
        let rules = Arc::new(ToolRules::new(policy, tools.clone(), mcp.clone()));
        let llm = Arc::new(ProviderResolver::new(config.llm.clone(), config.cloud.clone(), secrets.clone()));
        let faults = Arc::new(faults);
        let turns = Arc::new(TurnEngine::new(turns::EngineParts {
            store: store.clone(),
            config: config.clone(),
            llm: llm.clone(),
            tools,
            rules: rules.clone(),
            approvals: approvals.clone(),
            faults: faults.clone(),
            pause,
        }));
        Ok(Arc::new(Agent {
            turns,
            store,
            spans,
            config,
            llm,
            mcp,
            workspace,
            rules,
            provider_edit: tokio::sync::Mutex::new(()),
            approvals,
            secrets,
            sandbox,
            data_dir,
            runtime_restarts,
            started_at: now_ms(),
            reload: CancellationToken::new(),
            faults,
            logins: Default::default(),
        }))
    }

    /// The turn engine: send, cancel and follow turns.
    pub fn turns(&self) -> &Arc<TurnEngine> {
        &self.turns
    }

    /// What the policy does with each tool, and changing it.
    pub fn rules(&self) -> &ToolRules {
        &self.rules
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    // ---- sessions ----

    pub async fn create_session(&self, title: Option<String>) -> Result<Session, AgentError> {
        let title = match title {
            Some(t) => validate_title(&t)?,
            None => DEFAULT_TITLE.to_owned(),
        };
        Ok(self.store.create_session(&uuid::Uuid::new_v4().to_string(), &title, Surface::Local).await?)
    }

    pub async fn sessions(&self) -> Result<Vec<Session>, AgentError> {
        Ok(self.store.sessions().await?)
    }

    pub async fn session(&self, id: &str) -> Result<SessionDetail, AgentError> {
        let session = self.store.session(id).await?;
        let messages = self.store.messages(id).await?;
        Ok(SessionDetail { session, messages })
    }

    pub async fn rename_session(&self, id: &str, title: &str) -> Result<Session, AgentError> {
        Ok(self.store.rename_session(id, &validate_title(title)?).await?)
    }

    /// Cancel the session's turns, wait for them to settle, then delete it.
    pub async fn delete_session(&self, id: &str) -> Result<(), AgentError> {
        self.store.session(id).await?;
        self.turns.stop_session(id).await;
        self.store.delete_session(id).await?;
        self.approvals.forget_session(id);
        Ok(())
    }

    pub async fn system_info(&self) -> SystemInfo {
        SystemInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            data_dir: self.data_dir.display().to_string(),
            provider: self.llm.info().await,
            runtime_restarts: self.runtime_restarts,
            started_at: self.started_at,
            sandbox: self.sandbox_info().await,
            secrets: self.secrets.run(|s| Ok(s.describe())).await.unwrap_or_else(|e| e.to_string()),
            spans_dropped: crate::telemetry::hub().dropped(),
            export: crate::telemetry::export::stats().status(),
        }
    }

    /// Spans from the history (see `spans.query`).
    pub async fn spans(
        &self,
        session_id: Option<&str>,
        since_us: i64,
        limit: u32,
        keep: crate::telemetry::history::Keep,
    ) -> Result<Vec<pryx_api::SpanRecord>, AgentError> {
        Ok(self.spans.query(session_id, since_us, limit, keep).await?)
    }

    // ---- secrets ----

    pub async fn set_secret(&self, name: &str, value: String) -> Result<(), AgentError> {
        let name = SecretName::parse(name).map_err(|e| AgentError::InvalidInput(e.to_string()))?;
        if value.is_empty() || value.len() > 64 * 1024 {
            return Err(AgentError::InvalidInput("a secret must be 1 byte to 64 KiB".into()));
        }
        let value = SecretString::new(value);
        self.secrets.run(move |s| s.set(&name, &value)).await.map_err(secret_error)
    }

    pub async fn delete_secret(&self, name: &str) -> Result<(), AgentError> {
        let name = SecretName::parse(name).map_err(|e| AgentError::InvalidInput(e.to_string()))?;
        self.secrets.run(move |s| s.delete(&name)).await.map_err(secret_error)
    }

    /// Log where secrets are kept; a warning when no keychain is available.
    pub async fn announce_secrets_backend(&self) {
        let described = self
            .secrets
            .run(|s| Ok((s.describe(), matches!(s.backend(), crate::secrets::Backend::Injected { .. }))))
            .await;
        match described {
            Ok((text, false)) => tracing::info!("secrets: {text}"),
            Ok((text, true)) => tracing::warn!("secrets: {text}"),
            Err(e) => tracing::warn!("secrets: {e}"),
        }
    }

    pub async fn secret_names(&self) -> Result<Vec<String>, AgentError> {
        let names = self.secrets.run(|s| s.list()).await.map_err(secret_error)?;
        Ok(names.iter().map(|n| n.as_str().to_owned()).collect())
    }

    /// The workspace and how well shell commands are contained here.
    pub async fn sandbox_info(&self) -> SandboxInfo {
        // The first call probes the kernel (starts one process): not on a runtime thread.
        let (sandbox, shell_network) = (self.sandbox.clone(), self.config.tools.shell_network);
        let protection = tokio::task::spawn_blocking(move || sandbox.protection(shell_network)).await;
        let protection = protection.unwrap_or_else(|_| self.sandbox.protection(shell_network));
        SandboxInfo {
            workspace: self.workspace.root().display().to_string(),
            summary: protection.describe(),
            landlock: protection.landlock,
            pid_namespace: protection.pid_namespace,
            hiding: protection.hiding,
            network: protection.network,
        }
    }

    // ---- approvals ----

    /// One approval by id.
    pub async fn approval(&self, id: &str) -> Result<Approval, AgentError> {
        Ok(self.approvals.get(id).await?)
    }

    pub async fn approvals(&self, include_settled: bool) -> Result<Vec<Approval>, AgentError> {
        Ok(self.approvals.list(include_settled).await?)
    }

    pub async fn answer_approval(
        &self,
        id: &str,
        decision: ApprovalDecision,
        note: Option<String>,
        answered_by: Option<String>,
    ) -> Result<Approval, AgentError> {
        use crate::approvals::AnswerError;
        let by = answered_by.unwrap_or_else(|| "api".into());
        if by.is_empty() || by.len() > 40 || !by.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
            return Err(AgentError::InvalidInput("answered_by must be 1 to 40 letters, digits or -_.:".into()));
        }
        let answered = self.approvals.answer(id, decision, note, &by).await.map_err(|e| match e {
            AnswerError::NotFound(id) => AgentError::NotFound(format!("approval {id}")),
            AnswerError::AlreadySettled { .. } => AgentError::Conflict(e.to_string()),
            AnswerError::Invalid(message) => AgentError::InvalidInput(message),
            AnswerError::Store(store) => AgentError::Store(store),
        });
        self.turns.refresh_activity();
        answered
    }

    /// What the agent is doing now; the receiver sees every change.
    pub fn activity(&self) -> watch::Receiver<Activity> {
        self.turns.activity()
    }

    /// Pause or resume: while paused no new turn starts.
    pub fn set_paused(&self, paused: bool) -> Activity {
        self.turns.set_paused(paused)
    }

    pub fn subscribe_approvals(&self) -> broadcast::Receiver<Approval> {
        self.approvals.subscribe()
    }

    /// Arm a test fault. See [`Faults`].
    pub fn inject_fault(&self, kind: &str) -> Result<(), AgentError> {
        if !self.faults.enabled {
            return Err(AgentError::FaultsDisabled);
        }
        match kind {
            // The next turn started (not one already running) panics at its first delta.
            "turn_panic" => self.faults.turn_panic.store(true, Ordering::SeqCst),
            "runtime_panic" => {
                let _ = self.faults.runtime_panic.send(());
            }
            other => return Err(AgentError::InvalidInput(format!("unknown fault `{other}`"))),
        }
        Ok(())
    }

    /// Stop every turn (they are stored as interrupted) and wait for them, up to `grace`;
    /// then stop the MCP servers.
    pub async fn shutdown(&self, grace: Duration) {
        self.turns.shutdown(grace).await;
        self.mcp.shutdown().await;
    }

    /// The config file the API edits.
    pub fn config_file(&self) -> Result<&Path, EditError> {
        self.mcp
            .config_path()
            .ok_or_else(|| EditError::File { path: "(none)".into(), message: "Pryx runs without a config file".into() })
    }

    /// Resolves when a change asked for a runtime with the config file read again.
    pub async fn reload_requested(&self) {
        self.reload.cancelled().await
    }

    /// The keychain (or what stands in for it).
    pub fn secrets(&self) -> &SecretsHandle {
        &self.secrets
    }

    /// The MCP servers of this runtime.
    pub fn mcp(&self) -> &Arc<McpManager> {
        &self.mcp
    }
}

fn secret_error(e: SecretError) -> AgentError {
    match e {
        SecretError::Missing(name) => AgentError::NotFound(format!("secret {name}")),
        SecretError::BadName(_) => AgentError::InvalidInput(e.to_string()),
        other => AgentError::Conflict(other.to_string()),
    }
}
