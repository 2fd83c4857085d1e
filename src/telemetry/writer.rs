//! The span writer: one task per runtime that moves finished spans from the recorder's hub
//! into the span history, a batch per transaction.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::history::{Retention, SpanHistory};

/// How long finished spans gather before they are written in one transaction.
const SPAN_BATCH_DELAY: Duration = Duration::from_millis(250);

/// Move finished spans from the recorder into `history` until `stop`; a last drain happens
/// on the way out so a clean shutdown keeps everything.
pub async fn store_spans(history: SpanHistory, retention: Retention, stop: CancellationToken) {
    let hub = super::hub();
    loop {
        // Wake on the first new span, then let more gather: one transaction per batch,
        // not one fsync per span.
        let stopping = tokio::select! {
            _ = hub.wait_for_pending() => tokio::select! {
                _ = tokio::time::sleep(SPAN_BATCH_DELAY) => false,
                _ = stop.cancelled() => true,
            },
            _ = stop.cancelled() => true,
        };
        let batch = hub.take_pending();
        if !batch.is_empty() {
            if let Err(e) = history.add(&batch, retention).await {
                tracing::warn!("cannot store {} spans: {e}", batch.len());
            }
        }
        if stopping {
            return;
        }
    }
}
