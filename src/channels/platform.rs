//! The platform adapters' common shape: what the pipeline needs from a messaging platform
//! ([`Platform`]), and Telegram's and WhatsApp's answers to it over their API clients
//! (`telegram.rs`, `whatsapp.rs` hold the wire formats).

use std::sync::{Arc, Mutex};

use pryx_api::ChannelName;
use tokio_util::sync::CancellationToken;

use super::format::{self, Piece};
use super::telegram::BotApi;
use super::whatsapp::CloudApi;
use super::{ApiError, Button};
use crate::secrets::SecretString;

/// What the pipeline needs from a messaging platform.
#[async_trait::async_trait]
pub(super) trait Platform: Send + Sync {
    /// Which platform this is (its name is the one in tables, sessions and spans).
    fn channel(&self) -> ChannelName;
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
pub(super) struct TelegramChannel {
    pub(super) api: Arc<BotApi>,
    /// Set in webhook mode: what Telegram must present.
    pub(super) webhook_secret: Option<SecretString>,
    pub(super) username: Mutex<Option<String>>,
    pub(super) allowed: Vec<String>,
    pub(super) stop: CancellationToken,
}

#[async_trait::async_trait]
impl Platform for TelegramChannel {
    fn channel(&self) -> ChannelName {
        ChannelName::Telegram
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
pub(super) struct WhatsAppChannel {
    pub(super) api: CloudApi,
    pub(super) app_secret: SecretString,
    pub(super) verify_token: SecretString,
    pub(super) allowed: Vec<String>,
    /// The business number, digits only, for `wa.me` pairing links (once Meta told it).
    pub(super) number: Mutex<Option<String>>,
    pub(super) stop: CancellationToken,
}

#[async_trait::async_trait]
impl Platform for WhatsAppChannel {
    fn channel(&self) -> ChannelName {
        ChannelName::Whatsapp
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
