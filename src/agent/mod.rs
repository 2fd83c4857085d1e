//! The agent: sessions, turns and the tool-calling LLM loop.
//!
//! A turn answers one user message. It runs as its own task; turns of one session run one
//! after another in the order their messages arrived (each waits for the previous one),
//! turns of different sessions run concurrently. Every event a turn produces is kept in the
//! turn's in-memory log (so a late subscriber gets a full replay), fanned out to live
//! subscribers, and written to the store as it happens: the user message before the turn
//! starts, the assistant text coalesced every [`FLUSH_EVERY`], its final state at the end.
//!
//! A panic inside a turn is caught here: it fails that turn only, is recorded as a crash,
//! and the client gets an `error` event. This module never touches HTTP.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use pryx_api::{
    from_wire_name, wire_name, Activity, AgentSettings, Approval, ApprovalDecision, ApprovalStatus, ErrorKind, Message,
    MessageStatus, ProviderInfo, ProviderSettings, ProviderTest, Role, SandboxInfo, Session, SessionDetail, SystemInfo,
    ToolCall, ToolPolicy, TurnEvent, TurnEventEnvelope, TurnStarted, TurnStatus, MAX_MESSAGE_CHARS, MAX_TITLE_CHARS,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::approvals::{Broker, NewApproval, Policy, Rule};
use crate::config::edit::EditError;
use crate::config::Config;
use crate::llm::{ChatRequest, Completion, LlmError, Provider, ProviderResolver, WireMessage};
use crate::mcp::McpManager;
use crate::runtime::panics;
use crate::sandbox::workspace::{Workspace, WorkspaceError};
use crate::sandbox::{self, Protection};
use crate::secrets::{self, SecretError, SecretName, SecretString, SecretsHandle};
use crate::store::{now_ms, Store, StoreError};
use crate::telemetry::SPAN_TARGET;
use crate::tools::shell::ShellConfig;
use crate::tools::{parse_arguments, LiveTools, ToolContext, ToolRegistry};
use tracing::Instrument;

/// How often a growing answer is written to disk while it streams.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// How long finished spans gather before they are written in one transaction.
const SPAN_BATCH_DELAY: Duration = Duration::from_millis(250);
/// How long a finished turn's event log stays in memory for late subscribers.
const KEEP_FINISHED_TURN: Duration = Duration::from_secs(120);
/// Tokens kept free for the answer when the configured output limit is unknown.
const DEFAULT_ANSWER_RESERVE: usize = 2048;
const DEFAULT_TITLE: &str = "New chat";

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
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AgentError::NotFound(what),
            other => AgentError::Store(other),
        }
    }
}

/// The OTLP export header the Settings screen sets (its value goes to the keychain).
const EXPORT_AUTHORIZATION_HEADER: &str = "authorization";

/// An OpenAI-compatible base URL: http(s), no query; without the trailing slash.
/// The same rule as `llm.base_url` in the file, said for someone typing it into a form.
fn check_base_url(text: &str) -> Result<String, AgentError> {
    let text = text.trim().trim_end_matches('/');
    let usable = crate::config::check_url(text).is_ok() && !text.contains('?');
    if !usable {
        return Err(AgentError::InvalidInput(format!(
            "`{text}` is not an http(s) base URL like https://api.openai.com/v1"
        )));
    }
    Ok(text.to_owned())
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
    turn_panic: AtomicBool,
    runtime_panic: mpsc::UnboundedSender<()>,
}

impl Faults {
    /// `runtime_panic` is the channel the runtime's root future listens on.
    pub fn new(runtime_panic: mpsc::UnboundedSender<()>) -> Self {
        let enabled = cfg!(debug_assertions) && std::env::var("PRYX_FAULT_INJECTION").as_deref() == Ok("1");
        Faults { enabled, turn_panic: AtomicBool::new(false), runtime_panic }
    }
}

/// Everything a turn needs to know about itself, shared with subscribers.
struct TurnHandle {
    id: String,
    session_id: String,
    cancel: CancellationToken,
    log: Mutex<Vec<TurnEventEnvelope>>,
    progress: watch::Sender<usize>,
    finished: watch::Sender<bool>,
    /// Test fault: panic at this turn's first delta (armed by `debug.fault turn_panic`).
    panic_at_first_delta: AtomicBool,
}

impl TurnHandle {
    fn events_from(&self, next: usize) -> Vec<TurnEventEnvelope> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.get(next..).map(<[_]>::to_vec).unwrap_or_default()
    }

    fn is_finished(&self) -> bool {
        *self.finished.borrow()
    }

    async fn wait_finished(&self) {
        let mut rx = self.finished.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}

/// How a turn ended.
enum TurnEnd {
    Completed { message_id: i64 },
    Stopped { status: TurnStatus, message_id: Option<i64> },
    Failed(LlmError),
}

/// How one model request ended.
enum StepEnd {
    Answered { message_id: i64, completion: Completion },
    Ended(TurnEnd),
}

#[derive(Default)]
struct Turns {
    by_id: HashMap<String, Arc<TurnHandle>>,
    /// The newest turn of each session; the next turn waits for it.
    tail: HashMap<String, Arc<TurnHandle>>,
}

/// The agent of one runtime incarnation. Cheap to share (`Arc<Agent>`).
pub struct Agent {
    store: Store,
    config: Arc<Config>,
    llm: ProviderResolver,
    /// Built-ins plus the tools of ready MCP servers.
    tools: Arc<LiveTools>,
    mcp: Arc<McpManager>,
    workspace: Arc<Workspace>,
    /// Swapped whole when the user changes a rule (`tools.set_rule`).
    policy: std::sync::RwLock<Policy>,
    /// One `provider.set` at a time, so the file and the settings in use agree.
    provider_edit: tokio::sync::Mutex<()>,
    approvals: Broker,
    secrets: SecretsHandle,
    /// Probed on first use: starting a helper process is not free.
    protection: tokio::sync::OnceCell<Protection>,
    data_dir: PathBuf,
    runtime_restarts: u64,
    started_at: i64,
    turns: Arc<Mutex<Turns>>,
    events: broadcast::Sender<TurnEventEnvelope>,
    shutdown: CancellationToken,
    /// Cancelled to ask the supervisor for a new runtime with the config read again.
    reload: CancellationToken,
    tasks: TaskTracker,
    faults: Faults,
    pause: PauseSwitch,
    /// Why the last turn failed; cleared when the next one starts.
    last_error: Mutex<Option<String>>,
    activity: watch::Sender<Activity>,
}

