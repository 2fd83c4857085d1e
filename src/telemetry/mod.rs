//! Telemetry: what the agent does, as spans a person can watch live and look back on.
//!
//! Code marks its work with `tracing` spans on the [`SPAN_TARGET`] target (a turn, each LLM
//! request, each tool call, each approval wait), with attribute names from the
//! OpenTelemetry GenAI conventions (`gen_ai.*`) where they exist. The [`SpanRecorder`]
//! layer keeps each open span as a [`RecordedSpan`] (a compact form: see [`span`]); live
//! subscribers (`spans.subscribe`, for the Gantt chart) get a "started" record when a span
//! opens and the full record when it closes, and closed spans go to a bounded buffer that
//! the store writer drains into SQLite, where retention (age and count) trims them. The
//! recorder never blocks and never allocates without bound: when the buffer is full the
//! oldest spans are dropped and counted.
//!
//! Message text and tool arguments are recorded only with `[telemetry] capture_content`.

mod codec;
pub mod export;
pub mod history;
pub mod span;
pub mod writer;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use pryx_api::SpanRecord;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

pub use span::{AttributeValue, RecordedSpan};

/// The target every recorded span uses (`tracing::info_span!(target: SPAN_TARGET, …)`).
pub const SPAN_TARGET: &str = "pryx::span";
/// Closed spans waiting for the store writer, at most.
const BUFFER_LIMIT: usize = 20_000;

/// The process-wide hub between the recorder layer and the agent runtime(s).
pub struct Hub {
    live: broadcast::Sender<SpanRecord>,
    pending: Mutex<VecDeque<RecordedSpan>>,
    dropped: AtomicU64,
    wake: tokio::sync::Notify,
}

/// The hub (created on first use).
pub fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| Hub {
        live: broadcast::channel(4096).0,
        pending: Mutex::new(VecDeque::new()),
        dropped: AtomicU64::new(0),
        wake: tokio::sync::Notify::new(),
    })
}

impl Hub {
    /// Live span events: started (no `end_us`) and finished records.
    pub fn subscribe(&self) -> broadcast::Receiver<SpanRecord> {
        self.live.subscribe()
    }

    /// Finished spans not yet stored, oldest first.
    pub fn take_pending(&self) -> Vec<RecordedSpan> {
        let mut pending = self.lock();
        // The next batch is likely about as big: allocate for it once, not as it grows.
        let next = VecDeque::with_capacity(pending.len());
        Vec::from(std::mem::replace(&mut *pending, next))
    }

    /// Spans dropped because the store fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Wait until there is something to store.
    pub async fn wait_for_pending(&self) {
        self.wake.notified().await
    }

