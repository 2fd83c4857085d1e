//! The connection to the agent: the generated `PryxApiClient` over a browser WebSocket.
//!
//! jsonrpsee's own browser transport cannot offer WebSocket subprotocols, and a browser
//! cannot set headers on a WebSocket, so the token travels the way `docs/api.md` describes
//! for browsers: the subprotocols `pryx` and `pryx.token.<token>`. Everything above the
//! transport (request ids, subscriptions, errors) is jsonrpsee's, driven by the same
//! `PryxApi` trait the agent implements.

use std::fmt;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::Message;
use jsonrpsee::core::client::{Client, ClientBuilder, ReceivedMessage, TransportReceiverT, TransportSenderT};
use jsonrpsee::core::ClientError;
use pryx_api::{PryxApiClient, SystemInfo};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// A transport failure, in words.
#[derive(Debug)]
pub struct TransportError(String);

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransportError {}

struct Sender(SplitSink<WebSocket, Message>);
struct Receiver(SplitStream<WebSocket>);

impl TransportSenderT for Sender {
    type Error = TransportError;

    async fn send(&mut self, msg: String) -> Result<(), TransportError> {
        self.0.send(Message::Text(msg)).await.map_err(|e| TransportError(e.to_string()))
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        self.0.close().await.map_err(|e| TransportError(e.to_string()))
    }
}

impl TransportReceiverT for Receiver {
    type Error = TransportError;

    async fn receive(&mut self) -> Result<ReceivedMessage, TransportError> {
        match self.0.next().await {
            Some(Ok(Message::Text(text))) => Ok(ReceivedMessage::Text(text)),
            Some(Ok(Message::Bytes(bytes))) => Ok(ReceivedMessage::Bytes(bytes)),
            Some(Err(e)) => Err(TransportError(e.to_string())),
            None => Err(TransportError("the connection to the agent closed".into())),
        }
    }
}

/// Why connecting failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The agent answers but refused the token.
    TokenRefused,
    /// The agent does not answer (stopped, restarting).
    Unreachable(String),
}

/// Open an authenticated API connection to the agent that served this page and check it
/// with one call, whose answer (which runtime incarnation this is) the caller needs anyway.
pub async fn connect(token: &str) -> Result<(Client, SystemInfo), ConnectError> {
    let location = web_sys::window().map(|w| w.location());
    let host = location.and_then(|l| l.host().ok()).unwrap_or_default();
    let url = format!("ws://{host}/rpc");
    let protocols = ["pryx".to_owned(), format!("pryx.token.{token}")];
    let socket =
        WebSocket::open_with_protocols(&url, &protocols).map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let (sink, stream) = socket.split();
    let client = ClientBuilder::default()
        .request_timeout(Duration::from_secs(60))
        .build_with_wasm(Sender(sink), Receiver(stream));
    match client.system_info().await {
        Ok(info) => Ok((client, info)),
        // The handshake failed: a 401 and a stopped agent look the same to a WebSocket, so
        // ask the unauthenticated health check which one it was.
        Err(e) => match agent_is_up().await {
            true => Err(ConnectError::TokenRefused),
            false => Err(ConnectError::Unreachable(e.to_string())),
        },
    }
}

/// Whether `GET /healthz` answers 200.
async fn agent_is_up() -> bool {
    let Some(window) = web_sys::window() else { return false };
    let Ok(response) = JsFuture::from(window.fetch_with_str("/healthz")).await else { return false };
    response.dyn_into::<web_sys::Response>().is_ok_and(|r| r.ok())
}

/// An API error as a sentence for the UI.
pub fn readable(error: &ClientError) -> String {
    match error {
        ClientError::Call(call) => call.message().to_owned(),
        ClientError::RestartNeeded(_) | ClientError::Transport(_) => {
            "The connection to the agent was lost; reconnecting…".to_owned()
        }
        ClientError::RequestTimeout => "The agent did not answer in time.".to_owned(),
        other => other.to_string(),
    }
}

/// Wait `ms` milliseconds without blocking the page.
pub async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(promise).await;
}