impl Agent {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        data_dir: PathBuf,
        runtime_restarts: u64,
        faults: Faults,
        config_path: Option<PathBuf>,
        pause: PauseSwitch,
    ) -> Result<Arc<Agent>, WorkspaceError> {
        let (events, _) = broadcast::channel(4096);
        let root = config.tools.workspace.clone().unwrap_or_else(|| data_dir.join("workspace"));
        let workspace = Arc::new(Workspace::open(&root, &config.tools.extra_roots)?);
        let shell = ShellConfig {
            default_timeout: Duration::from_secs(config.tools.shell_timeout_secs),
            max_timeout: Duration::from_secs(config.tools.shell_max_timeout_secs),
            max_output_bytes: config.tools.shell_output_bytes,
            env_allowlist: config.tools.shell_env.clone(),
            helper: None,
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
                helper: std::env::current_exe().ok(),
            },
        );
        Ok(Arc::new(Agent {
            approvals: Broker::new(store.clone(), policy.approval_timeout()),
            store,
            llm: ProviderResolver::new(config.llm.clone(), secrets.clone()),
            secrets,
            tools,
            mcp,
            workspace,
            policy: std::sync::RwLock::new(policy),
            provider_edit: tokio::sync::Mutex::new(()),
            protection: tokio::sync::OnceCell::new(),
            config,
            data_dir,
            runtime_restarts,
            started_at: now_ms(),
            turns: Arc::new(Mutex::new(Turns::default())),
            events,
            shutdown: CancellationToken::new(),
            reload: CancellationToken::new(),
            tasks: TaskTracker::new(),
            faults,
            activity: watch::channel(Activity::new(0, 0, pause.is_paused(), None)).0,
            pause,
            last_error: Mutex::new(None),
        }))
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
        Ok(self.store.create_session(&uuid::Uuid::new_v4().to_string(), &title, "local").await?)
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
        let running: Vec<_> = self.lock_turns().by_id.values().filter(|t| t.session_id == id).cloned().collect();
        for turn in &running {
            turn.cancel.cancel();
        }
        for turn in running {
            let _ = tokio::time::timeout(Duration::from_secs(5), turn.wait_finished()).await;
        }
        Ok(self.store.delete_session(id).await?)
    }

    // ---- turns ----

    /// Commit the user's message, then start (or queue) the turn that answers it.
    pub async fn send(self: &Arc<Self>, session_id: &str, text: String) -> Result<TurnStarted, AgentError> {
        if self.shutdown.is_cancelled() {
            return Err(AgentError::ShuttingDown);
        }
        if self.pause.is_paused() {
            return Err(AgentError::Paused);
        }
        if text.trim().is_empty() {
            return Err(AgentError::InvalidInput("the message is empty".into()));
        }
        if text.chars().count() > MAX_MESSAGE_CHARS {
            return Err(AgentError::InvalidInput(format!("the message is longer than {MAX_MESSAGE_CHARS} characters")));
        }
        let session = self.store.session(session_id).await?;
        let turn_id = uuid::Uuid::new_v4().to_string();
        let user = self.store.start_turn(session_id, &turn_id, &text).await?;
        if session.title == DEFAULT_TITLE && session.message_count == 0 {
            let _ = self.store.rename_session(session_id, &title_from(&text)).await;
        }

        let (progress, _) = watch::channel(0);
        let (finished, _) = watch::channel(false);
        let turn = Arc::new(TurnHandle {
            id: turn_id.clone(),
            session_id: session_id.to_owned(),
            cancel: self.shutdown.child_token(),
            log: Mutex::new(Vec::new()),
            progress,
            finished,
            panic_at_first_delta: AtomicBool::new(self.faults.turn_panic.swap(false, Ordering::SeqCst)),
        });
        let previous = {
            let mut turns = self.lock_turns();
            turns.by_id.insert(turn_id.clone(), turn.clone());
            turns.tail.insert(session_id.to_owned(), turn.clone())
        };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.refresh_activity();
        let agent = self.clone();
        self.tasks.spawn(async move { agent.run_turn(turn, previous).await });
        Ok(TurnStarted { turn_id, session_id: session_id.to_owned(), user_message_id: user.id })
    }

    /// Cancel a turn. `false` when it had already ended.
    pub async fn cancel(&self, turn_id: &str) -> Result<bool, AgentError> {
        let turn = self.lock_turns().by_id.get(turn_id).cloned();
        match turn {
            Some(turn) if !turn.is_finished() => {
                turn.cancel.cancel();
                turn.wait_finished().await;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => {
                self.store.turn(turn_id).await?;
                Ok(false)
            }
        }
    }

    /// `Ok` when the turn exists (running, or stored).
    pub async fn check_turn(&self, turn_id: &str) -> Result<(), AgentError> {
        if self.lock_turns().by_id.contains_key(turn_id) {
            return Ok(());
        }
        self.store.turn(turn_id).await?;
        Ok(())
    }

    /// Send a turn's events from the first one to `out`, ending after the terminal event.
    /// Returns early (Ok) when `out` is closed by the subscriber.
    pub async fn follow_turn(&self, turn_id: &str, out: mpsc::Sender<TurnEventEnvelope>) -> Result<(), AgentError> {
        let turn = self.lock_turns().by_id.get(turn_id).cloned();
        let Some(turn) = turn else {
            // Long finished: answer with its stored outcome.
            let record = self.store.turn(turn_id).await?;
            let event = match (record.status, record.error_kind) {
                (TurnStatus::Failed, kind) => TurnEvent::Error {
                    kind: kind.and_then(|k| from_wire_name(&k)).unwrap_or(ErrorKind::Internal),
                    message: record.error.unwrap_or_default(),
                },
                (status, _) => {
                    let message_id = self.final_assistant_message(&record.session_id, turn_id).await;
                    TurnEvent::Done { status, message_id }
                }
            };
            let _ =
                out.send(TurnEventEnvelope { turn_id: record.id, session_id: record.session_id, seq: 0, event }).await;
            return Ok(());
        };
        let mut progress = turn.progress.subscribe();
        let mut next = 0;
        loop {
            for envelope in turn.events_from(next) {
                next += 1;
                let terminal = envelope.event.is_terminal();
                if out.send(envelope).await.is_err() || terminal {
                    return Ok(());
                }
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { return Ok(()) },
                _ = out.closed() => return Ok(()),
            }
        }
    }

    /// Live events of all turns (optionally of one session).
    pub fn subscribe_events(&self) -> broadcast::Receiver<TurnEventEnvelope> {
        self.events.subscribe()
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

    // ---- telemetry ----

    pub async fn spans(
        &self,
        session_id: Option<&str>,
        since_us: i64,
        limit: u32,
        keep: crate::telemetry::history::Keep,
    ) -> Result<Vec<pryx_api::SpanRecord>, AgentError> {
        Ok(self.store.span_history().query(session_id, since_us, limit, keep).await.map_err(StoreError::from)?)
    }

    /// Move finished spans from the recorder into the store until `stop`; a last drain
    /// happens on the way out so a clean shutdown keeps everything.
    pub async fn store_spans(&self, stop: CancellationToken) {
        let hub = crate::telemetry::hub();
        let retention = crate::telemetry::history::Retention {
            days: self.config.telemetry.retention_days,
            max_spans: self.config.telemetry.max_spans,
        };
        loop {
            // Wake on the first new span, then let more gather: one transaction per batch,
            // not one fsync per span.
            let stopping = tokio::select! {
                _ = hub.wait_for_pending() => tokio::select! {
                    _ = tokio::time::sleep(SPAN_BATCH_DELAY) => false,
                    _ = stop.cancelled() => true,
                },
                _ = stop.cancelled() => true,
            };
            let batch = hub.take_pending();
            if !batch.is_empty() {
                if let Err(e) = self.store.span_history().add(&batch, retention).await {
                    tracing::warn!("cannot store {} spans: {e}", batch.len());
                }
            }
            if stopping {
                return;
            }
        }
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

    // ---- the LLM provider ----

    /// The provider settings as configured.
    pub fn provider_settings(&self) -> ProviderSettings {
        let config = self.llm.config();
        let overridden_by_env = ["PRYX_LLM_BASE_URL", "PRYX_LLM_MODEL", "PRYX_LLM_API_KEY", "OPENAI_API_KEY"]
            .into_iter()
            .filter(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
            .map(str::to_owned)
            .collect();
        ProviderSettings {
            base_url: config.base_url,
            model: config.model,
            has_api_key: config.api_key.is_some(),
            overridden_by_env,
        }
    }

    /// The current settings with the user's changes applied; the key as given (plain).
    fn provider_config(
        &self,
        base_url: Option<String>,
        model: Option<String>,
        api_key: Option<String>,
    ) -> Result<crate::config::LlmConfig, AgentError> {
        let mut config = self.llm.config();
        if let Some(base_url) = base_url {
            config.base_url = Some(check_base_url(&base_url)?);
        }
        if let Some(model) = model {
            let model = model.trim();
            if model.chars().count() > 200 {
                return Err(AgentError::InvalidInput("the model name is longer than 200 characters".into()));
            }
            config.model = (!model.is_empty()).then(|| model.to_owned());
        }
        match api_key.as_deref().map(str::trim) {
            None => {}
            Some("") => config.api_key = None,
            Some(key) if key.len() > 16 * 1024 => {
                return Err(AgentError::InvalidInput("the API key is longer than 16 KiB".into()))
            }
            Some(key) => config.api_key = Some(key.to_owned()),
        }
        Ok(config)
    }

    /// Save and use new provider settings (see `provider.set`).
    pub async fn set_provider(
        &self,
        base_url: Option<String>,
        model: Option<String>,
        api_key: Option<String>,
    ) -> Result<ProviderInfo, AgentError> {
        let _one_at_a_time = self.provider_edit.lock().await;
        let new_key = api_key.as_deref().map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned);
        let mut config = self.provider_config(base_url, model, api_key)?;
        let path = self.config_file()?;
        // The key goes to the keychain; the file only names it.
        if let Some(key) = new_key {
            self.set_secret(secrets::LLM_API_KEY, key).await?;
            config.api_key = Some(secrets::reference_to(secrets::LLM_API_KEY));
        }
        crate::config::edit::set_values(
            path,
            "llm",
            &[
                ("base_url", config.base_url.as_deref()),
                ("model", config.model.as_deref()),
                ("api_key", config.api_key.as_deref()),
            ],
        )?;
        self.llm.reconfigure(config).await;
        Ok(self.llm.info().await)
    }

    /// Try settings without saving them (see `provider.test`).
    pub async fn test_provider(
        &self,
        base_url: Option<String>,
        model: Option<String>,
        api_key: Option<String>,
    ) -> Result<ProviderTest, AgentError> {
        let config = self.provider_config(base_url, model, api_key)?;
        Ok(match ProviderResolver::test(config, self.secrets.clone()).await {
            Ok((info, took)) => ProviderTest {
                ok: true,
                message: format!("{} answered", info.model.as_deref().unwrap_or("the model")),
                model: info.model,
                latency_ms: took.as_millis() as u64,
            },
            Err(e) => ProviderTest { ok: false, message: e.message, model: None, latency_ms: 0 },
        })
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
        let roots: Vec<PathBuf> = self.workspace.roots().map(PathBuf::from).collect();
        let protection = self
            .protection
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || sandbox::probe(&roots))
                    .await
                    .unwrap_or(Protection { landlock: "none".into(), pid_namespace: false })
            })
            .await;
        SandboxInfo {
            workspace: self.workspace.root().display().to_string(),
            landlock: protection.landlock.clone(),
            pid_namespace: protection.pid_namespace,
            summary: protection.describe(),
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
        self.refresh_activity();
        answered
    }

    // ---- activity ----

    /// What the agent is doing now; the receiver sees every change.
    pub fn activity(&self) -> watch::Receiver<Activity> {
        self.activity.subscribe()
    }

    /// Pause or resume: while paused no new turn starts.
    pub fn set_paused(&self, paused: bool) -> Activity {
        self.pause.set(paused);
        tracing::info!(paused, "the owner {} the agent", if paused { "paused" } else { "resumed" });
        self.refresh_activity();
        self.activity.borrow().clone()
    }

    /// Recount running turns and waiting approvals; subscribers hear of a change.
    fn refresh_activity(&self) {
        let running = self.lock_turns().by_id.values().filter(|t| !t.is_finished()).count() as u32;
        let last_error = self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let now = Activity::new(running, self.approvals.pending_count() as u32, self.pause.is_paused(), last_error);
        self.activity.send_if_modified(|current| {
            let changed = *current != now;
            *current = now;
            changed
        });
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

    /// Stop every turn (they are stored as interrupted) and wait for them, up to `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!("some turns did not stop within {grace:?}");
        }
        self.mcp.shutdown().await;
    }

    /// The config file the API edits.
    pub fn config_file(&self) -> Result<&Path, EditError> {
        self.mcp
            .config_path()
            .ok_or_else(|| EditError::File { path: "(none)".into(), message: "Pryx runs without a config file".into() })
    }

    // ---- settings applied by a restart of the runtime ----

    /// The workspace and telemetry settings (see `settings.get`).
    pub fn settings(&self) -> AgentSettings {
        let telemetry = &self.config.telemetry;
        AgentSettings {
            workspace: self.config.tools.workspace.as_ref().map(|p| p.display().to_string()),
            workspace_in_use: self.workspace.root().display().to_string(),
            capture_content: telemetry.capture_content,
            export_endpoint: telemetry.otlp.endpoint.clone(),
            export_authorization: telemetry.otlp.headers.contains_key(EXPORT_AUTHORIZATION_HEADER),
        }
    }

    /// Write new settings, then ask the supervisor for a runtime with them (see
    /// `settings.set`). Answers the settings as they will be after the restart.
    pub async fn set_settings(
        &self,
        workspace: Option<String>,
        capture_content: Option<bool>,
        export_endpoint: Option<String>,
        export_authorization: Option<String>,
    ) -> Result<AgentSettings, AgentError> {
        if self.activity.borrow().running_turns > 0 {
            return Err(AgentError::Conflict(
                "a turn is running; change the settings when it has finished (or stop it)".into(),
            ));
        }
        let path = self.config_file()?;
        let mut after = self.settings();
        let mut tools: Vec<(&str, Option<toml_edit::Value>)> = Vec::new();
        if let Some(workspace) = workspace.as_deref().map(str::trim) {
            after.workspace = match workspace {
                "" => None,
                dir => Some(check_workspace(dir)?),
            };
            tools.push(("workspace", after.workspace.clone().map(Into::into)));
        }
        let mut telemetry: Vec<(&str, Option<toml_edit::Value>)> = Vec::new();
        if let Some(capture) = capture_content {
            after.capture_content = capture;
            telemetry.push(("capture_content", Some(capture.into())));
        }
        let mut otlp: Vec<(&str, Option<toml_edit::Value>)> = Vec::new();
        if let Some(endpoint) = export_endpoint.as_deref().map(str::trim) {
            after.export_endpoint = match endpoint.trim_end_matches('/') {
                "" => None,
                url => Some(check_export_endpoint(url)?),
            };
            otlp.push(("endpoint", after.export_endpoint.clone().map(Into::into)));
        }
        let mut headers: Vec<(&str, Option<toml_edit::Value>)> = Vec::new();
        match export_authorization.as_deref().map(str::trim) {
            None => {}
            Some("") => {
                after.export_authorization = false;
                headers.push((EXPORT_AUTHORIZATION_HEADER, None));
            }
            Some(value) => {
                if value.len() > 8 * 1024 || value.contains(['\r', '\n']) {
                    return Err(AgentError::InvalidInput("the authorization header must be one line".into()));
                }
                let name = secrets::otlp_header_secret(EXPORT_AUTHORIZATION_HEADER);
                self.set_secret(&name, value.to_owned()).await?;
                after.export_authorization = true;
                headers.push((EXPORT_AUTHORIZATION_HEADER, Some(secrets::reference_to(&name).into())));
            }
        }
        let changes: Vec<(&str, crate::config::edit::Changes<'_>)> = [
            ("tools", &tools),
            ("telemetry", &telemetry),
            ("telemetry.otlp", &otlp),
            ("telemetry.otlp.headers", &headers),
        ]
        .into_iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(table, values)| (table, values.as_slice()))
        .collect();
        // All or nothing: one edit of the file.
        crate::config::edit::set_tables(path, &changes)?;
        if export_authorization.as_deref().map(str::trim) == Some("") {
            if let Err(e) = self.delete_secret(&secrets::otlp_header_secret(EXPORT_AUTHORIZATION_HEADER)).await {
                tracing::debug!("no export authorization to forget: {e}");
            }
        }
        tracing::info!("settings changed; restarting the agent runtime to apply them");
        self.reload.cancel();
        Ok(after)
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

    /// What the policy does with a call of `tool` in a session nobody loosened (for showing
    /// rules in lists; a real call is decided with its arguments).
    pub fn rule_for(&self, tool: &str) -> Option<Rule> {
        let tool = self.tools.current().get(tool).cloned()?;
        Some(self.default_rule(tool.as_ref()))
    }

    fn default_rule(&self, tool: &dyn crate::tools::Tool) -> Rule {
        let arguments = serde_json::json!({});
        self.policy().decide(tool.name(), tool.risk(), tool.trusted_by_user(), &arguments, &Default::default())
    }

    fn policy(&self) -> std::sync::RwLockReadGuard<'_, Policy> {
        self.policy.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every tool offered now with what the policy does with it.
    pub fn tool_policies(&self) -> Vec<ToolPolicy> {
        let registry = self.tools.current();
        registry.all().map(|tool| self.tool_policy(tool.as_ref())).collect()
    }

    fn tool_policy(&self, tool: &dyn crate::tools::Tool) -> ToolPolicy {
        // MCP tool names are made unique (`SERVER__TOOL`, de-duplicated): ask the manager
        // which server a name belongs to rather than taking it apart.
        let source = if self.tools.is_builtin(tool.name()) {
            "builtin".to_owned()
        } else {
            self.mcp.server_of(tool.name()).unwrap_or_default()
        };
        ToolPolicy {
            name: tool.name().to_owned(),
            description: tool.description().to_owned(),
            risk: pryx_api::wire_name(&tool.risk()),
            source,
            rule: pryx_api::wire_name(&self.default_rule(tool)),
            configured: self.policy().config().tools.get(tool.name()).map(pryx_api::wire_name),
        }
    }

    /// Set (or, with `None`, clear) a tool's rule: written to the config file, then in force.
    pub fn set_tool_rule(&self, name: &str, rule: Option<Rule>) -> Result<ToolPolicy, AgentError> {
        let registry = self.tools.current();
        let tool = registry.get(name).ok_or_else(|| AgentError::NotFound(format!("tool `{name}`")))?;
        let path = self.config_file()?;
        {
            // Held across the file and the swap, so two changes at once land in both alike.
            let mut policy = self.policy.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            crate::config::edit::set_tool_rule(path, name, rule)?;
            let mut config = policy.config().clone();
            match rule {
                Some(rule) => config.tools.insert(name.to_owned(), rule),
                None => config.tools.remove(name),
            };
            *policy = Policy::new(config);
        }
        Ok(self.tool_policy(tool.as_ref()))
    }

    // ---- the turn itself ----

    async fn run_turn(self: Arc<Self>, turn: Arc<TurnHandle>, previous: Option<Arc<TurnHandle>>) {
        if let Some(previous) = previous {
            tokio::select! {
                _ = previous.wait_finished() => {}
                _ = turn.cancel.cancelled() => {}
            }
        }
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "turn",
            gen_ai.operation.name = "invoke_agent",
            gen_ai.agent.name = "pryx",
            gen_ai.conversation.id = %turn.session_id,
            pryx.session.id = %turn.session_id,
            pryx.turn.id = %turn.id,
            pryx.turn.status = tracing::field::Empty,
            pryx.user_message = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        if self.config.telemetry.capture_content {
            if let Some(text) = self.user_message_of(&turn).await {
                span.record("pryx.user_message", text.as_str());
            }
        }
        let run = async {
            let end = if turn.cancel.is_cancelled() {
                TurnEnd::Stopped { status: self.stop_status(), message_id: None }
            } else {
                match AssertUnwindSafe(self.drive_turn(&turn)).catch_unwind().await {
                    Ok(end) => end,
                    Err(payload) => self.recover_turn_panic(&turn, payload).await,
                }
            };
            let (status, error) = match &end {
                TurnEnd::Completed { .. } => ("completed", None),
                TurnEnd::Stopped { status: TurnStatus::Cancelled, .. } => ("cancelled", None),
                TurnEnd::Stopped { .. } => ("interrupted", None),
                TurnEnd::Failed(e) => ("failed", Some(wire_name(&e.kind))),
            };
            tracing::Span::current().record("pryx.turn.status", status);
            if let Some(kind) = error {
                tracing::Span::current().record("error.type", kind.as_str());
            }
            self.finish_turn(&turn, end).await;
        };
        run.instrument(span).await;
    }

    async fn user_message_of(&self, turn: &TurnHandle) -> Option<String> {
        let messages = self.store.messages(&turn.session_id).await.ok()?;
        messages
            .into_iter()
            .find(|m| m.turn_id.as_deref() == Some(turn.id.as_str()) && m.role == Role::User)
            .map(|m| m.content)
    }

    async fn drive_turn(&self, turn: &TurnHandle) -> TurnEnd {
        let provider = match self.llm.provider().await {
            Ok(p) => p,
            Err(e) => {
                // No model to ask: the answer is a failed message saying why, so the history
                // shows it (and the UI offers Retry) like any failure during an answer.
                let stored = match self.store.begin_assistant(&turn.session_id, &turn.id).await {
                    Ok(id) => {
                        self.store.finish_assistant(id, "", &[], MessageStatus::Failed, Some(&e.message), None).await
                    }
                    Err(error) => Err(error),
                };
                if let Err(error) = stored {
                    tracing::error!(turn = %turn.id, "cannot store the failed answer: {error}");
                }
                return TurnEnd::Failed(e);
            }
        };
        for _step in 0..self.config.agent.max_steps {
            let request = match self.build_request(turn).await {
                Ok(r) => r,
                Err(e) => return TurnEnd::Failed(internal(format!("cannot read the history: {e}"))),
            };
            let (message_id, completion) = match self.stream_step(turn, &provider, &request).await {
                StepEnd::Answered { message_id, completion } => (message_id, completion),
                StepEnd::Ended(end) => return end,
            };
            if let Some(usage) = completion.usage {
                self.emit(turn, TurnEvent::Usage { usage });
            }
            if completion.tool_calls.is_empty() {
                return TurnEnd::Completed { message_id };
            }
            if let Some(end) = self.run_tools(turn, &completion.tool_calls).await {
                return end;
            }
        }
        TurnEnd::Failed(LlmError {
            kind: ErrorKind::StepLimit,
            message: format!("the model was still calling tools after {} steps; stopped", self.config.agent.max_steps),
        })
    }

    /// One model request, streamed to subscribers and to disk. The assistant message row is
    /// created first; text is saved by a [`Draft`] writer off the streaming path, so a slow
    /// disk never delays a delta. Retries once when the stream breaks before any text.
    async fn stream_step(&self, turn: &TurnHandle, provider: &Provider, request: &ChatRequest) -> StepEnd {
        let message_id = match self.store.begin_assistant(&turn.session_id, &turn.id).await {
            Ok(id) => id,
            Err(e) => return StepEnd::Ended(TurnEnd::Failed(internal(format!("cannot store the answer: {e}")))),
        };
        let mut retried = false;
        loop {
            let draft = Draft::start(self.store.clone(), message_id);
            let (delta_tx, mut delta_rx) = mpsc::unbounded_channel::<String>();
            let llm_span = tracing::info_span!(
                target: SPAN_TARGET,
                "chat",
                gen_ai.operation.name = "chat",
                gen_ai.provider.name = %provider.info.source,
                gen_ai.request.model = provider.info.model.as_deref().unwrap_or(""),
                server.address = provider.info.base_url.as_deref().unwrap_or(""),
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                gen_ai.response.finish_reasons = tracing::field::Empty,
                pryx.time_to_first_token_ms = tracing::field::Empty,
                error.type = tracing::field::Empty,
            );
            let asked_at = std::time::Instant::now();
            let first_token = llm_span.clone();
            let mut seen_token = false;
            let call = provider
                .stream_chat(request, move |t| {
                    if !seen_token {
                        seen_token = true;
                        first_token.record("pryx.time_to_first_token_ms", asked_at.elapsed().as_millis() as u64);
                    }
                    let _ = delta_tx.send(t.to_owned());
                })
                .instrument(llm_span.clone());
            tokio::pin!(call);
            let result = loop {
                tokio::select! {
                    biased;
                    _ = turn.cancel.cancelled() => break None,
                    Some(delta) = delta_rx.recv() => self.append_delta(turn, &draft, delta),
                    result = &mut call => break Some(result),
                }
            };
            if matches!(result, Some(Ok(_))) {
                while let Ok(delta) = delta_rx.try_recv() {
                    self.append_delta(turn, &draft, delta);
                }
            }
            let text = draft.finish();
            match &result {
                Some(Ok(c)) => {
                    llm_span.record("gen_ai.response.finish_reasons", c.finish_reason.as_str());
                    if let Some(usage) = c.usage {
                        llm_span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
                        llm_span.record("gen_ai.usage.output_tokens", usage.completion_tokens);
                    }
                }
                Some(Err(e)) => {
                    llm_span.record("error.type", wire_name(&e.kind).as_str());
                }
                None => {
                    llm_span.record("error.type", "cancelled");
                }
            }
            drop(llm_span);
            match result {
                None => {
                    let status = self.stop_status();
                    let stored = if status == TurnStatus::Cancelled {
                        MessageStatus::Cancelled
                    } else {
                        MessageStatus::Interrupted
                    };
                    self.save_final(message_id, &text, &[], stored, None, None).await;
                    return StepEnd::Ended(TurnEnd::Stopped { status, message_id: Some(message_id) });
                }
                Some(Err(e)) if e.kind == ErrorKind::StreamBroken && text.is_empty() && !retried => {
                    tracing::warn!("stream broke before any output; retrying once: {e}");
                    retried = true;
                }
                Some(Err(e)) => {
                    self.save_final(message_id, &text, &[], MessageStatus::Failed, Some(&e.message), None).await;
                    return StepEnd::Ended(TurnEnd::Failed(e));
                }
                Some(Ok(completion)) => {
                    let (text, calls) = (&completion.text, &completion.tool_calls);
                    self.save_final(message_id, text, calls, MessageStatus::Complete, None, completion.usage).await;
                    return StepEnd::Answered { message_id, completion };
                }
            }
        }
    }

    fn append_delta(&self, turn: &TurnHandle, draft: &Draft, delta: String) {
        draft.push(&delta);
        self.emit(turn, TurnEvent::Delta { text: delta });
        if turn.panic_at_first_delta.swap(false, Ordering::SeqCst) {
            panic!("injected turn panic (debug.fault)");
        }
    }

    /// Run the model's tool calls concurrently, each through the approval policy, and store
    /// their results. `Some` when the turn was stopped meanwhile.
    async fn run_tools(&self, turn: &TurnHandle, calls: &[ToolCall]) -> Option<TurnEnd> {
        for call in calls {
            self.emit(turn, TurnEvent::ToolCall { call: call.clone() });
        }
        let channel = self.store.session(&turn.session_id).await.map(|s| s.channel).unwrap_or_else(|_| "local".into());
        let results = futures::future::join_all(calls.iter().map(|call| self.run_one(turn, call, &channel))).await;
        // Results are stored even when the turn was stopped, so every call in the history
        // has its answer.
        for (call, (output, is_error)) in calls.iter().zip(results) {
            if let Err(e) = self.store.add_tool_result(&turn.session_id, &turn.id, &call.id, &output).await {
                return Some(TurnEnd::Failed(internal(format!("cannot store a tool result: {e}"))));
            }
            self.emit(
                turn,
                TurnEvent::ToolResult { call_id: call.id.clone(), name: call.name.clone(), output, is_error },
            );
        }
        if turn.cancel.is_cancelled() {
            return Some(TurnEnd::Stopped { status: self.stop_status(), message_id: None });
        }
        None
    }

    /// One call: policy, approval if needed, then the tool. Returns the output for the model
    /// and whether it is an error.
    async fn run_one(&self, turn: &TurnHandle, call: &ToolCall, channel: &str) -> (String, bool) {
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "execute_tool",
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = %call.name,
            gen_ai.tool.call.id = %call.id,
            gen_ai.tool.call.arguments = tracing::field::Empty,
            pryx.tool.outcome = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        if self.config.telemetry.capture_content {
            span.record("gen_ai.tool.call.arguments", call.arguments.as_str());
        }
        let (output, is_error, outcome) = self.run_one_inner(turn, call, channel).instrument(span.clone()).await;
        span.record("pryx.tool.outcome", outcome);
        if is_error {
            span.record("error.type", outcome);
        }
        (output, is_error)
    }

    /// The call itself; the third value names the outcome for telemetry
    /// (`ok`, `error`, `denied`, `unknown_tool`, `bad_arguments`, `timeout`).
    async fn run_one_inner(&self, turn: &TurnHandle, call: &ToolCall, channel: &str) -> (String, bool, &'static str) {
        let Some(tool) = self.tools.current().get(&call.name).cloned() else {
            return (format!("error: unknown tool `{}`", call.name), true, "unknown_tool");
        };
        let arguments = match parse_arguments(&call.arguments) {
            Ok(a) => a,
            Err(e) => return (format!("error: {e}"), true, "bad_arguments"),
        };
        let allowed = self.approvals.allowed_for_session(&turn.session_id);
        let decision = self.policy().decide(&call.name, tool.risk(), tool.trusted_by_user(), &arguments, &allowed);
        match decision {
            Rule::Deny => {
                return (
                    format!("error: not run: the user's policy does not allow `{}` here", call.name),
                    true,
                    "denied",
                );
            }
            Rule::Allow => {}
            Rule::Ask => {
                let request = NewApproval {
                    session_id: &turn.session_id,
                    turn_id: &turn.id,
                    call_id: &call.id,
                    tool: &call.name,
                    arguments: &call.arguments,
                    summary: tool.summary(&arguments),
                    risk: tool.risk(),
                    channel,
                };
                let wait = tracing::info_span!(
                    target: SPAN_TARGET,
                    "approval.wait",
                    gen_ai.tool.name = %call.name,
                    pryx.approval.outcome = tracing::field::Empty,
                );
                let asked = self.approvals.request(request, &turn.cancel, |approval| {
                    self.emit(turn, TurnEvent::ApprovalRequested { approval: approval.clone() });
                    self.refresh_activity();
                });
                let asked = asked.instrument(wait.clone()).await;
                self.refresh_activity();
                let outcome = match asked {
                    Ok(outcome) => outcome,
                    Err(e) => return (format!("error: not run: cannot ask for approval: {e}"), true, "error"),
                };
                wait.record("pryx.approval.outcome", wire_name(&outcome.approval.status).as_str());
                drop(wait);
                self.emit(turn, TurnEvent::ApprovalSettled { approval: outcome.approval.clone() });
                if !outcome.allowed() {
                    let why = match outcome.approval.status {
                        ApprovalStatus::TimedOut => "nobody approved it in time",
                        ApprovalStatus::Cancelled => "the turn was cancelled",
                        ApprovalStatus::Expired => "the agent stopped while it waited",
                        _ => "the user denied it",
                    };
                    let note = outcome.approval.note.map(|n| format!(" The user's note: {n}")).unwrap_or_default();
                    return (format!("error: not run: {why}.{note}"), true, "denied");
                }
            }
        }
        let timeout = Duration::from_secs(self.config.agent.tool_timeout_secs);
        let progress_turn = self.lock_turns().by_id.get(&turn.id).cloned();
        let call_id = call.id.clone();
        let events = self.events.clone();
        let ctx = ToolContext {
            cancel: turn.cancel.clone(),
            progress: progress_turn.map(|turn| -> crate::tools::ProgressSink {
                Arc::new(move |progress, total, message| {
                    let event = TurnEvent::ToolProgress { call_id: call_id.clone(), progress, total, message };
                    emit_to(&events, &turn, event);
                })
            }),
        };
        // MCP calls time out on silence themselves; a cancelled turn still stops them.
        let timeout = if tool.limits_its_own_time() { Duration::MAX } else { timeout };
        match tokio::time::timeout(timeout, tool.call(arguments, &ctx)).await {
            Ok(Ok(output)) => (output, false, "ok"),
            Ok(Err(e)) => (format!("error: {e}"), true, "error"),
            Err(_) => (format!("error: timed out after {}s", timeout.as_secs()), true, "timeout"),
        }
    }

    async fn recover_turn_panic(&self, turn: &TurnHandle, payload: Box<dyn std::any::Any + Send>) -> TurnEnd {
        let (message, backtrace) = panics::describe(payload);
        tracing::error!(turn = %turn.id, "a turn panicked: {message}");
        if let Err(e) = self.store.record_crash("turn", Some(&turn.id), &message, &backtrace).await {
            tracing::error!("cannot record the crash: {e}");
        }
        let _ = self.store.fail_streaming(&turn.id, "Pryx hit an internal error in this turn").await;
        TurnEnd::Failed(internal(
            "Pryx hit an internal error in this turn and stopped it; it was recorded, and other chats are unaffected"
                .into(),
        ))
    }

    async fn finish_turn(&self, turn: &TurnHandle, end: TurnEnd) {
        let (status, event, error) = match end {
            TurnEnd::Completed { message_id } => (
                TurnStatus::Completed,
                TurnEvent::Done { status: TurnStatus::Completed, message_id: Some(message_id) },
                None,
            ),
            TurnEnd::Stopped { status, message_id } => (status, TurnEvent::Done { status, message_id }, None),
            TurnEnd::Failed(e) => {
                let kind = wire_name(&e.kind);
                (
                    TurnStatus::Failed,
                    TurnEvent::Error { kind: e.kind, message: e.message.clone() },
                    Some((kind, e.message)),
                )
            }
        };
        if let Err(e) =
            self.store.finish_turn(&turn.id, status, error.as_ref().map(|(k, m)| (k.as_str(), m.as_str()))).await
        {
            tracing::error!(turn = %turn.id, "cannot record the end of a turn: {e}");
        }
        if let TurnEvent::Error { message, .. } = &event {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.clone());
        }
        self.emit(turn, event);
        turn.finished.send_replace(true);
        self.refresh_activity();
        {
            let mut turns = self.lock_turns();
            if turns.tail.get(&turn.session_id).is_some_and(|t| t.id == turn.id) {
                turns.tail.remove(&turn.session_id);
            }
        }
        // Keep the log a while for late subscribers, then forget it (the store has the rest).
        let turns = Arc::downgrade(&self.turns);
        let id = turn.id.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(KEEP_FINISHED_TURN) => {}
                _ = shutdown.cancelled() => return,
            }
            if let Some(turns) = turns.upgrade() {
                turns.lock().unwrap_or_else(|p| p.into_inner()).by_id.remove(&id);
            }
        });
    }

    // ---- helpers ----

    fn emit(&self, turn: &TurnHandle, event: TurnEvent) {
        emit_to(&self.events, turn, event);
    }

    fn stop_status(&self) -> TurnStatus {
        if self.shutdown.is_cancelled() {
            TurnStatus::Interrupted
        } else {
            TurnStatus::Cancelled
        }
    }

    async fn save_final(
        &self,
        id: i64,
        text: &str,
        calls: &[ToolCall],
        status: MessageStatus,
        error: Option<&str>,
        usage: Option<pryx_api::Usage>,
    ) {
        if let Err(e) = self.store.finish_assistant(id, text, calls, status, error, usage).await {
            tracing::error!("cannot store the final answer: {e}");
        }
    }

    async fn final_assistant_message(&self, session_id: &str, turn_id: &str) -> Option<i64> {
        let messages = self.store.messages(session_id).await.ok()?;
        messages.iter().rev().find(|m| m.turn_id.as_deref() == Some(turn_id) && m.role == Role::Assistant).map(|m| m.id)
    }

    fn lock_turns(&self) -> std::sync::MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The request for the next step of `turn`: system prompt, then history trimmed to fit.
    async fn build_request(&self, turn: &TurnHandle) -> Result<ChatRequest, StoreError> {
        let messages = self.store.messages(&turn.session_id).await?;
        let queued: HashSet<String> = self
            .lock_turns()
            .by_id
            .values()
            .filter(|t| t.session_id == turn.session_id && t.id != turn.id && !t.is_finished())
            .map(|t| t.id.clone())
            .collect();
        let units = conversation_units(&messages, &turn.id, &queued);
        let tools = self.tools.current().specs();
        let tools_tokens: usize = tools.iter().map(|t| t.to_string().len() / 4).sum();
        let reserve = self.config.llm.max_output_tokens.map_or(DEFAULT_ANSWER_RESERVE, |m| m as usize);
        let budget = (self.config.llm.context_window_tokens as usize).saturating_sub(reserve + tools_tokens);
        let system = WireMessage::system(&self.config.agent.system_prompt);
        Ok(ChatRequest { messages: fit_context(system, units, budget), tools })
    }
}

