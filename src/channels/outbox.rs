//! Outbox: one sender per platform delivers queued replies in order, with retries and
//! back-off (rate limits obeyed), editing a live preview into the final answer where there
//! is one. A reply that keeps failing is given up after [`MAX_SEND_ATTEMPTS`] and shown as
//! failed in the API.

use pryx_api::ChannelName;
use std::sync::Arc;
use std::time::Duration;

use super::platform::Platform;
use super::tables;
use super::{ApiError, Button, Channels};
use crate::store::now_ms;

/// Attempts before a reply is given up as failed.
const MAX_SEND_ATTEMPTS: i64 = 8;

/// How one delivery attempt went (the `channel.send` span's `pryx.channel.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendOutcome {
    /// The platform took it.
    Sent,
    /// Throttled or a passing failure: tried again later.
    Retry,
    /// Given up: refused for good, or out of attempts.
    Failed,
}

impl SendOutcome {
    fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Sent => "sent",
            SendOutcome::Retry => "retry",
            SendOutcome::Failed => "failed",
        }
    }
}

impl Channels {
    pub(super) async fn send_loop(self: Arc<Self>, platform: Arc<dyn Platform>) {
        let channel = platform.channel();
        loop {
            let due = tables::due_replies(&self.store, channel, 32).await.unwrap_or_else(|e| {
                tracing::error!(target: "pryx::channels", "cannot read the outbox: {e}");
                Vec::new()
            });
            for reply in due {
                self.send_one(platform.as_ref(), reply).await;
            }
            let wait = match tables::next_due(&self.store, channel).await {
                Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, 60_000) as u64),
                _ => Duration::from_secs(60),
            };
            let Some(wake) = self.outbox_wake.get(&channel) else { return };
            tokio::select! {
                _ = platform.stop().cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    pub(super) fn wake_sender(&self, channel: ChannelName) {
        if let Some(wake) = self.outbox_wake.get(&channel) {
            wake.notify_one();
        }
    }

    async fn send_one(&self, platform: &dyn Platform, reply: tables::OutboxRow) {
        let span = tracing::info_span!(
            target: crate::telemetry::SPAN_TARGET,
            "channel.send",
            messaging.system = platform.channel().as_str(),
            messaging.operation.type = "send",
            pryx.channel.attempt = reply.attempts + 1,
            pryx.channel.outcome = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let outcome = tracing::Instrument::instrument(self.deliver(platform, reply), span.clone()).await;
        span.record("pryx.channel.outcome", outcome.as_str());
        if outcome != SendOutcome::Sent {
            span.record("error.type", outcome.as_str());
        }
    }

    /// One delivery attempt, and how it went.
    async fn deliver(&self, platform: &dyn Platform, reply: tables::OutboxRow) -> SendOutcome {
        let buttons: Vec<Button> =
            reply.buttons.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
        let mut sent = send_or_edit(platform, &reply, &reply.body, true, &buttons).await;
        if let Err(ApiError::Unformattable(_)) = &sent {
            // The words matter more than the looks.
            sent = send_or_edit(platform, &reply, &reply.plain, false, &buttons).await;
        }
        let (outcome, result) = match sent {
            Ok(message_id) => {
                self.setup.reached(platform.channel(), platform.stop());
                (SendOutcome::Sent, tables::reply_sent(&self.store, reply.id, &message_id).await)
            }
            Err(ApiError::RateLimited(wait)) => {
                let at = now_ms() + wait.as_millis() as i64;
                (SendOutcome::Retry, tables::reply_retry(&self.store, reply.id, at, "rate limited").await)
            }
            Err(ApiError::Transient(why)) if reply.attempts + 1 < MAX_SEND_ATTEMPTS => {
                let backoff = 1000i64 << reply.attempts.min(6);
                (SendOutcome::Retry, tables::reply_retry(&self.store, reply.id, now_ms() + backoff, &why).await)
            }
            Err(e) => {
                tracing::warn!(target: "pryx::channels", chat = %reply.chat_id, "a reply could not be delivered: {e}");
                (SendOutcome::Failed, tables::reply_failed(&self.store, reply.id, &e.to_string()).await)
            }
        };
        if let Err(e) = result {
            tracing::error!(target: "pryx::channels", "cannot record a reply's delivery: {e}");
        }
        if outcome == SendOutcome::Failed {
            self.setup.changed();
        }
        outcome
    }
}

/// Send a reply, or, when it is the final answer to a live preview, edit the preview into
/// it (a new message if the preview is gone).
async fn send_or_edit(
    platform: &dyn Platform,
    reply: &tables::OutboxRow,
    body: &str,
    formatted: bool,
    buttons: &[Button],
) -> Result<String, ApiError> {
    if let Some(id) = &reply.edit_message_id {
        match platform.edit(&reply.chat_id, id, body, formatted).await {
            Ok(()) => return Ok(id.clone()),
            Err(ApiError::EditTargetGone) => {}
            Err(e) => return Err(e),
        }
    }
    platform.send(&reply.chat_id, body, formatted, buttons).await
}
