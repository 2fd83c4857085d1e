//! Messaging channels: the owner talks to Pryx from Telegram and WhatsApp.
//!
//! One pipeline for every platform, a file per stage:
//! 1. **Intake** (`inbox.rs`): a webhook or long poll turns a platform payload into an
//!    [`InboundMessage`] and commits it to the inbox, deduplicated by the platform's id,
//!    before the platform is answered. Nothing slow happens here, so a busy model never
//!    delays an ack.
//! 2. **Dispatch** (`dispatch.rs`) takes inbox rows in order: refusals for strangers,
//!    pairing, commands, and turns (the agent keeps one session's turns in order), each
//!    followed until its answer.
//! 3. **Outbox** (`outbox.rs`): the answer, formatted and split for the platform, is queued
//!    in the same transaction that marks the message answered, and a sender delivers it
//!    with retries.
//!
//! The platforms plug in through [`platform::Platform`] (`telegram.rs`, `whatsapp.rs`: wire
//! formats and API clients); `setup.rs` connects and disconnects them; `tables.rs` holds
//! all SQL of the channel tables; `format.rs` turns Markdown into each platform's markup.
//!
//! A crash between 2 and 3 leaves the message `started`; at the next start its chat is told
//! the answer was interrupted (once), so every message is answered exactly once.

mod dispatch;
pub mod format;
mod inbox;
mod outbox;
mod platform;
pub mod qr;
mod setup;
pub mod tables;
pub mod telegram;
pub mod whatsapp;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use pryx_api::{ChannelName, ChannelReply, PairingCode};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::Agent;
use crate::config::edit::EditError;
use crate::config::Config;
use crate::store::{now_ms, Store, StoreError};
use inbox::{Delivery, MAX_BATCH};
use platform::{Platform, TelegramChannel, WhatsAppChannel};

/// How long a pairing code works.
const PAIRING_LIFETIME_MS: i64 = 10 * 60 * 1000;

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
    outbox_wake: HashMap<ChannelName, Notify>,
    /// Platforms whose interrupted messages were answered (once per start).
    recovered: Mutex<HashSet<ChannelName>>,
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
            outbox_wake: ChannelName::ALL.into_iter().map(|c| (c, Notify::new())).collect(),
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

    // ---- what the API asks ----

    pub async fn pairing_code(&self, channel: ChannelName) -> Result<PairingCode, ChannelError> {
        if !self.connected().ready {
            return Err(ChannelError::Connecting);
        }
        let platform = self.platform(channel).ok_or_else(|| ChannelError::NotConfigured(channel.to_string()))?;
        // 8 characters from an alphabet without look-alikes: about 40 bits, for 10 minutes.
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let code = setup::random_token(ALPHABET, 8);
        let expires_at = now_ms() + PAIRING_LIFETIME_MS;
        tables::add_pairing_code(&self.store, platform.channel(), &code, expires_at).await?;
        let link = platform.pairing_link(&code).await;
        let qr = link.as_deref().and_then(qr::encode);
        Ok(PairingCode { channel: platform.channel(), code, link, qr, expires_at })
    }

    pub async fn replies(&self, channel: ChannelName, limit: u32) -> Result<Vec<ChannelReply>, ChannelError> {
        Ok(tables::replies(&self.store, channel, i64::from(limit.clamp(1, 1000))).await?)
    }
}