/// The text of an answer as it streams, saved to its message row every [`FLUSH_EVERY`] by
/// a writer task of its own. The streaming loop only appends and signals; it never waits
/// on the disk.
struct Draft {
    text: Arc<Mutex<String>>,
    dirty: mpsc::Sender<()>,
    done: CancellationToken,
}

impl Draft {
    fn start(store: Store, message_id: i64) -> Draft {
        let text = Arc::new(Mutex::new(String::new()));
        let (dirty, mut signals) = mpsc::channel::<()>(1);
        let done = CancellationToken::new();
        let (shared, stop) = (text.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    signal = signals.recv() => if signal.is_none() { return },
                }
                let snapshot = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if let Err(e) = store.save_partial(message_id, &snapshot).await {
                    tracing::warn!("cannot save a partial answer: {e}");
                }
                // Coalesce: whatever arrives meanwhile is saved in one write.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(FLUSH_EVERY) => {}
                }
            }
        });
        Draft { text, dirty, done }
    }

    fn push(&self, delta: &str) {
        self.text.lock().unwrap_or_else(|p| p.into_inner()).push_str(delta);
        let _ = self.dirty.try_send(());
    }

    /// Stop the writer and return the whole text. The caller writes the final state; a save
    /// still in flight cannot overwrite it (see [`Store::save_partial`]).
    fn finish(&self) -> String {
        self.done.cancel();
        self.text.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        self.done.cancel();
    }
}

