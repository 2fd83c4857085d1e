//! WhatsApp Cloud API: the webhook verification handshake, signed webhook deliveries, and
//! sending messages.
//!
//! Meta first checks the webhook with `GET ?hub.mode=subscribe&hub.verify_token=…&
//! hub.challenge=…` (Pryx echoes the challenge only for its own verify token, else 403),
//! then posts deliveries signed with `X-Hub-Signature-256: sha256=HEX`, an HMAC-SHA256 of the
//! raw body with the app secret (checked in constant time before anything is parsed).
//! A delivery nests `entry[].changes[].value` holding `messages[]` (into the inbox) and
//! `statuses[]` (delivery state of what Pryx sent). Replies go to
//! `POST {api_base}/{phone_number_id}/messages` with the access token.

use pryx_api::ChannelName;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::tables::{InboundMessage, Kind};
use super::ApiError;
use crate::secrets::SecretString;

/// The answer to Meta's verification request: the challenge to echo, or `None` (403).
pub fn verify(query: &std::collections::HashMap<String, String>, verify_token: &SecretString) -> Option<String> {
    let mode_ok = query.get("hub.mode").is_some_and(|m| m == "subscribe");
    let token_ok =
        query.get("hub.verify_token").is_some_and(|t| bool::from(t.as_bytes().ct_eq(verify_token.expose().as_bytes())));
    match (mode_ok && token_ok, query.get("hub.challenge")) {
        (true, Some(challenge)) if !challenge.is_empty() && challenge.len() <= 256 => Some(challenge.clone()),
        _ => None,
    }
}

/// Whether `header` (`sha256=HEX`) is the HMAC-SHA256 of `body` with `app_secret`.
pub fn signature_ok(app_secret: &SecretString, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_digest) = header.and_then(|h| h.strip_prefix("sha256=")) else { return false };
    let Ok(presented) = hex::decode(hex_digest.trim()) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.expose().as_bytes()) else { return false };
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&presented).is_ok()
}

/// A delivery state Meta reports for a message Pryx sent.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// The `wamid` Meta answered when the message was sent.
    pub message_id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: String,
    /// Meta's words when it failed.
    pub error: Option<String>,
}

/// The messages and statuses of one webhook delivery; `Err` when it is not the documented
/// shape at all.
pub fn parse(body: &Value) -> Result<(Vec<InboundMessage>, Vec<StatusUpdate>), String> {
    if body["object"] != "whatsapp_business_account" {
        return Err("not a whatsapp_business_account delivery".into());
    }
    let entries = body["entry"].as_array().ok_or("no entry list")?;
    let mut messages = Vec::new();
    let mut statuses = Vec::new();
    for value in entries.iter().flat_map(|e| e["changes"].as_array().into_iter().flatten()).map(|c| &c["value"]) {
        let name_of = |wa_id: &str| {
            value["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["wa_id"] == wa_id)
                .and_then(|c| c["profile"]["name"].as_str().map(str::to_owned))
        };
        for message in value["messages"].as_array().into_iter().flatten() {
            let (Some(id), Some(from)) = (message["id"].as_str(), message["from"].as_str()) else { continue };
            let (kind, text) = match message["type"].as_str().unwrap_or("") {
                "interactive" => match message["interactive"]["button_reply"]["id"].as_str() {
                    Some(id) => (Kind::Button, id.to_owned()),
                    None => (Kind::Unsupported, "this kind of reply".to_owned()),
                },
                "text" => {
                    let text = message["text"]["body"].as_str().unwrap_or("").to_owned();
                    (if text.starts_with('/') { Kind::Command } else { Kind::Text }, text)
                }
                "image" => (Kind::Unsupported, "a photo".to_owned()),
                "audio" => (Kind::Unsupported, "a voice message".to_owned()),
                "video" => (Kind::Unsupported, "a video".to_owned()),
                "document" => (Kind::Unsupported, "a file".to_owned()),
                "sticker" => (Kind::Unsupported, "a sticker".to_owned()),
                "location" => (Kind::Unsupported, "a location".to_owned()),
                "contacts" => (Kind::Unsupported, "a contact".to_owned()),
                _ => (Kind::Unsupported, "this kind of message".to_owned()),
            };
            messages.push(InboundMessage {
                channel: ChannelName::Whatsapp,
                platform_id: id.to_owned(),
                chat_id: from.to_owned(),
                sender_id: from.to_owned(),
                sender_name: name_of(from).unwrap_or_default(),
                kind,
                text,
                reply_token: None,
            });
        }
        for status in value["statuses"].as_array().into_iter().flatten() {
            let (Some(id), Some(state)) = (status["id"].as_str(), status["status"].as_str()) else { continue };
            let error = status["errors"].as_array().and_then(|e| e.first()).map(|e| {
                let title = e["title"].as_str().or(e["message"].as_str()).unwrap_or("failed");
                format!("{title} ({})", e["code"])
            });
            statuses.push(StatusUpdate { message_id: id.to_owned(), status: state.to_owned(), error });
        }
    }
    Ok((messages, statuses))
}

/// A Cloud API client for one business phone number.
pub struct CloudApi {
    http: reqwest::Client,
    /// `{api_base}/{phone-number-id}`
    number_url: String,
    token: SecretString,
}

/// The business phone number, as the Graph API describes it.
#[derive(Debug, serde::Deserialize)]
pub struct PhoneNumber {
    /// As WhatsApp shows it, e.g. `+1 631-555-5555`.
    pub display_phone_number: String,
    /// The business name Meta approved for it.
    #[serde(default)]
    pub verified_name: Option<String>,
}

impl CloudApi {
    pub fn new(api_base: &str, phone_number_id: &str, token: SecretString) -> CloudApi {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let number_url = format!("{}/{phone_number_id}", api_base.trim_end_matches('/'));
        CloudApi { http, number_url, token }
    }

    /// Ask Meta about the phone number: checks the token and the id in one call.
    pub async fn phone_number(&self) -> Result<PhoneNumber, ApiError> {
        let response = self
            .http
            .get(&self.number_url)
            .query(&[("fields", "display_phone_number,verified_name")])
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| ApiError::Transient(format!("cannot reach WhatsApp: {}", e.without_url())))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            if let Ok(number) = serde_json::from_value(answer.clone()) {
                return Ok(number);
            }
        }
        Err(graph_error(status, &answer))
    }

    /// Send a text message, as interactive reply buttons (at most three) when `buttons`
    /// are given; answers its `wamid`.
    pub async fn send_text(&self, to: &str, text: &str, buttons: &[super::Button]) -> Result<String, ApiError> {
        let body = if buttons.is_empty() {
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                "type": "text", "text": {"preview_url": false, "body": text}})
        } else {
            let buttons: Vec<Value> = buttons
                .iter()
                .take(3)
                .map(|b| {
                    let title: String = b.title.chars().take(20).collect();
                    json!({"type": "reply", "reply": {"id": b.id, "title": title}})
                })
                .collect();
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "interactive",
                "interactive": {"type": "button", "body": {"text": text}, "action": {"buttons": buttons}}})
        };
        let response = self
            .http
            .post(format!("{}/messages", self.number_url))
            .bearer_auth(self.token.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| ApiError::Transient(format!("cannot reach WhatsApp: {}", e.without_url())))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if let Some(id) = answer["messages"][0]["id"].as_str() {
            return Ok(id.to_owned());
        }
        Err(graph_error(status, &answer))
    }
}

