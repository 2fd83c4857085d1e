//! `pryx-api`: the one contract between the Pryx agent, its UI and its tests.
//!
//! The [`PryxApi`] trait is the single source of truth for the JSON-RPC 2.0 interface that
//! `pryx` serves over WebSocket at `/rpc`. The `#[rpc]` macro generates both the server trait
//! (`PryxApiServer`, implemented by the agent) and a typed client extension trait
//! (`PryxApiClient`, used by `pryx chat`, the tests and later the Leptos UI), so the two sides
//! cannot drift apart. Every method is documented with an example in `docs/api.md`.
//!
//! Method names are `noun.verb`. Timestamps are Unix milliseconds. Ids are strings (sessions,
//! turns) or integers (messages, which are ordered by id within a session).

#[cfg(feature = "server")]
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use serde::{Deserialize, Serialize};

/// Longest session title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest user message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 100_000;

/// Application error codes, in the range JSON-RPC leaves to servers (-32000 to -32099).
pub mod error_code {
    /// The session, turn or other object named does not exist.
    pub const NOT_FOUND: i32 = -32004;
    /// The request was well formed but its values are not acceptable (empty text, too long...).
    pub const INVALID_INPUT: i32 = -32602;
    /// The operation conflicts with the current state (e.g. cancelling a finished turn).
    pub const CONFLICT: i32 = -32009;
    /// The agent is shutting down or restarting; try again shortly.
    pub const UNAVAILABLE: i32 = -32010;
    /// Something failed inside the agent; the message says what.
    pub const INTERNAL: i32 = -32603;
}

/// Build a JSON-RPC error object with one of the [`error_code`] codes.
pub fn rpc_error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(code, message.into(), None)
}

/// The name a unit variant has on the wire (`snake_case`), e.g. `"timed_out"` for
/// [`ApprovalStatus::TimedOut`]. The one way the agent, store and CLI turn enums into text.
pub fn wire_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The variant a wire name stands for, if any (the inverse of [`wire_name`]).
pub fn from_wire_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// A conversation with the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub title: String,
    /// Where the conversation happens: `local` (UI, CLI, API), later `telegram`, `whatsapp`.
    pub channel: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub message_count: i64,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
    Tool,
}

/// Lifecycle of a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Fully written.
    Complete,
    /// The assistant is still writing it.
    Streaming,
    /// Writing stopped because the agent stopped (shutdown, crash, kill); content is partial.
    Interrupted,
    /// The user cancelled the turn; content is what arrived before the cancel.
    Cancelled,
    /// The provider or a tool failed; `error` says why; content may be partial.
    Failed,
}

/// A function call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call, echoed back with the result.
    pub id: String,
    pub name: String,
    /// The arguments as the JSON text the model produced (it may be invalid JSON).
    pub arguments: String,
}

/// Token accounting reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// One stored message of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub session_id: String,
    pub turn_id: Option<String>,
    pub role: Role,
    pub content: String,
    /// Calls the assistant asked for in this message (assistant messages only).
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// The call this message answers (tool messages only).
    pub tool_call_id: Option<String>,
    pub status: MessageStatus,
    pub error: Option<String>,
    pub usage: Option<Usage>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A session with its whole history, oldest message first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDetail {
    pub session: Session,
    pub messages: Vec<Message>,
}

/// What `message.send` answers: the turn it started, to follow with `turn.subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnStarted {
    pub turn_id: String,
    pub session_id: String,
    pub user_message_id: i64,
}

/// How a turn ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    /// Queued behind an earlier turn of the same session, or running.
    Running,
    Completed,
    Cancelled,
    Failed,
    /// The agent stopped (shutdown, crash) while it ran.
    Interrupted,
}

/// Why a turn failed, so clients can react without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No LLM provider is configured and none was found on this machine.
    NotConfigured,
    /// The provider refused the API key (401/403).
    ProviderAuth,
    /// The provider does not know the configured model (404).
    ModelNotFound,
    /// The provider rate-limited the request and retries did not help (429).
    RateLimited,
    /// The provider failed (5xx) and retries did not help.
    ProviderUnavailable,
    /// The provider could not be reached at all.
    ConnectionFailed,
    /// The provider's stream broke before the answer was complete.
    StreamBroken,
    /// The provider sent something that is not a valid Chat Completions stream.
    MalformedResponse,
    /// The provider rejected the request for another reason (400...).
    ProviderRejected,
    /// The model kept calling tools past the configured step limit.
    StepLimit,
    /// A bug in Pryx (a panic in the turn); recorded in the crash log.
    Internal,
}

/// A person's answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    /// Run this call.
    AllowOnce,
    /// Run this call and every later call of the same tool in this session.
    AllowForSession,
    /// Do not run it; the model is told (with the note, if any).
    Deny,
}

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Allowed,
    Denied,
    /// Nobody answered in time: denied.
    TimedOut,
    /// The agent stopped while it waited: denied, never silently allowed.
    Expired,
    /// The turn was cancelled while it waited.
    Cancelled,
}

