//! Messaging channels: the owner talks to Pryx from Telegram (WhatsApp comes next).
//!
//! One pipeline for every platform:
//! 1. **Intake** (webhook or long poll) turns a platform payload into an [`InboundMessage`]
//!    and commits it to the inbox, deduplicated by the platform's id, before the platform
//!    is answered. Nothing slow happens here, so a busy model never delays an ack.
//! 2. **Dispatch** takes inbox rows in order. Chats the owner has not paired (or listed in
//!    `allowed_chats`) get one polite refusal and never reach the model or a tool; `/start
//!    CODE` with a fresh pairing code pairs a chat. Commands (`/new`, `/stop`, `/help`) are
//!    answered here; text starts a turn in the chat's session (the agent keeps one
//!    session's turns in order), and a follower waits for its answer, showing "typing…".
//! 3. **Outbox**: the answer, formatted and split for the platform, is queued in the same
//!    transaction that marks the message answered, and a sender delivers it with retries.
//!
//! A crash between 2 and 3 leaves the message `started`; at the next start its chat is told
//! the answer was interrupted (once), so every message is answered exactly once.

pub mod format;
pub mod qr;
mod setup;
pub mod tables;
pub mod telegram;
pub mod whatsapp;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use pryx_api::{ApprovalDecision, ChannelReply, PairingCode, TurnEvent, TurnStatus};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::Agent;
use crate::config::edit::EditError;
use crate::config::Config;
use crate::secrets::SecretString;
use crate::store::{now_ms, Store, StoreError};
use format::Piece;
use tables::{InboundMessage, InboxRow, Kind};
use telegram::BotApi;
use whatsapp::CloudApi;

/// How long a pairing code works.
const PAIRING_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// Most deliveries committed in one transaction.
const MAX_BATCH: usize = 512;
/// The note on a message refused because its chat is not paired.
const NOT_PAIRED: &str = "not paired";
/// Shortest time between two passes of the dispatcher over the inbox.
const DISPATCH_PACE: Duration = Duration::from_millis(5);
/// A message waiting to be committed, and who waits for the outcome.
type Delivery = (InboundMessage, oneshot::Sender<Result<bool, ChannelError>>);
/// Attempts before a reply is given up as failed.
const MAX_SEND_ATTEMPTS: i64 = 8;
/// How often the live preview of an answer may change (Telegram allows about one edit a
/// second per chat).
const PREVIEW_EVERY: Duration = Duration::from_millis(1100);
/// How often "typing…" is refreshed while a turn runs (Telegram shows it for ~5 s).
const TYPING_EVERY: Duration = Duration::from_secs(4);

const HELP: &str = "I'm Pryx, your own agent. Write to me as you would in the app.\n\
                    /new starts a fresh conversation, /stop stops the current answer.";
const REFUSAL: &str = "Sorry, this is a private assistant and this chat is not paired with it. \
                       Its owner can pair a chat from the Pryx app.";

/// Why a channel request from the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the channel `{0}` is not connected (connect it in Connections, or see [telegram] and [whatsapp] in the config)")]
    NotConfigured(String),
    #[error("{0}")]
    Invalid(String),
    /// The platform did not accept the credentials, or could not be reached: its words.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Config(#[from] EditError),
    #[error("the channels are still connecting; try again in a moment")]
    Connecting,
    #[error("the channels are shutting down")]
    Stopped,
    /// The batch this message was committed with failed (the database error, as text: one
    /// error answers every message of the batch).
    #[error("the message could not be stored: {0}")]
    NotStored(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A choice offered with a message (`id` comes back when it is pressed).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Button {
    pub id: String,
    /// At most 20 characters (WhatsApp's limit).
    pub title: String,
}

/// Why a platform call failed.
#[derive(Debug)]
pub enum ApiError {
    /// Throttled: wait this long.
    RateLimited(Duration),
    /// The request is wrong for good (400, 403, 404…): the platform's description.
    Refused { code: u16, description: String },
    /// The platform could not read the message's formatting: send the plain text.
    Unformattable(String),
    /// The message to edit is gone or too old: send a new one.
    EditTargetGone,
    /// Worth retrying (network, 5xx).
    Transient(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::RateLimited(wait) => write!(f, "rate limited for {}s", wait.as_secs()),
            ApiError::Refused { code, description } => write!(f, "refused ({code}): {description}"),
            ApiError::Unformattable(why) => write!(f, "formatting refused: {why}"),
            ApiError::EditTargetGone => write!(f, "the message to edit is gone"),
            ApiError::Transient(why) => write!(f, "{why}"),
        }
    }
}

/// What the pipeline needs from a messaging platform.
#[async_trait::async_trait]
trait Platform: Send + Sync {
    /// `telegram` or `whatsapp`: the channel name in tables, sessions and spans.
    fn channel(&self) -> &'static str;
    /// Cancelled when the platform is disconnected or replaced: its loops end.
    fn stop(&self) -> &CancellationToken;
    /// Chats that may talk without pairing.
    fn allowed(&self, chat_id: &str) -> bool;
    /// An answer as the platform shows it, in pieces it accepts.
    fn pieces(&self, markdown: &str) -> Vec<Piece>;
    /// Send one piece (`formatted` false: the plain text), with choices to offer if any;
    /// answers the platform's message id.
    async fn send(&self, chat_id: &str, body: &str, formatted: bool, buttons: &[Button]) -> Result<String, ApiError>;
    /// Close a button press the platform waits on (Telegram's spinning button).
    async fn acknowledge(&self, _reply_token: &str, _text: &str) {}
    /// Show that an answer is being written, where the platform can.
    async fn typing(&self, chat_id: &str);
    /// Show (`message_id` None) or update the live preview of an answer being written, as
    /// plain text; answers the preview's message id. Platforms without edits answer None.
    async fn preview(&self, _chat_id: &str, _message_id: Option<&str>, _text: &str) -> Option<String> {
        None
    }
    /// Replace a shown message (the preview) with the final text. Platforms that cannot
    /// edit answer `EditTargetGone`, so a new message is sent.
    async fn edit(&self, _chat_id: &str, _message_id: &str, _body: &str, _formatted: bool) -> Result<(), ApiError> {
        Err(ApiError::EditTargetGone)
    }
    /// A link that opens the chat with the pairing code filled in.
    async fn pairing_link(&self, code: &str) -> Option<String>;
}

