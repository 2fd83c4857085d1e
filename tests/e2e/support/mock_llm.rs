//! A local stand-in for the OpenAI Chat Completions API (`POST /v1/chat/completions`,
//! `GET /v1/models`), streaming server-sent events exactly as the real API documents them:
//! a role chunk, content deltas, `tool_calls` deltas split across chunks, a chunk with
//! `finish_reason`, a usage chunk with empty `choices` (when `stream_options.include_usage`),
//! then `data: [DONE]`. Errors use the API's `{"error": {...}}` body.
//!
//! Tests script replies in order; with nothing scripted it echoes the last user message.
//! Every request body is recorded for assertions.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};

/// One scripted answer to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Stream these text pieces, waiting `delay` before each.
    Text { pieces: Vec<String>, delay: Duration },
    /// Ask for these calls `(id, name, arguments)` in one message (parallel calls); each
    /// call's arguments are split across several chunks, as the real API does.
    ToolCalls(Vec<(String, String, String)>),
    /// Answer with an HTTP error and the API's error body.
    Error { status: u16, message: String, code: Option<String>, retry_after: Option<u64> },
    /// Stream these pieces, then drop the connection without finishing.
    BreakAfter(Vec<String>),
    /// Send an event whose data is not JSON.
    Malformed,
    /// Stream `count` pieces `interval` apart, each the nanoseconds since [`epoch`] at the
    /// moment it is written, followed by `|` (for latency measurements).
    Stamped { count: usize, interval: Duration },
}

/// The time base of [`Reply::Stamped`] pieces; read it in the same process.
pub fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

impl Reply {
    pub fn text(pieces: &[&str]) -> Reply {
        Reply::Text { pieces: pieces.iter().map(|s| s.to_string()).collect(), delay: Duration::ZERO }
    }
    pub fn slow_text(count: usize, delay: Duration) -> Reply {
        Reply::Text { pieces: (0..count).map(|i| format!("word{i} ")).collect(), delay }
    }
    pub fn tool_call(id: &str, name: &str, arguments: &str) -> Reply {
        Reply::ToolCalls(vec![(id.into(), name.into(), arguments.into())])
    }
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::Error { status, message: message.into(), code: None, retry_after: None }
    }
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Reply>,
    requests: Vec<Value>,
    auth_headers: Vec<Option<String>>,
}

/// The running stand-in. Dropping it does not stop the server; tests end with the runtime.
#[derive(Clone)]
pub struct MockLlm {
    pub address: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

pub const MODEL: &str = "mock-model";

impl MockLlm {
    pub async fn start() -> MockLlm {
        pryx::install_tls_provider();
        Self::start_on("127.0.0.1:0").await.expect("bind the mock LLM")
    }

    /// Start on a fixed address; `None` when it is taken.
    pub async fn start_on(address: &str) -> Option<MockLlm> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/v1/models", get(models))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(address).await.ok()?;
        let address = listener.local_addr().expect("mock address");
        // Like a real provider's edge, chunks leave at once (no Nagle delay).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Some(MockLlm { address, shared })
    }

    /// The base URL to give Pryx (`PRYX_LLM_BASE_URL`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Queue replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().unwrap().script.extend(replies);
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Forget the requests recorded so far (a long benchmark would otherwise keep them all).
    pub fn forget_requests(&self) {
        let mut shared = self.shared.lock().unwrap();
        shared.requests.clear();
        shared.auth_headers.clear();
    }

    pub fn auth_headers(&self) -> Vec<Option<String>> {
        self.shared.lock().unwrap().auth_headers.clone()
    }
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 1, "owned_by": "mock"}]}))
}

async fn completions(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let reply = {
        let mut shared = shared.lock().unwrap();
        shared.requests.push(body.clone());
        shared.auth_headers.push(headers.get("authorization").and_then(|h| h.to_str().ok()).map(str::to_owned));
        shared.script.pop_front()
    };
    let reply = reply.unwrap_or_else(|| {
        let last_user = body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_owned();
        Reply::text(&["Echo: ", &last_user])
    });
    let model = body["model"].as_str().unwrap_or(MODEL).to_owned();
    let include_usage = body["stream_options"]["include_usage"] == json!(true);
    match reply {
        Reply::Error { status, message, code, retry_after } => {
            let mut response = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json(json!({"error": {"message": message, "type": error_type(status), "param": null, "code": code}})),
            )
                .into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.to_string().parse().unwrap());
            }
            response
        }
        other => sse(stream_events(other, model, include_usage)),
    }
}