/// A tool call waiting for (or settled by) a human decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub session_id: String,
    pub turn_id: String,
    pub call_id: String,
    pub tool: String,
    /// The call's arguments as JSON text.
    pub arguments: String,
    /// One line a person can read to decide.
    pub summary: String,
    /// `write`, `destructive` or `execute`.
    pub risk: String,
    /// The surface the turn came from (`local`, later `telegram`…).
    pub channel: String,
    pub status: ApprovalStatus,
    pub decision: Option<ApprovalDecision>,
    pub note: Option<String>,
    pub answered_by: Option<String>,
    pub created_at: i64,
    /// When an unanswered request becomes a deny.
    pub expires_at: i64,
    pub settled_at: Option<i64>,
}

/// One thing that happened in a turn, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    /// More assistant text.
    Delta { text: String },
    /// The model asked for a tool call (arguments complete).
    ToolCall { call: ToolCall },
    /// A tool call finished; `output` is what the model will read.
    ToolResult { call_id: String, name: String, output: String, is_error: bool },
    /// A running tool call reported progress (MCP servers do this for long operations).
    ToolProgress { call_id: String, progress: f64, total: Option<f64>, message: Option<String> },
    /// A tool call waits for a person's decision (answer with `approval.answer`).
    ApprovalRequested { approval: Approval },
    /// The decision was taken (or the request timed out or was cancelled).
    ApprovalSettled { approval: Approval },
    /// Token usage of one model request of this turn.
    Usage { usage: Usage },
    /// The turn ended normally or by cancel; `message_id` is the final assistant message.
    Done { status: TurnStatus, message_id: Option<i64> },
    /// The turn failed; no more events follow.
    Error { kind: ErrorKind, message: String },
}

impl TurnEvent {
    /// The event's `type` tag as it appears on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            TurnEvent::Delta { .. } => "delta",
            TurnEvent::ToolCall { .. } => "tool_call",
            TurnEvent::ToolResult { .. } => "tool_result",
            TurnEvent::ToolProgress { .. } => "tool_progress",
            TurnEvent::ApprovalRequested { .. } => "approval_requested",
            TurnEvent::ApprovalSettled { .. } => "approval_settled",
            TurnEvent::Usage { .. } => "usage",
            TurnEvent::Done { .. } => "done",
            TurnEvent::Error { .. } => "error",
        }
    }

    /// Whether this event ends the turn's stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, TurnEvent::Done { .. } | TurnEvent::Error { .. })
    }
}

/// A [`TurnEvent`] with where it belongs. `seq` starts at 0 for each turn and has no gaps.
///
/// On the wire the event's fields sit beside `turn_id`, `session_id` and `seq`. Reading it
/// goes through [`WireEnvelope`], one flat struct, instead of serde's `flatten` of a tagged
/// enum: that buffers every event twice and was the largest piece of the UI's download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WireEnvelope")]
pub struct TurnEventEnvelope {
    pub turn_id: String,
    pub session_id: String,
    pub seq: u64,
    #[serde(flatten)]
    pub event: TurnEvent,
}

/// Every field any [`TurnEvent`] has, as it arrives; `type` says which ones must be there.
#[derive(Deserialize)]
struct WireEnvelope {
    turn_id: String,
    session_id: String,
    seq: u64,
    #[serde(rename = "type")]
    tag: String,
    text: Option<String>,
    call: Option<ToolCall>,
    call_id: Option<String>,
    name: Option<String>,
    output: Option<String>,
    is_error: Option<bool>,
    progress: Option<f64>,
    total: Option<f64>,
    message: Option<String>,
    approval: Option<Approval>,
    usage: Option<Usage>,
    status: Option<TurnStatus>,
    message_id: Option<i64>,
    kind: Option<ErrorKind>,
}

impl TryFrom<WireEnvelope> for TurnEventEnvelope {
    type Error = String;

    fn try_from(wire: WireEnvelope) -> Result<Self, String> {
        fn needed<T>(value: Option<T>, field: &str) -> Result<T, String> {
            value.ok_or_else(|| format!("missing field `{field}`"))
        }
        let event = match wire.tag.as_str() {
            "delta" => TurnEvent::Delta { text: needed(wire.text, "text")? },
            "tool_call" => TurnEvent::ToolCall { call: needed(wire.call, "call")? },
            "tool_result" => TurnEvent::ToolResult {
                call_id: needed(wire.call_id, "call_id")?,
                name: needed(wire.name, "name")?,
                output: needed(wire.output, "output")?,
                is_error: needed(wire.is_error, "is_error")?,
            },
            "tool_progress" => TurnEvent::ToolProgress {
                call_id: needed(wire.call_id, "call_id")?,
                progress: needed(wire.progress, "progress")?,
                total: wire.total,
                message: wire.message,
            },
            "approval_requested" => TurnEvent::ApprovalRequested { approval: needed(wire.approval, "approval")? },
            "approval_settled" => TurnEvent::ApprovalSettled { approval: needed(wire.approval, "approval")? },
            "usage" => TurnEvent::Usage { usage: needed(wire.usage, "usage")? },
            "done" => TurnEvent::Done { status: needed(wire.status, "status")?, message_id: wire.message_id },
            "error" => TurnEvent::Error { kind: needed(wire.kind, "kind")?, message: needed(wire.message, "message")? },
            other => return Err(format!("unknown turn event type `{other}`")),
        };
        Ok(TurnEventEnvelope { turn_id: wire.turn_id, session_id: wire.session_id, seq: wire.seq, event })
    }
}