/// Telegram, when configured and started.
struct TelegramChannel {
    api: Arc<BotApi>,
    /// Set in webhook mode: what Telegram must present.
    webhook_secret: Option<SecretString>,
    username: Mutex<Option<String>>,
    allowed: Vec<String>,
    stop: CancellationToken,
}

#[async_trait::async_trait]
impl Platform for TelegramChannel {
    fn channel(&self) -> &'static str {
        "telegram"
    }
    fn stop(&self) -> &CancellationToken {
        &self.stop
    }
    fn allowed(&self, chat_id: &str) -> bool {
        self.allowed.iter().any(|a| a == chat_id)
    }
    fn pieces(&self, markdown: &str) -> Vec<Piece> {
        format::telegram_pieces(markdown)
    }
    async fn send(&self, chat_id: &str, body: &str, formatted: bool, buttons: &[Button]) -> Result<String, ApiError> {
        self.api.send_message(chat_id, body, formatted, buttons).await
    }
    async fn acknowledge(&self, reply_token: &str, text: &str) {
        let _ = self.api.answer_callback(reply_token, text).await;
    }
    async fn typing(&self, chat_id: &str) {
        let _ = self.api.typing(chat_id).await;
    }
    async fn preview(&self, chat_id: &str, message_id: Option<&str>, text: &str) -> Option<String> {
        match message_id {
            None => self.api.send_message(chat_id, text, false, &[]).await.ok(),
            Some(id) => self.api.edit_message(chat_id, id, text, false).await.ok().map(|()| id.to_owned()),
        }
    }
    async fn edit(&self, chat_id: &str, message_id: &str, body: &str, formatted: bool) -> Result<(), ApiError> {
        self.api.edit_message(chat_id, message_id, body, formatted).await
    }
    async fn pairing_link(&self, code: &str) -> Option<String> {
        let cached = self.username.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let username = match cached {
            Some(name) => Some(name),
            None => {
                let name = self.api.username().await.ok().flatten();
                *self.username.lock().unwrap_or_else(|p| p.into_inner()) = name.clone();
                name
            }
        };
        username.map(|name| format!("https://t.me/{name}?start={code}"))
    }
}

/// WhatsApp Cloud API, when configured.
struct WhatsAppChannel {
    api: CloudApi,
    app_secret: SecretString,
    verify_token: SecretString,
    allowed: Vec<String>,
    /// The business number, digits only, for `wa.me` pairing links (once Meta told it).
    number: Mutex<Option<String>>,
    stop: CancellationToken,
}

#[async_trait::async_trait]
impl Platform for WhatsAppChannel {
    fn channel(&self) -> &'static str {
        "whatsapp"
    }
    fn stop(&self) -> &CancellationToken {
        &self.stop
    }
    fn allowed(&self, chat_id: &str) -> bool {
        self.allowed.iter().any(|a| a.trim_start_matches('+') == chat_id)
    }
    fn pieces(&self, markdown: &str) -> Vec<Piece> {
        format::whatsapp_pieces(markdown)
    }
    async fn send(&self, chat_id: &str, body: &str, _formatted: bool, buttons: &[Button]) -> Result<String, ApiError> {
        self.api.send_text(chat_id, body, buttons).await
    }
    async fn typing(&self, _chat_id: &str) {}
    async fn pairing_link(&self, code: &str) -> Option<String> {
        let number = self.number.lock().unwrap_or_else(|p| p.into_inner()).clone();
        number.map(|number| format!("https://wa.me/{number}?text={code}"))
    }
}

/// What handling one inbox message leaves for the dispatcher to settle with others.
enum Handled {
    /// Settled (answered, started, refused with a reply).
    Done,
    /// From a chat already told it is not paired (as the chat row says): to be marked
    /// refused, nothing sent.
    RefusedQuietly(i64, tables::ChatRow),
}