/// What a Graph API error envelope (`{"error": {"message", "code", …}}`) means for a retry.
fn graph_error(status: reqwest::StatusCode, answer: &Value) -> ApiError {
    let error = &answer["error"];
    let code = error["code"].as_i64().unwrap_or(0);
    let description = error["message"].as_str().unwrap_or(status.as_str()).to_owned();
    // Meta's throttling codes (https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
    match code {
        4 | 80007 | 130429 | 131048 | 131056 => ApiError::RateLimited(Duration::from_secs(5)),
        _ if status.is_server_error() || code == 1 || code == 2 || code == 131000 => {
            ApiError::Transient(format!("WhatsApp failed ({code}): {description}"))
        }
        _ => ApiError::Refused { code: status.as_u16(), description: format!("{description} (code {code})") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shapes from Meta's webhook documentation for the Cloud API.
    fn delivery() -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA_ID", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "PHONE_ID"},
            "contacts": [{"profile": {"name": "Ada"}, "wa_id": "4915112345678"}],
            "messages": [
                {"from": "4915112345678", "id": "wamid.A", "timestamp": "1764000000", "type": "text", "text": {"body": "hello"}},
                {"from": "4915112345678", "id": "wamid.B", "timestamp": "1764000001", "type": "sticker",
                 "sticker": {"id": "x", "mime_type": "image/webp"}}
            ],
            "statuses": [{"id": "wamid.OUT", "status": "failed", "timestamp": "1764000002", "recipient_id": "4915112345678",
                "errors": [{"code": 131026, "title": "Message undeliverable"}]}]
        }}]}]})
    }

    #[test]
    fn messages_and_statuses_are_read_from_the_nested_shape() {
        let (messages, statuses) = parse(&delivery()).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!((messages[0].platform_id.as_str(), messages[0].text.as_str()), ("wamid.A", "hello"));
        assert_eq!(messages[0].sender_name, "Ada");
        assert_eq!((messages[1].kind, messages[1].text.as_str()), (Kind::Unsupported, "a sticker"));
        assert_eq!(statuses[0].status, "failed");
        assert!(statuses[0].error.as_deref().unwrap().contains("Message undeliverable"));
        assert!(parse(&json!({"object": "page"})).is_err());
    }

    #[test]
    fn signatures_are_checked_against_the_raw_body() {
        let secret = SecretString::new("app-secret".into());
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"app-secret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_ok(&secret, body, Some(&good)));
        assert!(!signature_ok(&secret, b"{}", Some(&good)), "another body");
        assert!(!signature_ok(&secret, body, Some("sha256=00")));
        assert!(!signature_ok(&secret, body, Some(good.trim_start_matches("sha256="))));
        assert!(!signature_ok(&secret, body, None));
    }

    #[test]
    fn verification_echoes_the_challenge_only_for_the_right_token() {
        let token = SecretString::new("verify-me".into());
        let query = |mode: &str, token: &str| {
            [("hub.mode", mode), ("hub.verify_token", token), ("hub.challenge", "1158201444")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into_iter()
                .collect()
        };
        assert_eq!(verify(&query("subscribe", "verify-me"), &token).as_deref(), Some("1158201444"));
        assert_eq!(verify(&query("subscribe", "wrong"), &token), None);
        assert_eq!(verify(&query("unsubscribe", "verify-me"), &token), None);
    }
}