/// How well shell commands are contained on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// The directory file and shell tools act in.
    pub workspace: String,
    /// `full`, `partial` or `none`.
    pub landlock: String,
    pub pid_namespace: bool,
    /// One line for people.
    pub summary: String,
}

/// One span of the agent's work (a turn, an LLM request, a tool call, an approval wait).
/// Times are Unix microseconds; `end_us` is absent while the span is still open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub session_id: Option<String>,
    pub turn_id: Option<String>,
    pub start_us: i64,
    pub end_us: Option<i64>,
    /// `ok` or `error`.
    pub status: String,
    /// OpenTelemetry-style attributes (`gen_ai.*`, `pryx.*`).
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// How OTLP export is doing (counts since the process started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportStatus {
    pub endpoint: String,
    /// Spans the receiver accepted.
    pub exported: u64,
    /// Spans in batches the receiver did not accept (down, refused, timed out).
    pub failed: u64,
    /// Spans dropped because too many were waiting.
    pub dropped: u64,
}

/// Where the LLM provider setting came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// `config`, `env`, `ollama`, `lmstudio` or `none`.
    pub source: String,
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// Whether an API key is set (never the key itself).
    pub has_api_key: bool,
}

/// The LLM provider as the user configured it (`provider.get`); `system.info` shows the
/// one in use (which may have been found on this machine instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSettings {
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// Whether an API key is set (never the key itself).
    pub has_api_key: bool,
    /// Environment variables set for Pryx that win over the config file at the next start
    /// (`PRYX_LLM_BASE_URL`, `PRYX_LLM_MODEL`, `PRYX_LLM_API_KEY`, `OPENAI_API_KEY`).
    pub overridden_by_env: Vec<String>,
}

/// What `provider.test` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderTest {
    pub ok: bool,
    /// The provider's error in words, or which model answered.
    pub message: String,
    pub model: Option<String>,
    pub latency_ms: u64,
}

/// What `system.info` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub version: String,
    pub data_dir: String,
    pub provider: ProviderInfo,
    /// Times the agent runtime was restarted after a panic since the process started.
    pub runtime_restarts: u64,
    /// Unix ms when this runtime incarnation started.
    pub started_at: i64,
    pub sandbox: SandboxInfo,
    /// Where secrets are kept here, in one line (never a value).
    pub secrets: String,
    /// Telemetry spans dropped because the store fell behind (since the process started).
    pub spans_dropped: u64,
    /// OTLP export, when the user turned it on.
    pub export: Option<ExportStatus>,
}

/// One MCP server as the user configures it: `[mcp.servers.NAME]` in the config file,
/// `mcp.add` in the API. Exactly one of `command` (a local stdio server) or `url` (a
/// streamable-HTTP server) is set. Values in `env` and `headers` may be `secret:NAME`
/// references to the keychain instead of the secret itself.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpServerConfig {
    /// Program to start (stdio transport), found on `PATH` unless it is a path.
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Extra environment for the program (it otherwise gets only `PATH`, `HOME`, locale and
    /// temp-dir variables, never Pryx's own secrets).
    pub env: std::collections::BTreeMap<String, String>,
    /// Working directory of the program (default: Pryx's data directory).
    pub cwd: Option<String>,
    /// Endpoint of a streamable-HTTP server, e.g. `https://example.com/mcp`.
    pub url: Option<String>,
    /// HTTP headers sent with every request (e.g. `Authorization = "secret:github/token"`).
    pub headers: std::collections::BTreeMap<String, String>,
    /// OAuth (HTTP servers that answer 401, signed in with `pryx mcp login`): a client id
    /// registered with the authorization server beforehand. Unset: Pryx registers itself.
    pub oauth_client_id: Option<String>,
    /// The secret of that client, as a `secret:NAME` reference.
    pub oauth_client_secret: Option<String>,
    /// Scopes to ask for. Unset: what the server's challenge or metadata says.
    pub oauth_scopes: Vec<String>,
    /// An `https` URL where a Client ID Metadata Document for Pryx is published, used as the
    /// client id with authorization servers that support them.
    pub oauth_client_metadata_url: Option<String>,
    /// Offer Pryx's workspace to the server as its MCP root. Servers that honour roots (such
    /// as server-filesystem) then work in the workspace instead of the directories in their
    /// arguments, which is why this is off unless asked for.
    pub workspace_root: bool,
    /// `false` keeps the entry but does not start the server.
    pub enabled: bool,
    /// Every tool of this server runs without asking (deny rules in `[policy]` still win).
    pub trusted: bool,
    /// Tools (their names on the server, e.g. `read_file`) that run without asking.
    pub trusted_tools: Vec<String>,
    /// A call without an answer or progress for this long is cancelled, seconds.
    pub call_timeout_secs: u64,
    /// How long start-up (spawn or connect, then the MCP handshake) may take, seconds.
    pub startup_timeout_secs: u64,
}

