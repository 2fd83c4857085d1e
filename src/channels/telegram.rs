//! Telegram: the Bot API wire format, the webhook, long polling, and sending replies.
//!
//! Inbound, both modes end in the same place: each update becomes an [`InboundMessage`]
//! committed to the inbox (deduplicated by `update_id`) before Telegram is answered — the
//! webhook returns 200 only after the commit, and polling advances its offset only after it.
//! Outbound, replies leave from the outbox one chat at a time, in order, as HTML; Telegram's
//! 429 `retry_after` is honoured, other failures back off, a reply refused for its
//! formatting is sent again as plain text, and permanent refusals are recorded with
//! Telegram's own description. The bot token is part of every Bot API URL, so URLs are
//! never logged and errors are stripped of them.

use pryx_api::ChannelName;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::tables::{InboundMessage, Kind};
use super::ApiError;
use crate::secrets::SecretString;

/// Longest a long poll waits for updates, seconds (Telegram's recommended range).
const POLL_TIMEOUT_SECS: u64 = 25;

/// Telegram's envelope: `{ok, result}` or `{ok: false, error_code, description, parameters}`.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    description: Option<String>,
    error_code: Option<u16>,
    parameters: Option<ResponseParameters>,
}

#[derive(Debug, Deserialize)]
struct ResponseParameters {
    retry_after: Option<u64>,
}

/// An update (the fields Pryx reads; Telegram sends many more).
#[derive(Debug, Deserialize)]
pub struct Update {
    pub update_id: i64,
    pub message: Option<TgMessage>,
    pub callback_query: Option<TgCallback>,
}

