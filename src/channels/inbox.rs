//! Intake: webhooks and Telegram's long poll turn platform payloads into
//! [`InboundMessage`]s and commit them to the inbox, deduplicated by the platform's id,
//! before the platform is answered. Concurrent deliveries are committed together (group
//! commit). Nothing slow happens here, so a busy model never delays an ack.

use pryx_api::ChannelName;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};

use super::platform::TelegramChannel;
use super::tables::{self, InboundMessage};
use super::{telegram, whatsapp};
use super::{ChannelError, Channels};

/// Most deliveries committed in one transaction.
pub(super) const MAX_BATCH: usize = 512;
/// A message waiting to be committed, and who waits for the outcome.
pub(super) type Delivery = (InboundMessage, oneshot::Sender<Result<bool, ChannelError>>);

impl Channels {
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
    pub(super) async fn inbox_writer(self: Arc<Self>, mut intake: mpsc::Receiver<Delivery>) {
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
                ChannelName::Whatsapp,
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
    pub(super) async fn poll_loop(self: Arc<Self>, telegram: Arc<TelegramChannel>) {
        let mut offset: i64 = tables::cursor(&self.store, ChannelName::Telegram)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut backoff = Duration::from_secs(1);
        loop {
            let updates = tokio::select! {
                _ = telegram.stop.cancelled() => return,
                updates = telegram.api.updates(offset) => updates,
            };
            match updates {
                Ok(updates) => {
                    backoff = Duration::from_secs(1);
                    self.setup.reached(ChannelName::Telegram, &telegram.stop);
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
                        if let Err(e) =
                            tables::set_cursor(&self.store, ChannelName::Telegram, &offset.to_string()).await
                        {
                            tracing::error!(target: "pryx::channels", "cannot store the Telegram offset: {e}");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "pryx::channels", "Telegram polling failed: {e}; again in {}s", backoff.as_secs());
                    self.setup.unreachable(ChannelName::Telegram, &telegram.stop, &e.to_string());
                    tokio::select! {
                        _ = telegram.stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
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
    pub(super) fn status(status: StatusCode) -> Received {
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

/// The span of one inbound delivery (`via`: `webhook` or `poll`). No chat ids or text.
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