/// `env` and `headers` may hold secrets written in plain text: `Debug` shows their names only.
impl std::fmt::Debug for McpServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServerConfig")
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("oauth_client_id", &self.oauth_client_id)
            .field("enabled", &self.enabled)
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

impl Default for McpServerConfig {
    fn default() -> Self {
        McpServerConfig {
            command: None,
            args: Vec::new(),
            env: Default::default(),
            cwd: None,
            url: None,
            headers: Default::default(),
            oauth_client_id: None,
            oauth_client_secret: None,
            oauth_scopes: Vec::new(),
            oauth_client_metadata_url: None,
            workspace_root: false,
            enabled: true,
            trusted: false,
            trusted_tools: Vec::new(),
            call_timeout_secs: 120,
            startup_timeout_secs: 30,
        }
    }
}

/// Where an MCP server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpServerState {
    /// Being spawned or connected, or handshaking.
    Starting,
    /// Connected; its tools are offered to the model.
    Ready,
    /// Not connected; `reason` says why. Pryx retries with back-off.
    Failed,
    /// The server wants an OAuth sign-in (`mcp.login`); nothing is retried until then.
    NeedsAuth,
    /// `enabled = false` in the config.
    Disabled,
}

/// The live status of one configured MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerStatus {
    pub name: String,
    pub state: McpServerState,
    /// Why it failed, in words a person can act on.
    pub reason: Option<String>,
    /// `stdio` or `http`.
    pub transport: String,
    /// Process id of a running stdio server.
    pub pid: Option<u32>,
    /// The server's own name and version, from the handshake.
    pub server_info: Option<String>,
    pub protocol_version: Option<String>,
    /// How many tools it offers now.
    pub tools: usize,
    /// Times it was started again after it failed or exited.
    pub restarts: u64,
}

/// What the server says about a tool's behaviour (hints, trusted only as far as the
/// policy allows: `read_only` loosens "ask" to "allow", nothing else loosens anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct McpToolHints {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

/// One tool an MCP server offers, as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolInfo {
    pub server: String,
    /// The function name the model calls (`SERVER__TOOL`, sanitised and de-duplicated).
    pub name: String,
    /// The tool's name on its server.
    pub tool: String,
    pub title: Option<String>,
    pub description: String,
    pub input_schema: serde_json::Value,
    pub hints: McpToolHints,
    /// What the approval policy does with a call: `allow`, `ask` or `deny`.
    pub rule: String,
}

/// What `mcp.list` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpOverview {
    pub servers: Vec<McpServerStatus>,
    /// Set when the config file was edited into something that does not load; the servers
    /// keep running as they were until it is fixed.
    pub config_error: Option<String>,
    /// The file `mcp.add`/`mcp.remove` write to.
    pub config_path: Option<String>,
}

/// A one-time code that pairs the owner's chat with Pryx (`/start CODE` on Telegram).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingCode {
    pub channel: String,
    pub code: String,
    /// Opening it sends the code to Pryx: `https://t.me/BOT?start=CODE` (Telegram sends
    /// `/start CODE`), `https://wa.me/NUMBER?text=CODE` (WhatsApp fills in the code).
    pub link: Option<String>,
    /// The link as a QR code, for a phone's camera.
    #[serde(default)]
    pub qr: Option<QrImage>,
    /// Unix ms after which the code no longer works.
    pub expires_at: i64,
}

/// A QR code drawn as one SVG path: `<svg viewBox="0 0 SIZE SIZE"><path d="PATH"/></svg>`
/// (dark modules filled, the quiet zone included in `size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrImage {
    pub size: u32,
    pub path: String,
}

/// The agent's settings the Settings screen edits (`settings.get`, `settings.set`). Never
/// holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSettings {
    /// `[tools] workspace` as configured; `None`: the default, `workspace` in the data
    /// directory.
    pub workspace: Option<String>,
    /// The workspace in use now.
    pub workspace_in_use: String,
    /// `[telemetry] capture_content`: message text and tool arguments in spans.
    pub capture_content: bool,
    /// `[telemetry.otlp] endpoint`: where spans are exported; `None`: nothing leaves this
    /// computer.
    pub export_endpoint: Option<String>,
    /// An `authorization` header for the export is kept in the keychain.
    pub export_authorization: bool,
}

/// How a messaging channel is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    /// Not set up.
    Off,
    /// Set up; checking the credentials with the platform.
    Connecting,
    /// Messages flow.
    Connected,
    /// Set up, but the platform refused or could not be reached (`error` says why).
    Failed,
}