/// The channels of one agent runtime.
pub struct Channels {
    agent: Arc<Agent>,
    store: Store,
    /// The platforms running now. Connecting reads the keychain and calls the platforms'
    /// APIs, so it happens in the background and never delays start-up; until the first
    /// connect ends (`ready`) webhooks answer 503 and the platforms deliver again. The API
    /// swaps a platform in or out while Pryx runs (see `setup.rs`).
    connected: RwLock<Arc<Connected>>,
    /// The settings in use and how each platform is doing.
    setup: setup::Setup,
    /// Wakes the dispatcher (new inbox rows).
    inbox_wake: Notify,
    /// One per platform: wakes its sender.
    outbox_wake: HashMap<&'static str, Notify>,
    /// Platforms whose interrupted messages were answered (once per start).
    recovered: Mutex<HashSet<&'static str>>,
    /// The latest turn of each chat, for `/stop`.
    running: Mutex<HashMap<String, String>>,
    /// Deliveries waiting for the inbox writer.
    intake: mpsc::Sender<Delivery>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The platforms that run now.
#[derive(Default)]
struct Connected {
    /// The configured platforms had their first try at connecting.
    ready: bool,
    telegram: Option<Arc<TelegramChannel>>,
    whatsapp: Option<Arc<WhatsAppChannel>>,
}

impl Connected {
    /// Every running platform, for the loops that serve them all alike.
    fn platforms(&self) -> Vec<Arc<dyn Platform>> {
        let telegram = self.telegram.iter().map(|t| t.clone() as Arc<dyn Platform>);
        telegram.chain(self.whatsapp.iter().map(|w| w.clone() as Arc<dyn Platform>)).collect()
    }
}

/// The names of the channels, in the order the API lists them.
const CHANNELS: [&str; 2] = ["telegram", "whatsapp"];

impl Channels {
    /// Start the channels; the configured platforms connect in the background. A platform
    /// that cannot start (no token in the keychain, unreachable) shows as failed and is
    /// tried again every half minute; the agent runs regardless.
    pub fn start(agent: Arc<Agent>, config: Arc<Config>) -> Arc<Channels> {
        let (intake, intake_rx) = mpsc::channel(MAX_BATCH * 8);
        let channels = Arc::new(Channels {
            store: agent.store().clone(),
            agent,
            connected: RwLock::new(Arc::default()),
            setup: setup::Setup::new(&config),
            intake,
            inbox_wake: Notify::new(),
            outbox_wake: CHANNELS.into_iter().map(|c| (c, Notify::new())).collect(),
            recovered: Mutex::new(HashSet::new()),
            running: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let writer = channels.clone();
        channels.tasks.spawn(async move { writer.inbox_writer(intake_rx).await });
        let dispatcher = channels.clone();
        channels.tasks.spawn(async move { dispatcher.dispatch_loop().await });
        let connecting = channels.clone();
        channels.tasks.spawn(async move { connecting.connect_configured().await });
        channels
    }

    /// The platforms running now.
    fn connected(&self) -> Arc<Connected> {
        self.connected.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replace what runs (`change` edits a copy), stop the platforms that left and start
    /// the loops of those that came.
    fn install(self: &Arc<Self>, change: impl FnOnce(&mut Connected)) {
        let (old, new) = {
            let mut current = self.connected.write().unwrap_or_else(|p| p.into_inner());
            let old = current.clone();
            let mut next = Connected { ready: true, telegram: old.telegram.clone(), whatsapp: old.whatsapp.clone() };
            change(&mut next);
            *current = Arc::new(next);
            (old, current.clone())
        };
        let same = |a: &Arc<dyn Platform>, b: &Arc<dyn Platform>| std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b));
        let (old_platforms, new_platforms) = (old.platforms(), new.platforms());
        for gone in old_platforms.iter().filter(|p| !new_platforms.iter().any(|n| same(n, p))) {
            gone.stop().cancel();
        }
        for came in new_platforms.into_iter().filter(|p| !old_platforms.iter().any(|o| same(o, p))) {
            let runner = self.clone();
            let platform = came.clone();
            self.tasks.spawn(async move { runner.send_loop(platform).await });
            let runner = self.clone();
            self.tasks.spawn(async move {
                if let Err(e) = runner.recover_interrupted(came.channel()).await {
                    tracing::error!(target: "pryx::channels", "cannot recover interrupted messages: {e}");
                }
            });
        }
        if let Some(telegram) = &new.telegram {
            let running = old.telegram.as_ref().is_some_and(|t| Arc::ptr_eq(t, telegram));
            if !running && telegram.webhook_secret.is_none() {
                let runner = self.clone();
                let telegram = telegram.clone();
                self.tasks.spawn(async move { runner.poll_loop(telegram).await });
            }
        }
        // Messages that arrived while connecting.
        self.inbox_wake.notify_one();
        self.setup.changed();
    }

    /// Stop intake, dispatch and sending; queued replies stay queued for the next start.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.tasks.wait()).await;
    }

    // ---- intake ----

    /// Commit a message, then wake the dispatcher. `Ok(false)`: a redelivery, already in.
    /// Concurrent deliveries are committed together by the inbox writer (group commit).
    pub async fn accept(&self, message: &InboundMessage) -> Result<bool, ChannelError> {
        let (done, answer) = oneshot::channel();
        if self.intake.send((message.clone(), done)).await.is_err() {
            return Err(ChannelError::Stopped);
        }
        let new = answer.await.map_err(|_| ChannelError::Stopped)??;
        if new {
            self.inbox_wake.notify_one();
        }
        Ok(new)
    }

    /// Commits what arrives, as many at a time as are waiting: one transaction (and one disk
    /// sync) per batch, so a burst of deliveries costs one sync, not one each.
    async fn inbox_writer(self: Arc<Self>, mut intake: mpsc::Receiver<Delivery>) {
        let mut batch: Vec<Delivery> = Vec::with_capacity(MAX_BATCH);
        loop {
            batch.clear();
            tokio::select! {
                received = intake.recv_many(&mut batch, MAX_BATCH) => if received == 0 { return },
                _ = self.shutdown.cancelled() => return,
            }
            let messages: Vec<&InboundMessage> = batch.iter().map(|(message, _)| message).collect();
            match tables::accept_all(&self.store, &messages).await {
                Ok(new) => {
                    if new.contains(&true) {
                        self.setup.changed();
                    }
                    for ((_, done), new) in batch.drain(..).zip(new) {
                        let _ = done.send(Ok(new));
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    for (_, done) in batch.drain(..) {
                        let _ = done.send(Err(ChannelError::NotStored(why.clone())));
                    }
                }
            }
        }
    }

    /// `POST /webhooks/telegram`: check the secret, commit, answer.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        use axum::body::Bytes;
        use axum::http::HeaderMap;
        let channels = Arc::downgrade(self);
        let deliver =
            move |headers: HeaderMap, body: Bytes| {
                let channels = channels.clone();
                received("telegram", channels, move |channels| async move {
                    channels.telegram_delivery(&headers, &body).await
                })
            };
        axum::Router::new().route("/webhooks/telegram", axum::routing::post(deliver)).merge(self.whatsapp_router())
    }