fn secret_error(e: SecretError) -> AgentError {
    match e {
        SecretError::Missing(name) => AgentError::NotFound(format!("secret {name}")),
        SecretError::BadName(_) => AgentError::InvalidInput(e.to_string()),
        other => AgentError::Conflict(other.to_string()),
    }
}

fn internal(message: String) -> LlmError {
    LlmError { kind: ErrorKind::Internal, message }
}

fn validate_title(title: &str) -> Result<String, AgentError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(AgentError::InvalidInput("the title is empty".into()));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(AgentError::InvalidInput(format!("the title is longer than {MAX_TITLE_CHARS} characters")));
    }
    if title.chars().any(char::is_control) {
        return Err(AgentError::InvalidInput("the title contains control characters".into()));
    }
    Ok(title.to_owned())
}

/// A title from the first message: its first line, at most 60 characters.
fn title_from(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or(DEFAULT_TITLE).trim();
    let mut title: String = line.chars().filter(|c| !c.is_control()).take(60).collect();
    if line.chars().count() > 60 {
        title.push('…');
    }
    if title.is_empty() {
        DEFAULT_TITLE.into()
    } else {
        title
    }
}

/// A piece of history that is kept or dropped whole: one message, or an assistant message
/// with tool calls together with all their results.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub messages: Vec<WireMessage>,
    /// Part of the turn being answered: never dropped.
    pub current: bool,
}