/// A messaging channel's setup and health, as `channel.status` and `channels.subscribe`
/// show it. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// `telegram` or `whatsapp`.
    pub channel: String,
    pub state: ChannelState,
    /// Why the channel failed, in words.
    pub error: Option<String>,
    /// Who the owner talks to: `@bot_username`, or WhatsApp's display phone number.
    pub account: Option<String>,
    /// Telegram: `polling` or `webhook`.
    pub mode: Option<String>,
    /// The public base URL the platform posts to (webhook mode, WhatsApp).
    pub public_url: Option<String>,
    /// The full URL to register with the platform (`public_url` + `/webhooks/...`).
    pub webhook_url: Option<String>,
    /// WhatsApp: the business phone number's id.
    pub phone_number_id: Option<String>,
    /// Chats paired with a code (allowlisted ones not counted).
    pub paired_chats: u32,
    /// When the last message arrived (Unix ms).
    pub last_message_at: Option<i64>,
    /// Replies that could not be delivered (see `channel.replies`).
    pub failed_replies: u32,
}

/// A reply Pryx sent (or is sending, or failed to send) on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelReply {
    pub id: i64,
    pub chat_id: String,
    pub text: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i64,
    /// The platform's error for the last failed attempt.
    pub error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// What the platform reported later (WhatsApp: `sent`, `delivered`, `read`, `failed`).
    pub platform_status: Option<String>,
}

/// A tool and what the approval policy does with its calls (`tools.list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolPolicy {
    /// The function name the model calls.
    pub name: String,
    pub description: String,
    /// `read`, `write`, `destructive` or `execute`.
    pub risk: String,
    /// `builtin`, or the MCP server that offers it.
    pub source: String,
    /// What a call gets now: `allow`, `ask` or `deny` (before "allow for this chat" answers
    /// and the shell's prefix rules, which look at each call).
    pub rule: String,
    /// The rule the user set in `[policy.tools]`; `None` means the default for its risk
    /// (reads allowed, everything else asks; trusted MCP servers allowed).
    pub configured: Option<String>,
}

/// What the agent is doing, in one word, for status displays (window title, tray icon).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Idle,
    /// At least one turn is running.
    Thinking,
    /// A tool call waits for a person's decision.
    WaitingForApproval,
    /// The last turn failed (until the next one starts).
    Error,
    /// The owner paused the agent: no new turns start (channel messages wait in the inbox).
    Paused,
}

/// The agent's activity, pushed by `activity.subscribe` whenever it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub state: AgentState,
    pub running_turns: u32,
    pub pending_approvals: u32,
    pub paused: bool,
    /// Why the last turn failed, until the next turn starts.
    pub last_error: Option<String>,
}

impl Activity {
    /// The one-word state these counts add up to: a waiting approval matters most, then
    /// running turns, then a failure, then the pause.
    pub fn new(running_turns: u32, pending_approvals: u32, paused: bool, last_error: Option<String>) -> Self {
        let state = if pending_approvals > 0 {
            AgentState::WaitingForApproval
        } else if running_turns > 0 {
            AgentState::Thinking
        } else if last_error.is_some() {
            AgentState::Error
        } else if paused {
            AgentState::Paused
        } else {
            AgentState::Idle
        };
        Activity { state, running_turns, pending_approvals, paused, last_error }
    }
}

/// The Pryx JSON-RPC API. The server half is generated only with the `server` feature, so
/// the browser UI (wasm32, `client` only) builds without the server's runtime.
#[cfg_attr(feature = "server", rpc(server, client))]
#[cfg_attr(not(feature = "server"), rpc(client))]
pub trait PryxApi {
    /// Create an empty session. `title` defaults to "New chat".
    #[method(name = "session.create")]
    async fn session_create(&self, title: Option<String>) -> Result<Session, ErrorObjectOwned>;

    /// All sessions, most recently updated first.
    #[method(name = "session.list")]
    async fn session_list(&self) -> Result<Vec<Session>, ErrorObjectOwned>;

    /// One session with all its messages.
    #[method(name = "session.get")]
    async fn session_get(&self, session_id: String) -> Result<SessionDetail, ErrorObjectOwned>;

    /// Change a session's title.
    #[method(name = "session.rename")]
    async fn session_rename(&self, session_id: String, title: String) -> Result<Session, ErrorObjectOwned>;

    /// Delete a session and its history. A running turn of it is cancelled first.
    #[method(name = "session.delete")]
    async fn session_delete(&self, session_id: String) -> Result<(), ErrorObjectOwned>;

    /// Store a user message and start a turn that answers it. The message is committed to
    /// disk before this returns. Turns of one session run one after another.
    #[method(name = "message.send")]
    async fn message_send(&self, session_id: String, text: String) -> Result<TurnStarted, ErrorObjectOwned>;

    /// Stream a turn's events from its first one (events already sent are replayed), ending
    /// after `done` or `error`. A turn that finished long ago yields its final state.
    #[subscription(name = "turn.subscribe", unsubscribe = "turn.unsubscribe", item = TurnEventEnvelope)]
    async fn turn_subscribe(&self, turn_id: String) -> SubscriptionResult;

    /// Stream the events of every turn as they happen, optionally of one session only.
    #[subscription(name = "events.subscribe", unsubscribe = "events.unsubscribe", item = TurnEventEnvelope)]
    async fn events_subscribe(&self, session_id: Option<String>) -> SubscriptionResult;