fn error_type(status: u16) -> &'static str {
    match status {
        401 => "invalid_request_error",
        404 => "invalid_request_error",
        429 => "rate_limit_error",
        _ => "server_error",
    }
}

/// What to send, in order: an event's data, a pause, or a broken connection.
enum Step {
    Data(String),
    /// A content chunk whose text is the send time, filled in when it is written.
    Stamp(String),
    Pause(Duration),
    Break,
}

fn chunk(model: &str, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> String {
    let mut c = json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    });
    if include_usage {
        c["usage"] = Value::Null;
    }
    c.to_string()
}

fn stream_events(reply: Reply, model: String, include_usage: bool) -> Vec<Step> {
    let mut steps = vec![Step::Data(chunk(&model, json!({"role": "assistant", "content": ""}), None, include_usage))];
    let mut completion_tokens = 0;
    let finish = match reply {
        Reply::Text { pieces, delay } => {
            for piece in pieces {
                if !delay.is_zero() {
                    steps.push(Step::Pause(delay));
                }
                completion_tokens += 1;
                steps.push(Step::Data(chunk(&model, json!({"content": piece}), None, include_usage)));
            }
            "stop"
        }
        Reply::ToolCalls(calls) => {
            for (index, (id, name, arguments)) in calls.iter().enumerate() {
                steps.push(Step::Data(chunk(
                    &model,
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    None,
                    include_usage,
                )));
                // Split the arguments into pieces of at most 4 bytes on char boundaries.
                let mut piece = String::new();
                for ch in arguments.chars() {
                    piece.push(ch);
                    if piece.len() >= 4 {
                        steps.push(Step::Data(chunk(
                            &model,
                            json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                            None,
                            include_usage,
                        )));
                        piece = String::new();
                    }
                }
                if !piece.is_empty() {
                    steps.push(Step::Data(chunk(
                        &model,
                        json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                        None,
                        include_usage,
                    )));
                }
                completion_tokens += 5;
            }
            "tool_calls"
        }
        Reply::BreakAfter(pieces) => {
            for piece in pieces {
                steps.push(Step::Data(chunk(&model, json!({"content": piece}), None, include_usage)));
            }
            steps.push(Step::Pause(Duration::from_millis(50)));
            steps.push(Step::Break);
            return steps;
        }
        Reply::Stamped { count, interval } => {
            for _ in 0..count {
                steps.push(Step::Pause(interval));
                steps.push(Step::Stamp(model.clone()));
            }
            "stop"
        }
        Reply::Malformed => {
            steps.push(Step::Data("{\"choices\": [{\"delta\": {\"content\": \"half".into()));
            steps.push(Step::Data("[DONE]".into()));
            return steps;
        }
        Reply::Error { .. } => unreachable!("errors are not streamed"),
    };
    steps.push(Step::Data(chunk(&model, json!({}), Some(finish), include_usage)));
    if include_usage {
        steps.push(Step::Data(
            json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": completion_tokens, "total_tokens": 11 + completion_tokens},
            })
            .to_string(),
        ));
    }
    steps.push(Step::Data("[DONE]".into()));
    steps
}

fn sse(steps: Vec<Step>) -> Response {
    let stream = futures::stream::iter(steps).then(|step| async move {
        match step {
            Step::Data(data) => Ok::<Option<Bytes>, std::io::Error>(Some(Bytes::from(format!("data: {data}\n\n")))),
            Step::Stamp(model) => {
                let stamp = format!("{}|", epoch().elapsed().as_nanos());
                let data = chunk(&model, json!({"content": stamp}), None, false);
                Ok(Some(Bytes::from(format!("data: {data}\n\n"))))
            }
            Step::Pause(d) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            Step::Break => Err(std::io::Error::other("connection dropped by the mock")),
        }
    });
    let stream = stream.filter_map(|item| async move {
        match item {
            Ok(Some(bytes)) => Some(Ok::<Bytes, std::io::Error>(bytes)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
