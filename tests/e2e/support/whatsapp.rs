//! A WhatsApp Cloud API stand-in, written from Meta's Cloud API documentation (no emulator
//! exists): `POST /{phone-number-id}/messages` with a bearer token answers
//! `{"messaging_product":"whatsapp","contacts":[…],"messages":[{"id":"wamid…"}]}`, or the
//! Graph error envelope `{"error":{"message","type","code","fbtrace_id"}}`;
//! `GET /{phone-number-id}?fields=…` answers the number's `display_phone_number`,
//! `verified_name` and `id` (how Pryx checks the settings). It also builds
//! webhook deliveries in the documented nested shape and signs them as Meta does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const ACCESS_TOKEN: &str = "EAAG-test-access-token";
pub const APP_SECRET: &str = "test-app-secret-9f8e7d";
pub const VERIFY_TOKEN: &str = "test-verify-token-1a2b";
/// The business number as WhatsApp shows it (and its digits, for `wa.me` links).
pub const DISPLAY_NUMBER: &str = "+1 555-010-4477";
pub const NUMBER_DIGITS: &str = "15550104477";

#[derive(Default)]
struct Shared {
    sent: Vec<Value>,
    failures: VecDeque<(u16, i64, &'static str)>,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeWhatsApp {
    pub address: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl FakeWhatsApp {
    pub async fn start() -> FakeWhatsApp {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/v21.0/{phone}/messages", post(messages))
            .route("/v21.0/{phone}", get(phone_number))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeWhatsApp { address, shared }
    }

    pub fn api_base(&self) -> String {
        format!("http://{}/v21.0", self.address)
    }

    /// The next sends fail with (HTTP status, Graph error code, message).
    pub fn fail_next_sends(&self, failures: impl IntoIterator<Item = (u16, i64, &'static str)>) {
        self.shared.lock().unwrap().failures.extend(failures);
    }

    /// Every accepted message body, in order.
    pub fn sent(&self) -> Vec<Value> {
        self.shared.lock().unwrap().sent.clone()
    }

    pub fn texts_to(&self, to: &str) -> Vec<String> {
        self.sent()
            .iter()
            .filter(|m| m["to"] == to)
            .map(|m| m["text"]["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The `wamid` of the n-th accepted message.
    pub fn wamid(n: u64) -> String {
        format!("wamid.HBgLMTY1MDM4NzkOUTAVAgARGBI{n:06}")
    }
}

/// Meta's answer to a wrong token or phone number id, if the request has one.
fn refusal(phone: &str, headers: &HeaderMap) -> Option<Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if phone == PHONE_NUMBER_ID && auth == Some(&format!("Bearer {ACCESS_TOKEN}")) {
        return None;
    }
    let error = json!({"error": {"message": "Invalid OAuth access token - Cannot parse access token",
        "type": "OAuthException", "code": 190, "fbtrace_id": "Atest"}});
    Some((StatusCode::UNAUTHORIZED, Json(error)).into_response())
}

async fn phone_number(Path(phone): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&phone, &headers) {
        return refused;
    }
    Json(json!({"verified_name": "Pryx Test", "display_phone_number": DISPLAY_NUMBER, "id": PHONE_NUMBER_ID}))
        .into_response()
}

async fn messages(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(phone): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = refusal(&phone, &headers) {
        return refused;
    }
    let mut shared = shared.lock().unwrap();
    if let Some((status, code, message)) = shared.failures.pop_front() {
        let error =
            json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Atest"}});
        return (StatusCode::from_u16(status).unwrap(), Json(error)).into_response();
    }
    shared.next_id += 1;
    let id = FakeWhatsApp::wamid(shared.next_id);
    shared.sent.push(body.clone());
    Json(json!({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
        "messages": [{"id": id}]}))
    .into_response()
}

/// A webhook delivery with one text message, as Meta sends it.
pub fn text_delivery(message_id: &str, from: &str, text: &str) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages",
    "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Ada"}, "wa_id": from}],
        "messages": [{"from": from, "id": message_id, "timestamp": "1764000000", "type": "text", "text": {"body": text}}]
    }}]}]})
}

/// A delivery-status webhook for a message Pryx sent.
pub fn status_delivery(wamid: &str, to: &str, status: &str, error: Option<(i64, &str)>) -> Value {
    let mut entry = json!({"id": wamid, "status": status, "timestamp": "1764000100", "recipient_id": to});
    if let Some((code, title)) = error {
        entry["errors"] = json!([{"code": code, "title": title}]);
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "statuses": [entry]}}]}]})
}

/// `sha256=HEX` of `body` with the app secret, as Meta signs deliveries.
pub fn signature(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