    /// Cancel a running turn. The partial answer is kept, marked `cancelled`.
    /// Answers `false` when the turn had already ended.
    #[method(name = "turn.cancel")]
    async fn turn_cancel(&self, turn_id: String) -> Result<bool, ErrorObjectOwned>;

    /// Version, data directory and provider in use.
    #[method(name = "system.info")]
    async fn system_info(&self) -> Result<SystemInfo, ErrorObjectOwned>;

    /// Approval requests: pending ones, or with `include_settled` the last 200 of any status.
    #[method(name = "approval.list")]
    async fn approval_list(&self, include_settled: Option<bool>) -> Result<Vec<Approval>, ErrorObjectOwned>;

    /// Answer a pending approval. The first answer wins; a later one gets a `CONFLICT` error
    /// saying how it was settled. `note` goes to the model; `answered_by` names the surface
    /// (`cli`, `ui`…) in the audit trail.
    #[method(name = "approval.answer")]
    async fn approval_answer(
        &self,
        approval_id: String,
        decision: ApprovalDecision,
        note: Option<String>,
        answered_by: Option<String>,
    ) -> Result<Approval, ErrorObjectOwned>;

    /// Every approval as it is requested and as it is settled.
    #[subscription(name = "approvals.subscribe", unsubscribe = "approvals.unsubscribe", item = Approval)]
    async fn approvals_subscribe(&self) -> SubscriptionResult;

    /// What the agent is doing now.
    #[method(name = "activity.get")]
    async fn activity_get(&self) -> Result<Activity, ErrorObjectOwned>;

    /// The agent's activity: the current one at once, then every change.
    #[subscription(name = "activity.subscribe", unsubscribe = "activity.unsubscribe", item = Activity)]
    async fn activity_subscribe(&self) -> SubscriptionResult;

    /// Pause (no new turns start; `message.send` is refused, channel messages wait in the
    /// inbox) or resume the agent. Running turns go on. Lasts until resumed or the process ends.
    #[method(name = "agent.pause")]
    async fn agent_pause(&self, paused: bool) -> Result<Activity, ErrorObjectOwned>;

    /// The LLM provider as configured.
    #[method(name = "provider.get")]
    async fn provider_get(&self) -> Result<ProviderSettings, ErrorObjectOwned>;

    /// Use this provider from the next request on, and save it to the config file. An
    /// `api_key` goes to the keychain (`llm/api_key`); `null` keeps the current key, `""`
    /// removes it. Answers the provider now in use.
    #[method(name = "provider.set")]
    async fn provider_set(
        &self,
        base_url: Option<String>,
        model: Option<String>,
        api_key: Option<String>,
    ) -> Result<ProviderInfo, ErrorObjectOwned>;

    /// Make one small real request with these settings (unset ones: the current ones),
    /// without saving anything. A failure is an answer (`ok: false`), not an error.
    #[method(name = "provider.test")]
    async fn provider_test(
        &self,
        base_url: Option<String>,
        model: Option<String>,
        api_key: Option<String>,
    ) -> Result<ProviderTest, ErrorObjectOwned>;

    /// Every tool offered now (built-ins and MCP tools) with its approval rule.
    #[method(name = "tools.list")]
    async fn tools_list(&self) -> Result<Vec<ToolPolicy>, ErrorObjectOwned>;

    /// Set a tool's rule (`allow`, `ask`, `deny`) or, with `null`, go back to the default.
    /// Written to `[policy.tools]` in the config file and in force for the next call.
    #[method(name = "tools.set_rule")]
    async fn tools_set_rule(&self, tool: String, rule: Option<String>) -> Result<ToolPolicy, ErrorObjectOwned>;

    /// Stored spans, oldest first: of one session if given, starting at or after `since_us`,
    /// at most `limit` (default 1000, at most 10000): the earliest of them, or with
    /// `newest: true` the latest.
    #[method(name = "spans.query")]
    async fn spans_query(
        &self,
        session_id: Option<String>,
        since_us: Option<i64>,
        limit: Option<u32>,
        newest: Option<bool>,
    ) -> Result<Vec<SpanRecord>, ErrorObjectOwned>;

    /// Spans live as they start (without `end_us`) and as they end, optionally of one session.
    #[subscription(name = "spans.subscribe", unsubscribe = "spans.unsubscribe", item = SpanRecord)]
    async fn spans_subscribe(&self, session_id: Option<String>) -> SubscriptionResult;

    /// Store a secret in the OS keychain under a namespaced name (`llm/openai`…). There is
    /// no method to read one back.
    #[method(name = "secret.set")]
    async fn secret_set(&self, name: String, value: String) -> Result<(), ErrorObjectOwned>;

    /// Delete a stored secret.
    #[method(name = "secret.delete")]
    async fn secret_delete(&self, name: String) -> Result<(), ErrorObjectOwned>;

    /// Names of the stored secrets, never their values.
    #[method(name = "secret.list")]
    async fn secret_list(&self) -> Result<Vec<String>, ErrorObjectOwned>;

    /// MCP servers: their configuration state and live status.
    #[method(name = "mcp.list")]
    async fn mcp_list(&self) -> Result<McpOverview, ErrorObjectOwned>;