/// Turn stored messages into units in conversation order: messages grouped by turn, turns in
/// the order their user messages were sent. Turns still queued behind `current_turn` are
/// left out; tool calls without a stored result (a turn stopped mid-call) are left out too,
/// because providers reject a call that has no answer.
pub fn conversation_units(messages: &[Message], current_turn: &str, queued: &HashSet<String>) -> Vec<Unit> {
    let answered: HashSet<&str> = messages.iter().filter_map(|m| m.tool_call_id.as_deref()).collect();
    let mut order: Vec<Option<&str>> = Vec::new();
    let mut by_turn: HashMap<Option<&str>, Vec<&Message>> = HashMap::new();
    for m in messages {
        let key = m.turn_id.as_deref();
        if key.is_some_and(|t| queued.contains(t)) {
            continue;
        }
        let group = by_turn.entry(key).or_default();
        if group.is_empty() {
            order.push(key);
        }
        group.push(m);
    }
    let mut units: Vec<Unit> = Vec::new();
    for key in order {
        let current = key == Some(current_turn);
        let mut open_calls: HashSet<String> = HashSet::new();
        for m in by_turn.remove(&key).unwrap_or_default() {
            match m.role {
                Role::User => {
                    open_calls.clear();
                    units.push(Unit { messages: vec![WireMessage::user(&m.content)], current });
                }
                Role::Assistant => {
                    let calls: Vec<ToolCall> =
                        m.tool_calls.iter().filter(|c| answered.contains(c.id.as_str())).cloned().collect();
                    open_calls = calls.iter().map(|c| c.id.clone()).collect();
                    if calls.is_empty() && m.content.is_empty() {
                        continue;
                    }
                    units.push(Unit { messages: vec![WireMessage::assistant(&m.content, &calls)], current });
                }
                Role::Tool => {
                    let Some(call_id) = m.tool_call_id.as_deref() else {
                        continue;
                    };
                    if open_calls.remove(call_id) {
                        if let Some(unit) = units.last_mut() {
                            unit.messages.push(WireMessage::tool(call_id, &m.content));
                        }
                    }
                }
            }
        }
    }
    units
}