/// A press on an inline keyboard button.
#[derive(Debug, Deserialize)]
pub struct TgCallback {
    pub id: String,
    pub from: TgUser,
    pub message: Option<TgCallbackMessage>,
    pub data: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct TgCallbackMessage {
    pub chat: TgChat,
}

#[derive(Debug, Deserialize)]
pub struct TgMessage {
    pub from: Option<TgUser>,
    pub chat: TgChat,
    pub text: Option<String>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct TgUser {
    pub id: i64,
    pub first_name: String,
    pub username: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct TgChat {
    pub id: i64,
}

#[derive(Debug, Deserialize)]
struct SentMessage {
    message_id: i64,
}

#[derive(Debug, Deserialize)]
struct BotUser {
    username: Option<String>,
}

/// What an update means to Pryx: a message for the inbox, or nothing to handle.
pub fn inbound(update: &Update) -> Option<InboundMessage> {
    if let Some(callback) = &update.callback_query {
        let chat = callback.message.as_ref()?.chat.id;
        return Some(InboundMessage {
            channel: ChannelName::Telegram,
            platform_id: update.update_id.to_string(),
            chat_id: chat.to_string(),
            sender_id: callback.from.id.to_string(),
            sender_name: callback.from.username.clone().unwrap_or_else(|| callback.from.first_name.clone()),
            kind: Kind::Button,
            text: callback.data.clone().unwrap_or_default(),
            reply_token: Some(callback.id.clone()),
        });
    }
    // Edits are not answered again (documented): the answer to the original stands, and a
    // new message is the way to ask again.
    let message = update.message.as_ref()?;
    let sender = message.from.as_ref();
    let (kind, text) = match (&message.text, described_attachment(message)) {
        (Some(text), _) if text.starts_with('/') => (Kind::Command, text.clone()),
        (Some(text), _) => (Kind::Text, text.clone()),
        (None, Some(what)) => (Kind::Unsupported, what.to_owned()),
        (None, None) => (Kind::Unsupported, "this kind of message".to_owned()),
    };
    Some(InboundMessage {
        channel: ChannelName::Telegram,
        platform_id: update.update_id.to_string(),
        chat_id: message.chat.id.to_string(),
        sender_id: sender.map(|u| u.id.to_string()).unwrap_or_default(),
        sender_name: sender.map(|u| u.username.clone().unwrap_or_else(|| u.first_name.clone())).unwrap_or_default(),
        kind,
        text,
        reply_token: None,
    })
}

/// Words for a message that carries something other than text.
fn described_attachment(message: &TgMessage) -> Option<&'static str> {
    const KINDS: &[(&str, &str)] = &[
        ("sticker", "a sticker"),
        ("voice", "a voice message"),
        ("audio", "an audio file"),
        ("video", "a video"),
        ("video_note", "a video message"),
        ("photo", "a photo"),
        ("document", "a file"),
        ("animation", "an animation"),
        ("location", "a location"),
        ("contact", "a contact"),
        ("poll", "a poll"),
    ];
    KINDS.iter().find(|(key, _)| message.other.contains_key(*key)).map(|(_, what)| *what)
}

/// Whether a webhook request carries the configured secret (constant time).
pub fn secret_matches(expected: &SecretString, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| p.as_bytes().ct_eq(expected.expose().as_bytes()).into())
}

/// A Bot API client for one bot.
pub struct BotApi {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl BotApi {
    pub fn new(api_base: &str, token: SecretString) -> Arc<BotApi> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(POLL_TIMEOUT_SECS + 15))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Arc::new(BotApi { http, base: api_base.trim_end_matches('/').to_owned(), token })
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, method: &str, body: Value) -> Result<T, ApiError> {
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose());
        // reqwest errors name the URL, which holds the token: strip it.
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| ApiError::Transient(format!("cannot reach Telegram: {}", e.without_url())))?;
        let status = response.status();
        let envelope: Envelope<T> = response.json().await.map_err(|e| {
            ApiError::Transient(format!("Telegram answered {status} with an unreadable body: {}", e.without_url()))
        })?;
        match (envelope.ok, envelope.result) {
            (true, Some(result)) => Ok(result),
            _ => {
                let code = envelope.error_code.unwrap_or(status.as_u16());
                let description = envelope.description.unwrap_or_else(|| status.to_string());
                Err(match (code, envelope.parameters.and_then(|p| p.retry_after)) {
                    (429, retry_after) => ApiError::RateLimited(Duration::from_secs(retry_after.unwrap_or(1).max(1))),
                    (500..=599, _) => ApiError::Transient(format!("Telegram failed ({code}): {description}")),
                    // Telegram's wording for HTML it cannot read, and for edits of messages
                    // that are gone.
                    (400, _) if description.contains("can't parse entities") => ApiError::Unformattable(description),
                    (400, _)
                        if description.contains("message to edit not found")
                            || description.contains("message can't be edited") =>
                    {
                        ApiError::EditTargetGone
                    }
                    _ => ApiError::Refused { code, description },
                })
            }
        }
    }

    /// The bot's username (for the `t.me/BOT?start=CODE` pairing link); checks the token.
    pub async fn username(&self) -> Result<Option<String>, ApiError> {
        Ok(self.call::<BotUser>("getMe", json!({})).await?.username)
    }

    /// Send one message; answers Telegram's message id.
    pub async fn send_message(
        &self,
        chat_id: &str,
        text: &str,
        html: bool,
        buttons: &[super::Button],
    ) -> Result<String, ApiError> {
        let mut body = json!({"chat_id": chat_id, "text": text, "link_preview_options": {"is_disabled": true}});
        if html {
            body["parse_mode"] = json!("HTML");
        }
        if !buttons.is_empty() {
            let row: Vec<Value> = buttons.iter().map(|b| json!({"text": b.title, "callback_data": b.id})).collect();
            body["reply_markup"] = json!({"inline_keyboard": [row]});
        }
        Ok(self.call::<SentMessage>("sendMessage", body).await?.message_id.to_string())
    }

    /// Replace the text of a message the bot sent. "Not modified" counts as done.
    pub async fn edit_message(&self, chat_id: &str, message_id: &str, text: &str, html: bool) -> Result<(), ApiError> {
        let mut body = json!({"chat_id": chat_id, "message_id": message_id.parse::<i64>().unwrap_or(0), "text": text,
            "link_preview_options": {"is_disabled": true}});
        if html {
            body["parse_mode"] = json!("HTML");
        }
        match self.call::<Value>("editMessageText", body).await {
            Err(ApiError::Refused { description, .. }) if description.contains("not modified") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Stop a pressed button's spinner, with a short note.
    pub async fn answer_callback(&self, callback_id: &str, text: &str) -> Result<(), ApiError> {
        let body = json!({"callback_query_id": callback_id, "text": text});
        self.call::<bool>("answerCallbackQuery", body).await.map(|_| ())
    }

    /// Show "typing…" in the chat (Telegram shows it for about five seconds).
    pub async fn typing(&self, chat_id: &str) -> Result<(), ApiError> {
        self.call::<bool>("sendChatAction", json!({"chat_id": chat_id, "action": "typing"})).await.map(|_| ())
    }

    /// Ask Telegram to post updates to `url` with `secret` in the secret-token header.
    pub async fn set_webhook(&self, url: &str, secret: &SecretString) -> Result<(), ApiError> {
        let body = json!({"url": url, "secret_token": secret.expose(), "allowed_updates": ["message", "edited_message", "callback_query"]});
        self.call::<bool>("setWebhook", body).await.map(|_| ())
    }

    /// Stop webhook delivery, so long polling may run.
    pub async fn delete_webhook(&self) -> Result<(), ApiError> {
        self.call::<bool>("deleteWebhook", json!({})).await.map(|_| ())
    }

    /// Wait for updates after `offset` (long poll).
    pub async fn updates(&self, offset: i64) -> Result<Vec<Value>, ApiError> {
        let body = json!({"offset": offset, "timeout": POLL_TIMEOUT_SECS, "allowed_updates": ["message", "edited_message", "callback_query"]});
        self.call::<Vec<Value>>("getUpdates", body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(json: Value) -> Update {
        serde_json::from_value(json).unwrap()
    }

    // Shapes from the Bot API documentation (https://core.telegram.org/bots/api#update).
    #[test]
    fn text_commands_and_attachments_become_inbound_messages() {
        let text = update(json!({"update_id": 10, "message": {"message_id": 1, "date": 1,
            "from": {"id": 7, "is_bot": false, "first_name": "Ada", "username": "ada"},
            "chat": {"id": 7, "type": "private", "first_name": "Ada"}, "text": "hello"}}));
        let message = inbound(&text).unwrap();
        assert_eq!((message.platform_id.as_str(), message.chat_id.as_str(), message.kind), ("10", "7", Kind::Text));
        assert_eq!(message.sender_name, "ada");

        let command = update(json!({"update_id": 11, "message": {"message_id": 2, "date": 1,
            "chat": {"id": -100, "type": "group", "title": "family"}, "text": "/start abc",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}));
        assert_eq!(inbound(&command).unwrap().kind, Kind::Command);

        let sticker = update(json!({"update_id": 12, "message": {"message_id": 3, "date": 1,
            "chat": {"id": 7, "type": "private"}, "sticker": {"file_id": "x", "width": 1, "height": 1}}}));
        let message = inbound(&sticker).unwrap();
        assert_eq!((message.kind, message.text.as_str()), (Kind::Unsupported, "a sticker"));
    }

    #[test]
    fn edits_and_other_updates_are_not_handled() {
        let edited = update(json!({"update_id": 13, "edited_message": {"message_id": 1, "date": 1,
            "edit_date": 2, "chat": {"id": 7, "type": "private"}, "text": "hello!"}}));
        assert!(inbound(&edited).is_none());
        assert!(inbound(&update(json!({"update_id": 14, "my_chat_member": {}}))).is_none());
    }

    #[test]
    fn the_webhook_secret_must_match_exactly() {
        let secret = SecretString::new("s3cret-token".into());
        assert!(secret_matches(&secret, Some("s3cret-token")));
        assert!(!secret_matches(&secret, Some("s3cret-toke")));
        assert!(!secret_matches(&secret, None));
    }
}