    /// The tools MCP servers offer now (one server, or all).
    #[method(name = "mcp.tools")]
    async fn mcp_tools(&self, server: Option<String>) -> Result<Vec<McpToolInfo>, ErrorObjectOwned>;

    /// Add (or replace) a server in the config file and start it; its tools are offered from
    /// the next model request. Secrets in `env`/`headers` should be `secret:NAME` references.
    #[method(name = "mcp.add")]
    async fn mcp_add(
        &self,
        name: String,
        server: McpServerConfig,
        replace: Option<bool>,
    ) -> Result<McpServerStatus, ErrorObjectOwned>;

    /// Remove a server from the config file and stop it.
    #[method(name = "mcp.remove")]
    async fn mcp_remove(&self, name: String) -> Result<(), ErrorObjectOwned>;

    /// Stop and start a server again (e.g. after updating it).
    #[method(name = "mcp.restart")]
    async fn mcp_restart(&self, name: String) -> Result<McpServerStatus, ErrorObjectOwned>;

    /// Add every server of an `mcpServers` JSON document (Claude Desktop, Cursor, OpenClaw).
    /// Returns the names added; existing names are skipped unless `replace`.
    #[method(name = "mcp.import")]
    async fn mcp_import(&self, json: String, replace: Option<bool>) -> Result<Vec<String>, ErrorObjectOwned>;

    /// Start an OAuth sign-in for an HTTP server: answers the URL to open in a browser. When
    /// the browser comes back to `/oauth/callback`, the tokens go to the keychain and the
    /// server reconnects (watch `mcp.subscribe`).
    #[method(name = "mcp.login")]
    async fn mcp_login(&self, name: String) -> Result<String, ErrorObjectOwned>;

    /// Forget a server's OAuth tokens and reconnect it (it will need a new sign-in).
    #[method(name = "mcp.logout")]
    async fn mcp_logout(&self, name: String) -> Result<(), ErrorObjectOwned>;

    /// A new one-time pairing code for a channel (`telegram`), valid for 10 minutes: the chat
    /// that sends it becomes the owner's. Earlier unused codes stay valid until they expire.
    #[method(name = "channel.pairing_code")]
    async fn channel_pairing_code(&self, channel: String) -> Result<PairingCode, ErrorObjectOwned>;

    /// The workspace and telemetry settings.
    #[method(name = "settings.get")]
    async fn settings_get(&self) -> Result<AgentSettings, ErrorObjectOwned>;

    /// Change the workspace (`""`: the default), content capture, the OTLP export endpoint
    /// (`""`: export off) or its `authorization` header (kept in the keychain; `""` removes
    /// it); omitted values stay. The file is written, then the agent's runtime restarts
    /// in-process to apply them (about a second: clients reconnect, the port and token
    /// stay). Refused with `-32009` while a turn runs, so no answer is cut short.
    #[method(name = "settings.set")]
    async fn settings_set(
        &self,
        workspace: Option<String>,
        capture_content: Option<bool>,
        export_endpoint: Option<String>,
        export_authorization: Option<String>,
    ) -> Result<AgentSettings, ErrorObjectOwned>;

    /// The setup and health of both channels (Telegram first).
    #[method(name = "channel.status")]
    async fn channel_status(&self) -> Result<Vec<ChannelStatus>, ErrorObjectOwned>;

    /// Both channels' status, now and whenever it changes (connects, fails, a message
    /// arrives, a chat pairs).
    #[subscription(name = "channels.subscribe", unsubscribe = "channels.unsubscribe", item = Vec<ChannelStatus>)]
    async fn channels_subscribe(&self) -> SubscriptionResult;

    /// Connect Telegram: `bot_token` from @BotFather (omit to keep the saved one) is checked
    /// with `getMe` before anything is saved, then kept in the keychain; `mode` is `polling`
    /// or `webhook` (which needs `public_url`, and gets a fresh secret). Applies at once.
    #[method(name = "channel.telegram_set")]
    async fn channel_telegram_set(
        &self,
        bot_token: Option<String>,
        mode: String,
        public_url: Option<String>,
    ) -> Result<ChannelStatus, ErrorObjectOwned>;

    /// Connect WhatsApp (Cloud API): the access token is checked against the phone number
    /// id before anything is saved; tokens go to the keychain (omit one to keep the saved
    /// value). Meta must then be told `webhook_url` and the verify token. Applies at once.
    #[method(name = "channel.whatsapp_set")]
    async fn channel_whatsapp_set(
        &self,
        phone_number_id: String,
        access_token: Option<String>,
        app_secret: Option<String>,
        verify_token: Option<String>,
        public_url: Option<String>,
    ) -> Result<ChannelStatus, ErrorObjectOwned>;

    /// Turn a channel off and forget its tokens (paired chats and history stay).
    #[method(name = "channel.disconnect")]
    async fn channel_disconnect(&self, channel: String) -> Result<ChannelStatus, ErrorObjectOwned>;

    /// The latest replies on a channel, newest first, with their delivery state.
    #[method(name = "channel.replies")]
    async fn channel_replies(&self, channel: String, limit: Option<u32>)
        -> Result<Vec<ChannelReply>, ErrorObjectOwned>;