    /// Tell live subscribers, if there are any (the API's record is built only for them).
    fn announce(&self, span: &RecordedSpan) {
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(span.to_record());
        }
    }

    fn finished(&self, span: RecordedSpan) {
        self.announce(&span);
        let mut pending = self.lock();
        if pending.len() >= BUFFER_LIMIT {
            pending.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        pending.push_back(span);
        drop(pending);
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<RecordedSpan>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The tracing layer that records [`SPAN_TARGET`] spans into the [`hub`].
#[derive(Default)]
pub struct SpanRecorder;

/// What the layer keeps in a span's extensions while it is open.
struct Open(RecordedSpan);

/// Unix microseconds now.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Random W3C ids; all-zero ids are invalid, so zero (a 2⁻⁶⁴ chance) becomes one.
fn new_trace_id() -> u128 {
    rand::random::<u128>().max(1)
}

fn new_span_id() -> u64 {
    rand::random::<u64>().max(1)
}

impl<S> Layer<S> for SpanRecorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if span.metadata().target() != SPAN_TARGET {
            return;
        }
        // The nearest recorded ancestor is the parent; its trace (and session, turn) is ours.
        let parent = span.scope().skip(1).find_map(|ancestor| {
            ancestor
                .extensions()
                .get::<Open>()
                .map(|open| (open.0.trace_id, open.0.span_id, open.0.session_id.clone(), open.0.turn_id.clone()))
        });
        let (trace_id, parent_span_id, session_id, turn_id) = match parent {
            Some((trace, parent, session, turn)) => (trace, Some(parent), session, turn),
            None => (new_trace_id(), None, None, None),
        };
        let mut record = RecordedSpan {
            trace_id,
            span_id: new_span_id(),
            parent_span_id,
            name: span.metadata().name(),
            session_id,
            turn_id,
            start_us: now_us(),
            end_us: None,
            attributes: Vec::with_capacity(span.metadata().fields().len()),
        };
        attrs.record(&mut Fields(&mut record));
        hub().announce(&record);
        span.extensions_mut().insert(Open(record));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(open) = extensions.get_mut::<Open>() {
            values.record(&mut Fields(&mut open.0));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(Open(mut record)) = span.extensions_mut().remove::<Open>() else { return };
        record.end_us = Some(now_us());
        hub().finished(record);
    }
}

/// Collects span fields into a span's attributes. Empty fields (declared, not yet
/// recorded) never reach it.
struct Fields<'a>(&'a mut RecordedSpan);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.set(field.name(), AttributeValue::Str(smol_str::format_smolstr!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.set(field.name(), AttributeValue::Str(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.set(field.name(), AttributeValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.set(field.name(), AttributeValue::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.set(field.name(), AttributeValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.set(field.name(), AttributeValue::Bool(value));
    }
}

/// `[telemetry]` in the config file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Record spans at all (the live view and history need it; off only to measure overhead).
    pub enabled: bool,
    /// Record message text and tool arguments in spans (off: only sizes, names, timings).
    pub capture_content: bool,
    /// Keep spans this many days.
    pub retention_days: u32,
    /// Keep at most this many spans (oldest go first).
    pub max_spans: u32,
    /// Opt-in export to an OTLP/HTTP receiver.
    pub otlp: export::OtlpConfig,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: true,
            capture_content: false,
            retention_days: 7,
            max_spans: 200_000,
            otlp: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn spans_nest_carry_ids_and_report_errors() {
        let subscriber = tracing_subscriber::registry().with(SpanRecorder);
        let mut live = hub().subscribe();
        tracing::subscriber::with_default(subscriber, || {
            let turn = tracing::info_span!(target: SPAN_TARGET, "unit-test turn", pryx.session.id = "s-unit", pryx.turn.id = "t-unit");
            let _entered = turn.enter();
            let tool = tracing::info_span!(target: SPAN_TARGET, "execute_tool", gen_ai.tool.name = "fs_read", error.type = tracing::field::Empty);
            tool.record("error.type", "denied");
            drop(tool);
            // Spans of other targets are not recorded.
            let _ignored = tracing::info_span!("not recorded");
        });
        let mut seen = Vec::new();
        while let Ok(record) = live.try_recv() {
            if record.session_id.as_deref() == Some("s-unit") {
                seen.push(record);
            }
        }
        let finished: Vec<&SpanRecord> = seen.iter().filter(|r| r.end_us.is_some()).collect();
        let turn = finished.iter().find(|r| r.name == "unit-test turn").expect("turn recorded");
        let tool = finished.iter().find(|r| r.name == "execute_tool").expect("tool recorded");
        assert_eq!(tool.parent_span_id.as_deref(), Some(turn.span_id.as_str()));
        assert_eq!(tool.trace_id, turn.trace_id);
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        assert!(hex(&turn.trace_id, 32) && hex(&turn.span_id, 16), "W3C-sized ids: {} {}", turn.trace_id, turn.span_id);
        assert_eq!((tool.turn_id.as_deref(), tool.status.as_str()), (Some("t-unit"), "error"));
        assert_eq!(tool.attributes["gen_ai.tool.name"], "fs_read");
        assert!(seen.iter().any(|r| r.name == "unit-test turn" && r.end_us.is_none()), "a started event came first");
        assert!(!seen.iter().any(|r| r.name == "not recorded"));
    }
}