/// Drop the oldest units until the estimate fits `budget` tokens; units of the current turn
/// always stay, and a unit is never split, so a tool call keeps its results.
pub fn fit_context(system: WireMessage, units: Vec<Unit>, budget: usize) -> Vec<WireMessage> {
    let cost = |u: &Unit| u.messages.iter().map(WireMessage::estimated_tokens).sum::<usize>();
    let mut total: usize = system.estimated_tokens() + units.iter().map(cost).sum::<usize>();
    let mut keep = vec![true; units.len()];
    for (i, unit) in units.iter().enumerate() {
        if total <= budget {
            break;
        }
        if !unit.current {
            keep[i] = false;
            total -= cost(unit);
        }
    }
    // A history must not start with tool results or an assistant reply whose question was
    // dropped; skipping leading assistant units keeps the request well formed.
    let mut out = vec![system];
    let mut started = false;
    for (unit, kept) in units.into_iter().zip(keep) {
        if !kept {
            continue;
        }
        if !started && unit.messages.first().is_some_and(|m| m.role != "user") {
            continue;
        }
        started = true;
        out.extend(unit.messages);
    }
    out
}

/// Append `event` to the turn's log (for replay) and pass it to live listeners.
fn emit_to(events: &broadcast::Sender<TurnEventEnvelope>, turn: &TurnHandle, event: TurnEvent) {
    let mut log = turn.log.lock().unwrap_or_else(|p| p.into_inner());
    let envelope = TurnEventEnvelope {
        turn_id: turn.id.clone(),
        session_id: turn.session_id.clone(),
        seq: log.len() as u64,
        event,
    };
    // Every delta passes here: copy it for `events.subscribe` only when someone listens.
    if events.receiver_count() > 0 {
        let _ = events.send(envelope.clone());
    }
    log.push(envelope);
    turn.progress.send_replace(log.len());
}