    /// Status changes of MCP servers, live.
    #[subscription(name = "mcp.subscribe", unsubscribe = "mcp.unsubscribe", item = McpServerStatus)]
    async fn mcp_subscribe(&self) -> SubscriptionResult;

    /// Test-only fault injection (`runtime_panic` or `turn_panic`). Answers an error unless
    /// the binary is a debug build started with `PRYX_FAULT_INJECTION=1`.
    #[method(name = "debug.fault")]
    async fn debug_fault(&self, kind: String) -> Result<(), ErrorObjectOwned>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_events_serialize_with_a_type_tag() {
        let envelope = TurnEventEnvelope {
            turn_id: "t".into(),
            session_id: "s".into(),
            seq: 3,
            event: TurnEvent::Delta { text: "hi".into() },
        };
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json, serde_json::json!({"turn_id":"t","session_id":"s","seq":3,"type":"delta","text":"hi"}));
        let back: TurnEventEnvelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, envelope);
    }

    /// The lean reading of envelopes agrees with how they are written, for every event.
    #[test]
    fn every_turn_event_reads_back_as_written() {
        let approval = Approval {
            id: "a".into(),
            session_id: "s".into(),
            turn_id: "t".into(),
            call_id: "c".into(),
            tool: "shell".into(),
            arguments: "{}".into(),
            summary: "run ls".into(),
            risk: "execute".into(),
            channel: "local".into(),
            status: ApprovalStatus::Pending,
            decision: None,
            note: Some("why".into()),
            answered_by: None,
            created_at: 1,
            expires_at: 2,
            settled_at: None,
        };
        let call = ToolCall { id: "c".into(), name: "shell".into(), arguments: "{\"cmd\":\"ls\"}".into() };
        let events = [
            TurnEvent::Delta { text: "hi".into() },
            TurnEvent::ToolCall { call },
            TurnEvent::ToolResult { call_id: "c".into(), name: "shell".into(), output: "ok".into(), is_error: false },
            TurnEvent::ToolProgress { call_id: "c".into(), progress: 0.5, total: Some(1.0), message: None },
            TurnEvent::ApprovalRequested { approval: approval.clone() },
            TurnEvent::ApprovalSettled { approval },
            TurnEvent::Usage { usage: Usage { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } },
            TurnEvent::Done { status: TurnStatus::Completed, message_id: Some(7) },
            TurnEvent::Done { status: TurnStatus::Cancelled, message_id: None },
            TurnEvent::Error { kind: ErrorKind::RateLimited, message: "slow down".into() },
        ];
        for (seq, event) in events.into_iter().enumerate() {
            let envelope = TurnEventEnvelope { turn_id: "t".into(), session_id: "s".into(), seq: seq as u64, event };
            let text = serde_json::to_string(&envelope).unwrap();
            assert_eq!(serde_json::from_str::<TurnEventEnvelope>(&text).unwrap(), envelope, "{text}");
        }
        let missing =
            serde_json::from_str::<TurnEventEnvelope>(r#"{"turn_id":"t","session_id":"s","seq":0,"type":"delta"}"#);
        assert!(missing.unwrap_err().to_string().contains("missing field `text`"));
        let unknown =
            serde_json::from_str::<TurnEventEnvelope>(r#"{"turn_id":"t","session_id":"s","seq":0,"type":"nope"}"#);
        assert!(unknown.unwrap_err().to_string().contains("unknown turn event type `nope`"));
    }

    #[test]
    fn kind_matches_the_wire_tag() {
        let event =
            TurnEvent::ToolResult { call_id: "c".into(), name: "n".into(), output: "o".into(), is_error: false };
        assert_eq!(serde_json::to_value(&event).unwrap()["type"], event.kind());
    }

    #[test]
    fn mcp_server_debug_never_shows_env_or_header_values() {
        let mut server = McpServerConfig { command: Some("node".into()), ..McpServerConfig::default() };
        server.env.insert("GITHUB_TOKEN".into(), "ghp_plain_secret".into());
        server.headers.insert("Authorization".into(), "Bearer plain-secret".into());
        let shown = format!("{server:?}");
        assert!(shown.contains("GITHUB_TOKEN") && shown.contains("Authorization"), "{shown}");
        assert!(!shown.contains("ghp_plain_secret") && !shown.contains("plain-secret"), "{shown}");
    }

    #[test]
    fn wire_names_round_trip() {
        assert_eq!(wire_name(&ApprovalStatus::TimedOut), "timed_out");
        assert_eq!(from_wire_name::<ErrorKind>("provider_auth"), Some(ErrorKind::ProviderAuth));
        assert_eq!(from_wire_name::<ErrorKind>("no_such_kind"), None);
    }

    #[test]
    fn only_done_and_error_end_a_turn() {
        assert!(TurnEvent::Done { status: TurnStatus::Completed, message_id: None }.is_terminal());
        assert!(TurnEvent::Error { kind: ErrorKind::Internal, message: "x".into() }.is_terminal());
        assert!(!TurnEvent::Delta { text: String::new() }.is_terminal());
    }
}
