//! A Telegram Bot API stand-in: the methods Pryx calls, at `/bot<TOKEN>/<method>`, in the
//! wire format of https://core.telegram.org/bots/api (the `{ok, result}` envelope; errors
//! with `error_code`, `description` and, for 429, `parameters.retry_after`). It records what
//! Pryx sent, serves queued updates to `getUpdates` (dropping those below `offset`, as
//! Telegram does), and can be told to fail the next `sendMessage` calls.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

pub const TOKEN: &str = "123456:test-bot-token";
pub const BOT_USERNAME: &str = "pryx_test_bot";

/// How the next `sendMessage` fails.
#[derive(Debug, Clone)]
pub enum Failure {
    RateLimited { retry_after: u64 },
    ServerError,
    Refused { code: u16, description: &'static str },
}

#[derive(Default)]
struct Shared {
    updates: Vec<Value>,
    sent: Vec<Value>,
    calls: Vec<(String, Value)>,
    failures: VecDeque<Failure>,
    next_message_id: i64,
}

#[derive(Clone)]
pub struct FakeTelegram {
    pub address: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        let shared = Arc::new(Mutex::new(Shared { next_message_id: 1000, ..Shared::default() }));
        let app = Router::new().route("/{bot}/{method}", post(method)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeTelegram { address, shared }
    }

    pub fn api_base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Queue an update for `getUpdates`.
    pub fn push_update(&self, update: Value) {
        self.shared.lock().unwrap().updates.push(update);
    }

    /// The next formatted `sendMessage` / `editMessageText` calls fail like this, in order.
    pub fn fail_next_sends(&self, failures: impl IntoIterator<Item = Failure>) {
        self.shared.lock().unwrap().failures.extend(failures);
    }

    /// Every accepted `sendMessage` body, in order.
    pub fn sent(&self) -> Vec<Value> {
        self.shared.lock().unwrap().sent.clone()
    }

    /// The texts shown in one chat (edits replace what they edit).
    pub fn texts_to(&self, chat: i64) -> Vec<String> {
        self.sent()
            .iter()
            .filter(|m| m["chat_id"].as_str() == Some(&chat.to_string()))
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Bodies of calls to `method`.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.shared.lock().unwrap().calls.iter().filter(|(m, _)| m == method).map(|(_, b)| b.clone()).collect()
    }
}

/// A text message update as Telegram sends it.
pub fn text_update(update_id: i64, chat: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_764_000_000,
        "from": {"id": chat, "is_bot": false, "first_name": "Ada", "username": "ada", "language_code": "en"},
        "chat": {"id": chat, "type": "private", "first_name": "Ada", "username": "ada"},
        "text": text
    }})
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

fn error(status: StatusCode, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    (status, Json(body)).into_response()
}

async fn method(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path((bot, method)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if bot != format!("bot{TOKEN}") {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", None);
    }
    shared.lock().unwrap().calls.push((method.clone(), body.clone()));
    match method.as_str() {
        "getMe" => ok(json!({"id": 123456, "is_bot": true, "first_name": "Pryx", "username": BOT_USERNAME})),
        "setWebhook" | "deleteWebhook" | "sendChatAction" | "answerCallbackQuery" => ok(json!(true)),
        "getUpdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            for _ in 0..10 {
                let pending: Vec<Value> = {
                    let mut shared = shared.lock().unwrap();
                    // Confirmed updates are forgotten, as Telegram does.
                    shared.updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    shared.updates.clone()
                };
                if !pending.is_empty() {
                    return ok(Value::Array(pending));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ok(json!([]))
        }
        "sendMessage" | "editMessageText" => {
            let mut shared = shared.lock().unwrap();
            // Scripted failures hit formatted sends and edits (replies), not the plain live
            // previews, which Pryx sends best effort only when an answer takes a while:
            // tests stay deterministic however slow the machine is.
            let formatted = body["parse_mode"].is_string();
            if let Some(failure) = if formatted { shared.failures.pop_front() } else { None } {
                return match failure {
                    Failure::RateLimited { retry_after } => error(
                        StatusCode::TOO_MANY_REQUESTS,
                        &format!("Too Many Requests: retry after {retry_after}"),
                        Some(json!({"retry_after": retry_after})),
                    ),
                    Failure::ServerError => error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", None),
                    Failure::Refused { code, description } => {
                        error(StatusCode::from_u16(code).unwrap(), description, None)
                    }
                };
            }
            if method == "sendMessage" {
                shared.next_message_id += 1;
                let id = shared.next_message_id;
                shared.sent.push(body.clone());
                return ok(json!({"message_id": id, "date": 1_764_000_000,
                    "chat": {"id": body["chat_id"], "type": "private"}, "text": body["text"]}));
            }
            // An edit replaces the text Telegram shows for that message.
            let id = body["message_id"].as_i64().unwrap_or(0);
            let Some(index) = (id - 1001).try_into().ok().filter(|i: &usize| *i < shared.sent.len()) else {
                return error(StatusCode::BAD_REQUEST, "Bad Request: message to edit not found", None);
            };
            let mut edited = body.clone();
            edited["edited"] = json!(true);
            shared.sent[index] = edited;
            ok(json!({"message_id": id, "date": 1_764_000_000, "chat": {"id": body["chat_id"], "type": "private"},
                "text": body["text"], "edit_date": 1_764_000_001}))
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found: method not found", None),
    }
}

/// A press on an inline keyboard button of a message Pryx sent, as Telegram sends it.
pub fn button_press(update_id: i64, chat: i64, data: &str) -> Value {
    json!({"update_id": update_id, "callback_query": {
        "id": format!("cb-{update_id}"),
        "from": {"id": chat, "is_bot": false, "first_name": "Ada", "username": "ada"},
        "message": {"message_id": 1, "date": 1_764_000_000, "chat": {"id": chat, "type": "private"}, "text": "Allow it?"},
        "chat_instance": "-123", "data": data
    }})
}
