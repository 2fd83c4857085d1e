//! Messaging channels (Telegram, WhatsApp): their status, pairing codes and replies.

use serde::{Deserialize, Serialize};

/// A messaging platform Pryx connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelName {
    Telegram,
    Whatsapp,
}

impl ChannelName {
    /// Both, in the order the API lists them.
    pub const ALL: [ChannelName; 2] = [ChannelName::Telegram, ChannelName::Whatsapp];

    /// The wire name (`telegram`, `whatsapp`), also the name in tables and spans.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelName::Telegram => "telegram",
            ChannelName::Whatsapp => "whatsapp",
        }
    }
}

/// How Telegram messages reach Pryx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TelegramMode {
    /// Pryx asks Telegram for messages (no public address needed).
    Polling,
    /// Telegram posts to `public_url/webhooks/telegram`.
    Webhook,
}

impl TelegramMode {
    /// The wire name (`polling`, `webhook`).
    pub fn as_str(self) -> &'static str {
        match self {
            TelegramMode::Polling => "polling",
            TelegramMode::Webhook => "webhook",
        }
    }
}

/// Where a reply is in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyStatus {
    /// Waiting to be sent (or to be tried again).
    Pending,
    Sent,
    /// Given up (the platform refused it, or it ran out of attempts).
    Failed,
}

impl ReplyStatus {
    /// The wire name (`pending`, `sent`, `failed`), also the stored one.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyStatus::Pending => "pending",
            ReplyStatus::Sent => "sent",
            ReplyStatus::Failed => "failed",
        }
    }
}

/// A one-time code that pairs the owner's chat with Pryx (`/start CODE` on Telegram).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingCode {
    pub channel: ChannelName,
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
    pub channel: ChannelName,
    pub state: ChannelState,
    /// Why the channel failed, in words.
    pub error: Option<String>,
    /// Who the owner talks to: `@bot_username`, or WhatsApp's display phone number.
    pub account: Option<String>,
    /// Telegram only.
    pub mode: Option<TelegramMode>,
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
    pub status: ReplyStatus,
    pub attempts: i64,
    /// The platform's error for the last failed attempt.
    pub error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// What the platform reported later (WhatsApp: `sent`, `delivered`, `read`, `failed`).
    pub platform_status: Option<String>,
}

/// Connecting Telegram, or changing how it runs (`channel.telegram_set`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSetup {
    /// BotFather's token; left out, the saved one is kept.
    #[serde(default)]
    pub bot_token: Option<String>,
    pub mode: TelegramMode,
    /// The public `https` base URL (webhook mode).
    #[serde(default)]
    pub public_url: Option<String>,
}

/// Connecting WhatsApp's Cloud API (`channel.whatsapp_set`). Tokens left out keep the saved
/// values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppSetup {
    pub phone_number_id: String,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub app_secret: Option<String>,
    #[serde(default)]
    pub verify_token: Option<String>,
    /// The public `https` base URL Meta posts to.
    #[serde(default)]
    pub public_url: Option<String>,
}