    /// `GET /webhooks/whatsapp` (Meta's verification) and `POST` (signed deliveries).
    fn whatsapp_router(self: &Arc<Self>) -> axum::Router {
        use axum::body::Bytes;
        use axum::extract::Query;
        use axum::http::HeaderMap;
        use axum::response::IntoResponse;
        let channels = Arc::downgrade(self);
        let verify = move |Query(query): Query<HashMap<String, String>>| {
            let channels = channels.clone();
            async move {
                let Some(channels) = channels.upgrade() else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
                let connected = channels.connected();
                if !connected.ready {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                let Some(whatsapp) = connected.whatsapp.clone() else { return StatusCode::NOT_FOUND.into_response() };
                match whatsapp::verify(&query, &whatsapp.verify_token) {
                    Some(challenge) => (StatusCode::OK, challenge).into_response(),
                    None => {
                        tracing::warn!(target: "pryx::channels", "refused a WhatsApp verification with the wrong token");
                        StatusCode::FORBIDDEN.into_response()
                    }
                }
            }
        };
        let channels = Arc::downgrade(self);
        let deliver =
            move |headers: HeaderMap, body: Bytes| {
                let channels = channels.clone();
                received("whatsapp", channels, move |channels| async move {
                    channels.whatsapp_delivery(&headers, &body).await
                })
            };
        axum::Router::new().route("/webhooks/whatsapp", axum::routing::get(verify).post(deliver))
    }

    /// One Telegram webhook delivery: the secret checked, the update committed.
    async fn telegram_delivery(&self, headers: &axum::http::HeaderMap, body: &[u8]) -> Received {
        let connected = self.connected();
        if !connected.ready {
            return Received::status(StatusCode::SERVICE_UNAVAILABLE);
        }
        let Some(secret) = connected.telegram.as_ref().and_then(|t| t.webhook_secret.as_ref()) else {
            return Received::status(StatusCode::NOT_FOUND);
        };
        let presented = headers.get("x-telegram-bot-api-secret-token").and_then(|v| v.to_str().ok());
        if !telegram::secret_matches(secret, presented) {
            tracing::warn!(target: "pryx::channels", "refused a Telegram webhook without the right secret");
            return Received::with_outcome(StatusCode::UNAUTHORIZED, "unauthorized");
        }
        let update: telegram::Update = match serde_json::from_slice(body) {
            Ok(update) => update,
            Err(e) => {
                tracing::warn!(target: "pryx::channels", "refused a malformed Telegram update: {e}");
                return Received::with_outcome(StatusCode::BAD_REQUEST, "malformed");
            }
        };
        let Some(message) = telegram::inbound(&update) else { return Received::status(StatusCode::OK) };
        match self.accept(&message).await {
            Ok(new) => Received::with_outcome(StatusCode::OK, if new { "accepted" } else { "duplicate" }),
            // Not stored: Telegram must deliver it again.
            Err(e) => {
                tracing::error!(target: "pryx::channels", "cannot store a Telegram update: {e}");
                Received::status(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }

    /// One WhatsApp delivery: the signature checked, statuses recorded, messages committed.
    async fn whatsapp_delivery(&self, headers: &axum::http::HeaderMap, body: &[u8]) -> Received {
        let connected = self.connected();
        if !connected.ready {
            return Received::status(StatusCode::SERVICE_UNAVAILABLE);
        }
        let Some(whatsapp) = connected.whatsapp.clone() else { return Received::status(StatusCode::NOT_FOUND) };
        let signature = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
        // The signature covers the raw bytes: check it before parsing anything.
        if !whatsapp::signature_ok(&whatsapp.app_secret, body, signature) {
            tracing::warn!(target: "pryx::channels", "refused a WhatsApp delivery without a valid signature");
            return Received::with_outcome(StatusCode::UNAUTHORIZED, "unauthorized");
        }
        let parsed = serde_json::from_slice(body).map_err(|e| e.to_string()).and_then(|v| whatsapp::parse(&v));
        let (messages, statuses) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(target: "pryx::channels", "refused a malformed WhatsApp delivery: {e}");
                return Received::with_outcome(StatusCode::BAD_REQUEST, "malformed");
            }
        };
        for status in statuses {
            let recorded = tables::reply_status(
                &self.store,
                "whatsapp",
                &status.message_id,
                &status.status,
                status.error.as_deref(),
            )
            .await;
            if let Err(e) = recorded {
                tracing::error!(target: "pryx::channels", "cannot record a WhatsApp status: {e}");
                return Received::status(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
        let mut outcome = "ignored";
        for message in messages {
            match self.accept(&message).await {
                Ok(true) => outcome = "accepted",
                Ok(false) if outcome == "ignored" => outcome = "duplicate",
                Ok(false) => {}
                // Not stored: Meta must deliver it again.
                Err(e) => {
                    tracing::error!(target: "pryx::channels", "cannot store a WhatsApp message: {e}");
                    return Received::status(StatusCode::SERVICE_UNAVAILABLE);
                }
            }
        }
        Received::with_outcome(StatusCode::OK, outcome)
    }

    /// Long polling: updates are committed before the offset moves past them.
    /// Telegram's state follows how polling goes: connected while Telegram answers.
    async fn poll_loop(self: Arc<Self>, telegram: Arc<TelegramChannel>) {
        let mut offset: i64 =
            tables::cursor(&self.store, "telegram").await.ok().flatten().and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut backoff = Duration::from_secs(1);
        loop {
            let updates = tokio::select! {
                _ = telegram.stop.cancelled() => return,
                updates = telegram.api.updates(offset) => updates,
            };
            match updates {
                Ok(updates) => {
                    backoff = Duration::from_secs(1);
                    self.setup.reached("telegram", &telegram.stop);
                    for raw in updates {
                        // Replaced (another bot, webhook mode): the cursor is the new one's.
                        if telegram.stop.is_cancelled() {
                            return;
                        }
                        let Ok(update) = serde_json::from_value::<telegram::Update>(raw) else { continue };
                        if let Some(message) = telegram::inbound(&update) {
                            let span = receive_span("telegram", "poll");
                            let accepted = tracing::Instrument::instrument(self.accept(&message), span.clone()).await;
                            match accepted {
                                Ok(new) => {
                                    span.record("pryx.channel.outcome", if new { "accepted" } else { "duplicate" });
                                }
                                Err(e) => {
                                    tracing::error!(target: "pryx::channels", "cannot store a Telegram update: {e}");
                                    break;
                                }
                            }
                        }
                        offset = update.update_id + 1;
                        if let Err(e) = tables::set_cursor(&self.store, "telegram", &offset.to_string()).await {
                            tracing::error!(target: "pryx::channels", "cannot store the Telegram offset: {e}");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "pryx::channels", "Telegram polling failed: {e}; again in {}s", backoff.as_secs());
                    self.setup.unreachable("telegram", &telegram.stop, &e.to_string());
                    tokio::select! {
                        _ = telegram.stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    // ---- dispatch ----

    async fn dispatch_loop(self: Arc<Self>) {
        // Messages held back while the agent was paused go as soon as it resumes.
        let mut activity = self.agent.activity();
        loop {
            let pass_started = tokio::time::Instant::now();
            let paused_while_reading = activity.borrow().paused;
            for platform in self.connected().platforms() {
                match tables::inbox_with_status(&self.store, platform.channel(), "pending").await {
                    Ok(rows) => {
                        // A flood from strangers is settled a batch per transaction, not a
                        // disk sync per message; a crash before that leaves them pending,
                        // to be refused (quietly again) at the next start. What is known of
                        // a chat that was only refused stays known for the pass.
                        let mut refused = Vec::new();
                        let mut known: HashMap<String, tables::ChatRow> = HashMap::new();
                        for row in rows {
                            let chat_id = row.message.chat_id.clone();
                            let chat = known.remove(&chat_id);
                            match self.handle(&platform, row, chat).await {
                                Ok(Handled::Done) => {}
                                Ok(Handled::RefusedQuietly(id, chat)) => {
                                    refused.push(id);
                                    known.insert(chat_id, chat);
                                }
                                Err(e) => tracing::error!(target: "pryx::channels", "cannot handle a message: {e}"),
                            }
                        }
                        if let Err(e) = tables::mark_all(&self.store, &refused, "refused", NOT_PAIRED).await {
                            tracing::error!(target: "pryx::channels", "cannot record refused messages: {e}");
                        }
                    }
                    Err(e) => tracing::error!(target: "pryx::channels", "cannot read the inbox: {e}"),
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.inbox_wake.notified() => {}
                _ = wait_until_resumed(&mut activity, paused_while_reading) => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            // Under a flood, passes come at most every `DISPATCH_PACE`, so each takes what
            // arrived meanwhile in one read and one write instead of one per commit of the
            // inbox (which would also take the CPU the webhooks' acknowledgements need).
            tokio::time::sleep_until(pass_started + DISPATCH_PACE).await;
        }
    }

    fn platform(&self, channel: &str) -> Option<Arc<dyn Platform>> {
        self.connected().platforms().into_iter().find(|p| p.channel() == channel)
    }

    async fn reply(&self, row: &InboxRow, text: &str) -> Result<(), StoreError> {
        self.answer(row, text, None).await
    }

    /// Queue the answer to a message, formatted and split for its platform; the first piece
    /// replaces the live preview, if one is shown.
    async fn answer(&self, row: &InboxRow, text: &str, replaces: Option<&str>) -> Result<(), StoreError> {
        let (channel, chat) = (row.message.channel, &row.message.chat_id);
        let Some(platform) = self.platform(channel) else { return Ok(()) };
        tables::queue_reply(&self.store, channel, chat, Some(row.id), &platform.pieces(text), None, replaces).await?;
        self.wake_sender(channel);
        Ok(())
    }

    /// Handle one inbox message; `chat` is what is known of its chat already, if anything.
    async fn handle(
        self: &Arc<Self>,
        platform: &Arc<dyn Platform>,
        row: InboxRow,
        chat: Option<tables::ChatRow>,
    ) -> Result<Handled, StoreError> {
        let message = &row.message;
        let chat = match chat {
            Some(chat) => chat,
            None => tables::chat(&self.store, message.channel, &message.chat_id).await?,
        };
        let (command, argument) = match message.kind {
            Kind::Command => {
                let mut words = message.text.splitn(2, char::is_whitespace);
                // `/start@pryx_bot` in groups names the bot.
                let command = words.next().unwrap_or("").split('@').next().unwrap_or("").to_ascii_lowercase();
                (Some(command), words.next().unwrap_or("").trim().to_owned())
            }
            _ => (None, String::new()),
        };
        if !chat.paired && !platform.allowed(&message.chat_id) {
            // `/start CODE` (Telegram's deep link), or the code on its own (WhatsApp).
            let code = match (message.kind, command.as_deref()) {
                (Kind::Command, Some("/start")) => argument.to_ascii_uppercase(),
                (Kind::Text, _) => message.text.trim().to_ascii_uppercase(),
                _ => String::new(),
            };
            if (8..=16).contains(&code.len())
                && code.bytes().all(|b| b.is_ascii_alphanumeric())
                && tables::redeem_pairing_code(&self.store, message.channel, &code, &message.chat_id).await?
            {
                tracing::info!(target: "pryx::channels", chat = %message.chat_id, "a chat was paired");
                self.setup.changed();
                let welcome = format!("Paired: this chat now talks to your Pryx.\n\n{HELP}");
                return self.reply(&row, &welcome).await.map(|()| Handled::Done);
            }
            // One polite refusal per chat; the rest is recorded and dropped.
            if chat.refused {
                return Ok(Handled::RefusedQuietly(row.id, chat));
            }
            tracing::warn!(target: "pryx::channels", chat = %message.chat_id, "refused a message from a chat that is not paired");
            tables::mark_refused(&self.store, message.channel, &message.chat_id).await?;
            tables::mark(&self.store, row.id, "refused", None, Some(NOT_PAIRED)).await?;
            tables::queue_reply(
                &self.store,
                message.channel,
                &message.chat_id,
                None,
                &platform.pieces(REFUSAL),
                None,
                None,
            )
            .await?;
            self.wake_sender(row.message.channel);
            return Ok(Handled::Done);
        }
        let handled = match (message.kind, command.as_deref()) {
            (Kind::Unsupported, _) => {
                let text =
                    format!("I can only read text for now, so I cannot use {}. Please write it out.", message.text);
                self.reply(&row, &text).await
            }
            (Kind::Command, Some("/start" | "/help")) => self.reply(&row, HELP).await,
            (Kind::Command, Some("/new")) => {
                let session = self.new_session(message).await?;
                tables::set_chat_session(&self.store, message.channel, &message.chat_id, &session).await?;
                self.reply(&row, "Started a new conversation.").await
            }
            (Kind::Command, Some("/stop")) => {
                let turn = self.running.lock().unwrap_or_else(|p| p.into_inner()).get(&message.chat_id).cloned();
                let stopped = match turn {
                    Some(turn) => self.agent.cancel(&turn).await.unwrap_or(false),
                    None => false,
                };
                self.reply(&row, if stopped { "Stopped." } else { "Nothing is running." }).await
            }
            (Kind::Command, _) => self.reply(&row, &format!("I do not know that command.\n\n{HELP}")).await,
            (Kind::Button, _) => self.pressed(platform, &row, chat.session_id.as_deref()).await,
            (Kind::Text, _) => self.start_turn(row, chat.session_id).await,
        };
        handled.map(|()| Handled::Done)
    }

    async fn new_session(&self, message: &InboundMessage) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let who = if message.sender_name.is_empty() { "chat".to_owned() } else { message.sender_name.clone() };
        let platform = if message.channel == "whatsapp" { "WhatsApp" } else { "Telegram" };
        self.store.create_session(&id, &format!("{platform} · {who}"), message.channel).await?;
        Ok(id)
    }

    async fn start_turn(self: &Arc<Self>, row: InboxRow, session: Option<String>) -> Result<(), StoreError> {
        let message = &row.message;
        let session = match session {
            Some(session) if self.store.session(&session).await.is_ok() => session,
            _ => {
                let session = self.new_session(message).await?;
                tables::set_chat_session(&self.store, message.channel, &message.chat_id, &session).await?;
                session
            }
        };
        let started = match self.agent.send(&session, message.text.clone()).await {
            Ok(started) => started,
            // The message waits in the inbox until the owner resumes the agent.
            Err(crate::agent::AgentError::Paused) => return Ok(()),
            Err(e) => return self.reply(&row, &format!("Sorry, I could not take that: {e}")).await,
        };
        tables::mark(&self.store, row.id, "started", Some(&started.turn_id), None).await?;
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(message.chat_id.clone(), started.turn_id.clone());
        let channels = self.clone();
        self.tasks.spawn(async move { channels.follow(row, started.turn_id).await });
        Ok(())
    }

    /// Wait for a turn's end, keeping "typing…" up, and queue its answer.
    async fn follow(self: Arc<Self>, row: InboxRow, turn_id: String) {
        let (tx, mut rx) = mpsc::channel(256);
        let agent = self.agent.clone();
        let follow_id = turn_id.clone();
        tokio::spawn(async move { agent.follow_turn(&follow_id, tx).await });
        let mut typing = tokio::time::interval(TYPING_EVERY);
        // The answer so far, shown by editing one message at most once a second.
        let mut preview_tick = tokio::time::interval(PREVIEW_EVERY);
        let (mut draft, mut shown, mut preview): (String, usize, Option<String>) = (String::new(), 0, None);
        let end = loop {
            tokio::select! {
                envelope = rx.recv() => match envelope {
                    Some(envelope) if envelope.event.is_terminal() => break Some(envelope.event),
                    Some(envelope) => match envelope.event {
                        TurnEvent::Delta { text } => draft.push_str(&text),
                        // A new step starts a new text; the preview follows it.
                        TurnEvent::ToolCall { .. } => draft.clear(),
                        TurnEvent::ApprovalRequested { approval } => {
                            if let Err(e) = self.ask_approval(&row, &approval).await {
                                tracing::error!(target: "pryx::channels", "cannot ask for an approval: {e}");
                            }
                        }
                        _ => {}
                    },
                    None => break None,
                },
                _ = preview_tick.tick() => {
                    let text = draft.trim();
                    if !text.is_empty() && draft.len() != shown && text.chars().count() < format::MESSAGE_LIMIT - 10 {
                        if let Some(platform) = self.platform(row.message.channel) {
                            let id = platform.preview(&row.message.chat_id, preview.as_deref(), &format!("{text} …")).await;
                            if preview.is_none() {
                                if let Some(id) = &id {
                                    // Kept, so a restart can replace a preview it cut short.
                                    let _ = tables::set_preview(&self.store, row.id, id).await;
                                }
                            }
                            preview = id.or(preview);
                            shown = draft.len();
                        }
                    }
                }
                _ = typing.tick() => {
                    if let Some(platform) = self.platform(row.message.channel) {
                        platform.typing(&row.message.chat_id).await;
                    }
                }
                _ = self.shutdown.cancelled() => return,
            }
        };
        let text = match end {
            Some(TurnEvent::Done { status: TurnStatus::Completed, message_id: Some(id) }) => {
                match self.store.message(id).await {
                    Ok(message) if !message.content.trim().is_empty() => message.content,
                    _ => "(I have nothing to say to that.)".to_owned(),
                }
            }
            Some(TurnEvent::Done { status: TurnStatus::Cancelled, .. }) => "(stopped)".to_owned(),
            Some(TurnEvent::Done { .. }) | None => {
                "I was interrupted while answering this; please send it again.".into()
            }
            Some(TurnEvent::Error { message, .. }) => format!("Sorry, that failed: {message}"),
            Some(_) => return,
        };
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.get(&row.message.chat_id) == Some(&turn_id) {
                running.remove(&row.message.chat_id);
            }
        }
        if let Err(e) = self.answer(&row, &text, preview.as_deref()).await {
            tracing::error!(target: "pryx::channels", "cannot queue an answer: {e}");
        }
    }

    /// Ask the chat to approve a tool call, with Allow / Deny buttons.
    async fn ask_approval(&self, row: &InboxRow, approval: &pryx_api::Approval) -> Result<(), StoreError> {
        let Some(platform) = self.platform(row.message.channel) else { return Ok(()) };
        let text = format!("Pryx asks to {} (`{}`). Allow it?", approval.summary, approval.tool);
        let buttons = [("once", "Allow once"), ("session", "Allow in this chat"), ("deny", "Deny")]
            .map(|(decision, title)| Button { id: format!("ap:{}:{decision}", approval.id), title: title.into() });
        let buttons = serde_json::to_string(&buttons).unwrap_or_default();
        let pieces = platform.pieces(&text);
        tables::queue_reply(
            &self.store,
            row.message.channel,
            &row.message.chat_id,
            None,
            &pieces,
            Some(&buttons),
            None,
        )
        .await?;
        self.wake_sender(row.message.channel);
        Ok(())
    }

    /// A button press: today only approval answers (`ap:ID:once|session|deny`), and only for
    /// approvals of this chat's own session.
    async fn pressed(
        &self,
        platform: &Arc<dyn Platform>,
        row: &InboxRow,
        session: Option<&str>,
    ) -> Result<(), StoreError> {
        let answer = match row.message.text.split(':').collect::<Vec<_>>()[..] {
            ["ap", id, decision] => {
                let decision = match decision {
                    "once" => Some(ApprovalDecision::AllowOnce),
                    "session" => Some(ApprovalDecision::AllowForSession),
                    "deny" => Some(ApprovalDecision::Deny),
                    _ => None,
                };
                let approval = self.agent.approval(id).await.ok();
                match (decision, approval) {
                    (Some(decision), Some(approval)) if Some(approval.session_id.as_str()) == session => {
                        let by = format!("{}:{}", row.message.channel, row.message.sender_id);
                        match self.agent.answer_approval(id, decision, None, Some(by)).await {
                            Ok(_) if decision == ApprovalDecision::Deny => "Denied.".to_owned(),
                            Ok(_) => "Allowed.".to_owned(),
                            Err(e) => format!("Not taken: {e}"),
                        }
                    }
                    _ => "That request is not one of this chat's.".to_owned(),
                }
            }
            _ => "That button does nothing any more.".to_owned(),
        };
        if let Some(token) = &row.message.reply_token {
            platform.acknowledge(token, &answer).await;
        }
        self.reply(row, &answer).await
    }

    /// Messages whose turn was under way when Pryx stopped: tell their chats, once.
    /// Once per start and platform: turns that run now are not interrupted ones.
    async fn recover_interrupted(&self, channel: &'static str) -> Result<(), StoreError> {
        if !self.recovered.lock().unwrap_or_else(|p| p.into_inner()).insert(channel) {
            return Ok(());
        }
        for row in tables::inbox_with_status(&self.store, channel, "started").await? {
            let text = "I was interrupted while answering this (Pryx restarted); please send it again.";
            self.answer(&row, text, row.preview_message_id.as_deref()).await?;
        }
        Ok(())
    }

    // ---- outbox ----

    async fn send_loop(self: Arc<Self>, platform: Arc<dyn Platform>) {
        let channel = platform.channel();
        loop {
            let due = tables::due_replies(&self.store, channel, 32).await.unwrap_or_else(|e| {
                tracing::error!(target: "pryx::channels", "cannot read the outbox: {e}");
                Vec::new()
            });
            for reply in due {
                self.send_one(platform.as_ref(), reply).await;
            }
            let wait = match tables::next_due(&self.store, channel).await {
                Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, 60_000) as u64),
                _ => Duration::from_secs(60),
            };
            let Some(wake) = self.outbox_wake.get(channel) else { return };
            tokio::select! {
                _ = platform.stop().cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn wake_sender(&self, channel: &str) {
        if let Some(wake) = self.outbox_wake.get(channel) {
            wake.notify_one();
        }
    }

    async fn send_one(&self, platform: &dyn Platform, reply: tables::OutboxRow) {
        let span = tracing::info_span!(
            target: crate::telemetry::SPAN_TARGET,
            "channel.send",
            messaging.system = platform.channel(),
            messaging.operation.type = "send",
            pryx.channel.attempt = reply.attempts + 1,
            pryx.channel.outcome = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let outcome = tracing::Instrument::instrument(self.deliver(platform, reply), span.clone()).await;
        span.record("pryx.channel.outcome", outcome);
        if outcome != "sent" {
            span.record("error.type", outcome);
        }
    }

    /// One delivery attempt; answers its outcome (`sent`, `retry`, `failed`).
    async fn deliver(&self, platform: &dyn Platform, reply: tables::OutboxRow) -> &'static str {
        let buttons: Vec<Button> =
            reply.buttons.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
        let mut sent = send_or_edit(platform, &reply, &reply.body, true, &buttons).await;
        if let Err(ApiError::Unformattable(_)) = &sent {
            // The words matter more than the looks.
            sent = send_or_edit(platform, &reply, &reply.plain, false, &buttons).await;
        }
        let (outcome, result) = match sent {
            Ok(message_id) => {
                self.setup.reached(platform.channel(), platform.stop());
                ("sent", tables::reply_sent(&self.store, reply.id, &message_id).await)
            }
            Err(ApiError::RateLimited(wait)) => {
                let at = now_ms() + wait.as_millis() as i64;
                ("retry", tables::reply_retry(&self.store, reply.id, at, "rate limited").await)
            }
            Err(ApiError::Transient(why)) if reply.attempts + 1 < MAX_SEND_ATTEMPTS => {
                let backoff = 1000i64 << reply.attempts.min(6);
                ("retry", tables::reply_retry(&self.store, reply.id, now_ms() + backoff, &why).await)
            }
            Err(e) => {
                tracing::warn!(target: "pryx::channels", chat = %reply.chat_id, "a reply could not be delivered: {e}");
                ("failed", tables::reply_failed(&self.store, reply.id, &e.to_string()).await)
            }
        };
        if let Err(e) = result {
            tracing::error!(target: "pryx::channels", "cannot record a reply's delivery: {e}");
        }
        if outcome == "failed" {
            self.setup.changed();
        }
        outcome
    }

    // ---- what the API asks ----

    pub async fn pairing_code(&self, channel: &str) -> Result<PairingCode, ChannelError> {
        if !self.connected().ready {
            return Err(ChannelError::Connecting);
        }
        let platform = self.platform(channel).ok_or_else(|| ChannelError::NotConfigured(channel.to_owned()))?;
        // 8 characters from an alphabet without look-alikes: about 40 bits, for 10 minutes.
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let code = setup::random_token(ALPHABET, 8);
        let expires_at = now_ms() + PAIRING_LIFETIME_MS;
        tables::add_pairing_code(&self.store, platform.channel(), &code, expires_at).await?;
        let link = platform.pairing_link(&code).await;
        let qr = link.as_deref().and_then(qr::encode);
        Ok(PairingCode { channel: platform.channel().into(), code, link, qr, expires_at })
    }

    pub async fn replies(&self, channel: &str, limit: u32) -> Result<Vec<ChannelReply>, ChannelError> {
        Ok(tables::replies(&self.store, channel, i64::from(limit.clamp(1, 1000))).await?)
    }
}

/// Send a reply, or, when it is the final answer to a live preview, edit the preview into
/// it (a new message if the preview is gone).
async fn send_or_edit(
    platform: &dyn Platform,
    reply: &tables::OutboxRow,
    body: &str,
    formatted: bool,
    buttons: &[Button],
) -> Result<String, ApiError> {
    if let Some(id) = &reply.edit_message_id {
        match platform.edit(&reply.chat_id, id, body, formatted).await {
            Ok(()) => return Ok(id.clone()),
            Err(ApiError::EditTargetGone) => {}
            Err(e) => return Err(e),
        }
    }
    platform.send(&reply.chat_id, body, formatted, buttons).await
}

/// The span of one inbound delivery (`via`: `webhook` or `poll`). No chat ids or text.
/// Wait until the agent goes from paused to running; `was_paused` is how it was when the
/// inbox was last read (a resume since then returns at once).
async fn wait_until_resumed(activity: &mut tokio::sync::watch::Receiver<pryx_api::Activity>, mut was_paused: bool) {
    loop {
        let paused = activity.borrow_and_update().paused;
        if was_paused && !paused {
            return;
        }
        was_paused = paused;
        if activity.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// How one webhook delivery went: the status to answer and, for its span, what happened.
struct Received {
    status: StatusCode,
    /// `pryx.channel.outcome`; `None` leaves the span's default (`ignored`).
    outcome: Option<&'static str>,
}

impl Received {
    fn status(status: StatusCode) -> Received {
        Received { status, outcome: None }
    }

    fn with_outcome(status: StatusCode, outcome: &'static str) -> Received {
        Received { status, outcome: Some(outcome) }
    }
}

/// Answer one webhook delivery of `system` inside its `channel.receive` span, which gets
/// the outcome and the status answered. The span is not entered: nothing inside opens a
/// span, so entering it at every poll would be work for nothing.
async fn received<F, Handled>(system: &'static str, channels: std::sync::Weak<Channels>, handle: F) -> StatusCode
where
    F: FnOnce(Arc<Channels>) -> Handled,
    Handled: std::future::Future<Output = Received>,
{
    let span = receive_span(system, "webhook");
    let received = match channels.upgrade() {
        Some(channels) => handle(channels).await,
        None => Received::status(StatusCode::SERVICE_UNAVAILABLE),
    };
    if let Some(outcome) = received.outcome {
        span.record("pryx.channel.outcome", outcome);
    }
    span.record("http.response.status_code", received.status.as_u16());
    received.status
}

fn receive_span(system: &'static str, via: &'static str) -> tracing::Span {
    tracing::info_span!(
        target: crate::telemetry::SPAN_TARGET,
        "channel.receive",
        messaging.system = system,
        messaging.operation.type = "receive",
        pryx.channel.via = via,
        pryx.channel.outcome = "ignored",
        http.response.status_code = tracing::field::Empty,
    )
}
