//! Sessions, their messages, and the turns that answer them: what a conversation is on
//! the wire, and the events a turn streams.

use serde::{Deserialize, Serialize};

use crate::Approval;

/// Where a conversation happens: here (the Control Center, `pryx chat`, the API) or in a
/// messaging channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    Local,
    Telegram,
    Whatsapp,
}

impl Surface {
    /// The wire name (`local`, `telegram`, `whatsapp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Local => "local",
            Surface::Telegram => "telegram",
            Surface::Whatsapp => "whatsapp",
        }
    }
}

impl From<crate::ChannelName> for Surface {
    fn from(channel: crate::ChannelName) -> Surface {
        match channel {
            crate::ChannelName::Telegram => Surface::Telegram,
            crate::ChannelName::Whatsapp => Surface::Whatsapp,
        }
    }
}

/// A conversation with the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub title: String,
    /// Where the conversation happens.
    pub channel: Surface,
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