/// A workspace directory given in the UI: absolute, and a directory if it exists (Pryx
/// creates it otherwise, as at start).
fn check_workspace(dir: &str) -> Result<String, AgentError> {
    let path = Path::new(dir);
    if !path.is_absolute() {
        return Err(AgentError::InvalidInput(format!("`{dir}` is not an absolute path (like /home/me/work)")));
    }
    if path.exists() && !path.is_dir() {
        return Err(AgentError::InvalidInput(format!("`{dir}` is a file, not a directory")));
    }
    Ok(dir.to_owned())
}

/// An OTLP/HTTP receiver's base URL.
fn check_export_endpoint(url: &str) -> Result<String, AgentError> {
    crate::config::check_url(url).map_err(AgentError::InvalidInput)?;
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pryx_api::Usage;

    fn message(id: i64, turn: &str, role: Role, content: &str) -> Message {
        Message {
            id,
            session_id: "s".into(),
            turn_id: Some(turn.into()),
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            status: MessageStatus::Complete,
            error: None,
            usage: None::<Usage>,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn call(id: &str) -> ToolCall {
        ToolCall { id: id.into(), name: "time_now".into(), arguments: "{}".into() }
    }

    fn roles(messages: &[WireMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.role).collect()
    }

    #[test]
    fn units_follow_turn_order_and_skip_queued_turns() {
        // Two turns sent back to back: ids interleave, the conversation must not.
        let messages = vec![
            message(1, "t1", Role::User, "one"),
            message(2, "t2", Role::User, "two"),
            message(3, "t1", Role::Assistant, "answer one"),
            message(4, "t2", Role::Assistant, "answer two"),
            message(5, "t3", Role::User, "three (queued)"),
        ];
        let queued = HashSet::from(["t3".to_owned()]);
        let units = conversation_units(&messages, "t2", &queued);
        let texts: Vec<&str> = units.iter().map(|u| u.messages[0].content.as_str()).collect();
        assert_eq!(texts, ["one", "answer one", "two", "answer two"]);
        assert_eq!(units.iter().map(|u| u.current).collect::<Vec<_>>(), [false, false, true, true]);
    }

    #[test]
    fn a_tool_call_travels_with_its_results_and_unanswered_calls_are_dropped() {
        let mut ask = message(2, "t1", Role::Assistant, "");
        ask.tool_calls = vec![call("a"), call("b"), call("lost")];
        let mut result_a = message(3, "t1", Role::Tool, "A");
        result_a.tool_call_id = Some("a".into());
        let mut result_b = message(4, "t1", Role::Tool, "B");
        result_b.tool_call_id = Some("b".into());
        let mut empty_failed = message(5, "t1", Role::Assistant, "");
        empty_failed.status = MessageStatus::Failed;
        let messages = vec![message(1, "t1", Role::User, "q"), ask, result_a, result_b, empty_failed];

        let units = conversation_units(&messages, "t1", &HashSet::new());
        assert_eq!(units.len(), 2, "{units:?}");
        assert_eq!(roles(&units[1].messages), ["assistant", "tool", "tool"]);
        let ids: Vec<&str> = units[1].messages[0].tool_calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b"], "the call without a result is not sent");
    }

    #[test]
    fn trimming_drops_oldest_whole_units_and_keeps_the_current_turn() {
        let old_text = "x".repeat(4000); // about 1000 tokens each
        let mut units = Vec::new();
        for i in 0..5 {
            units.push(Unit { messages: vec![WireMessage::user(&format!("{i} {old_text}"))], current: false });
            units.push(Unit {
                messages: vec![
                    WireMessage::assistant("", &[call(&format!("c{i}"))]),
                    WireMessage::tool(&format!("c{i}"), &old_text),
                ],
                current: false,
            });
        }
        units.push(Unit { messages: vec![WireMessage::user("now")], current: true });

        let fitted = fit_context(WireMessage::system("sys"), units.clone(), 4500);
        assert_eq!(fitted[0].role, "system");
        assert_eq!(fitted.last().unwrap().content, "now");
        assert_eq!(fitted[1].role, "user", "history starts at a user message");
        let total: usize = fitted.iter().map(WireMessage::estimated_tokens).sum();
        assert!(total <= 4500, "{total}");
        // Every tool result still follows its call.
        for (i, m) in fitted.iter().enumerate() {
            if m.role == "tool" {
                let prev = &fitted[i - 1];
                assert!(prev.role == "tool" || !prev.tool_calls.is_empty(), "orphaned tool result at {i}");
            }
        }
        // The newest history survives, the oldest goes.
        assert!(fitted.iter().any(|m| m.content.starts_with("4 ")));
        assert!(!fitted.iter().any(|m| m.content.starts_with("0 ")));

        // Enough room: nothing is dropped.
        assert_eq!(fit_context(WireMessage::system("sys"), units.clone(), 1_000_000).len(), 1 + 15 + 1);
        // No room at all: the current turn is still sent.
        let tiny = fit_context(WireMessage::system("sys"), units, 10);
        assert_eq!(roles(&tiny), ["system", "user"]);
    }

    #[test]
    fn titles_are_validated_and_derived_from_the_first_line() {
        assert_eq!(validate_title("  Trip  ").unwrap(), "Trip");
        assert!(validate_title("").is_err());
        assert!(validate_title("a\u{7}b").is_err());
        assert!(validate_title(&"x".repeat(MAX_TITLE_CHARS + 1)).is_err());
        assert_eq!(title_from("  Plan a trip\nwith details"), "Plan a trip");
        assert_eq!(title_from(&"y".repeat(80)).chars().count(), 61);
    }
}
