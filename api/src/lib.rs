//! `pryx-api`: the one contract between the Pryx agent, its UI and its tests.
//!
//! The [`PryxApi`] trait is the single source of truth for the JSON-RPC 2.0 interface that
//! `pryx` serves over WebSocket at `/rpc`. The `#[rpc]` macro generates both the server trait
//! (`PryxApiServer`, implemented by the agent) and a typed client extension trait
//! (`PryxApiClient`, used by `pryx chat`, the desktop shell, the Control Center and the
//! tests), so the two sides cannot drift apart. Every method is documented with an example in `docs/api.md`.
//!
//! Method names are `noun.verb`. Timestamps are Unix milliseconds. Ids are strings (sessions,
//! turns) or integers (messages, which are ordered by id within a session).

#[cfg(feature = "server")]
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use serde::Serialize;

mod activity;
mod approvals;
mod channels;
mod login;
mod mcp;
mod sessions;
mod settings;
mod telemetry;
mod tools;

pub use activity::*;
pub use approvals::*;
pub use channels::*;
pub use login::*;
pub use mcp::*;
pub use sessions::*;
pub use settings::*;
pub use telemetry::*;
pub use tools::*;

/// The closed sets that are text on the wire print as that text.
macro_rules! display_as_wire_name {
    ($($name:ty),*) => {$(
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_wire_name!(Risk, Rule, ChannelName, Surface, TelegramMode, ReplyStatus, SpanStatus, Hiding, CommandNetwork);

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
/// [`ApprovalStatus::TimedOut`]: how the agent, store and CLI turn an enum into text. The
/// closed sets that became enums in place of strings (`Risk`, `Rule`, `ChannelName`,
/// `Surface`, `TelegramMode`, `ReplyStatus`, `SpanStatus`, `Hiding`, `CommandNetwork`) also have `as_str`, the same text
/// without allocating; a test holds the two to agree.
pub fn wire_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The variant a wire name stands for, if any (the inverse of [`wire_name`]).
pub fn from_wire_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
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
    async fn provider_set(&self, change: ProviderChange) -> Result<ProviderInfo, ErrorObjectOwned>;

    /// Make one small real request with these settings (unset ones: the current ones),
    /// without saving anything. A failure is an answer (`ok: false`), not an error.
    #[method(name = "provider.test")]
    async fn provider_test(&self, change: ProviderChange) -> Result<ProviderTest, ErrorObjectOwned>;

    /// Every tool offered now (built-ins and MCP tools) with its approval rule.
    #[method(name = "tools.list")]
    async fn tools_list(&self) -> Result<Vec<ToolPolicy>, ErrorObjectOwned>;

    /// Set a tool's rule (`allow`, `ask`, `deny`) or, with `null`, go back to the default.
    /// Written to `[policy.tools]` in the config file and in force for the next call.
    #[method(name = "tools.set_rule")]
    async fn tools_set_rule(&self, tool: String, rule: Option<Rule>) -> Result<ToolPolicy, ErrorObjectOwned>;

    /// Stored spans, oldest first: of one session if given, starting at or after `since_us`,
    /// at most `limit` (default 1000, at most 10000): the earliest of them, or with
    /// `newest: true` the latest.
    #[method(name = "spans.query")]
    async fn spans_query(&self, query: SpanQuery) -> Result<Vec<SpanRecord>, ErrorObjectOwned>;

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
    async fn channel_pairing_code(&self, channel: ChannelName) -> Result<PairingCode, ErrorObjectOwned>;

    /// The workspace and telemetry settings.
    #[method(name = "settings.get")]
    async fn settings_get(&self) -> Result<AgentSettings, ErrorObjectOwned>;

    /// Change the workspace (`""`: the default), content capture, the OTLP export endpoint
    /// (`""`: export off) or its `authorization` header (kept in the keychain; `""` removes
    /// it); omitted values stay. The file is written, then the agent's runtime restarts
    /// in-process to apply them (about a second: clients reconnect, the port and token
    /// stay). Refused with `-32009` while a turn runs, so no answer is cut short.
    #[method(name = "settings.set")]
    async fn settings_set(&self, change: SettingsChange) -> Result<AgentSettings, ErrorObjectOwned>;

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
    async fn channel_telegram_set(&self, setup: TelegramSetup) -> Result<ChannelStatus, ErrorObjectOwned>;

    /// Connect WhatsApp (Cloud API): the access token is checked against the phone number
    /// id before anything is saved; tokens go to the keychain (omit one to keep the saved
    /// value). Meta must then be told `webhook_url` and the verify token. Applies at once.
    #[method(name = "channel.whatsapp_set")]
    async fn channel_whatsapp_set(&self, setup: WhatsAppSetup) -> Result<ChannelStatus, ErrorObjectOwned>;

    /// Turn a channel off and forget its tokens (paired chats and history stay).
    #[method(name = "channel.disconnect")]
    async fn channel_disconnect(&self, channel: ChannelName) -> Result<ChannelStatus, ErrorObjectOwned>;

    /// The latest replies on a channel, newest first, with their delivery state.
    #[method(name = "channel.replies")]
    async fn channel_replies(
        &self,
        channel: ChannelName,
        limit: Option<u32>,
    ) -> Result<Vec<ChannelReply>, ErrorObjectOwned>;

    /// Status changes of MCP servers, live.
    #[subscription(name = "mcp.subscribe", unsubscribe = "mcp.unsubscribe", item = McpServerStatus)]
    async fn mcp_subscribe(&self) -> SubscriptionResult;

    /// Which providers are logged in, and which can be logged in to with this configuration.
    #[method(name = "auth.status")]
    async fn auth_status(&self) -> Result<Vec<LoginStatus>, ErrorObjectOwned>;

    /// Start a device-flow login: the code to show, the link and its QR code. Follow it with
    /// `auth.login_subscribe`; it ends on its own when the code is entered, denied or expires.
    #[method(name = "auth.login_start")]
    async fn auth_login_start(&self, provider: LoginProvider) -> Result<LoginStarted, ErrorObjectOwned>;

    /// A login's progress: `waiting` at once, then `logged_in` or `failed` (with the reason
    /// in words), then the subscription ends.
    #[subscription(name = "auth.login_subscribe", unsubscribe = "auth.login_unsubscribe", item = LoginUpdate)]
    async fn auth_login_subscribe(&self, login_id: String) -> SubscriptionResult;

    /// Forget a provider's tokens. Answers whether it was logged in.
    #[method(name = "auth.logout")]
    async fn auth_logout(&self, provider: LoginProvider) -> Result<bool, ErrorObjectOwned>;

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
            risk: Risk::Execute,
            channel: Surface::Local,
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

    /// The enums that replaced strings on the wire keep the exact text clients knew.
    #[test]
    fn closed_sets_are_written_as_before() {
        fn text<T: Serialize>(value: T) -> String {
            wire_name(&value)
        }
        for risk in [Risk::Read, Risk::Write, Risk::Destructive, Risk::Execute] {
            assert_eq!(text(risk), risk.as_str());
        }
        for rule in [Rule::Allow, Rule::Ask, Rule::Deny] {
            assert_eq!(text(rule), rule.as_str());
        }
        for channel in ChannelName::ALL {
            assert_eq!(text(channel), channel.as_str());
            assert_eq!(text(Surface::from(channel)), channel.as_str());
        }
        assert_eq!(text(Surface::Local), "local");
        for mode in [TelegramMode::Polling, TelegramMode::Webhook] {
            assert_eq!(text(mode), mode.as_str());
        }
        for status in [ReplyStatus::Pending, ReplyStatus::Sent, ReplyStatus::Failed] {
            assert_eq!(text(status), status.as_str());
        }
        for status in [SpanStatus::Ok, SpanStatus::Error] {
            assert_eq!(text(status), status.as_str());
        }
        for hiding in [Hiding::MountNamespace, Hiding::LandlockRules, Hiding::None] {
            assert_eq!(text(hiding), hiding.as_str());
        }
        for network in [CommandNetwork::Off, CommandNetwork::On, CommandNetwork::Open] {
            assert_eq!(text(network), network.as_str());
        }
        assert_eq!(from_wire_name::<ChannelName>("signal"), None);
    }

    /// A params struct takes any subset of its fields and refuses a misspelt one.
    #[test]
    fn params_structs_take_what_is_given_and_refuse_unknown_fields() {
        let change: SettingsChange = serde_json::from_value(serde_json::json!({"capture_content": true})).unwrap();
        assert_eq!(change, SettingsChange { capture_content: Some(true), ..Default::default() });
        let query: SpanQuery = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(query, SpanQuery::default());
        assert!(serde_json::from_value::<ProviderChange>(serde_json::json!({"apikey": "x"})).is_err());
        let setup: TelegramSetup = serde_json::from_value(serde_json::json!({"mode": "polling"})).unwrap();
        assert_eq!(setup, TelegramSetup { bot_token: None, mode: TelegramMode::Polling, public_url: None });
        assert!(serde_json::from_value::<TelegramSetup>(serde_json::json!({"mode": "carrier_pigeon"})).is_err());
    }
}
