//! Telemetry cost per span (`./x bench`, or `cargo bench --bench telemetry`): what it costs
//! to record, store and export one span shaped like the one every webhook gets
//! (`channel.receive`: four string attributes, a status code, two later records).
//!
//! The export figure is split once more: what the `tracing-opentelemetry` layer costs by
//! itself (handing spans to a tracer that does nothing), the rest being the OpenTelemetry
//! SDK's batching, protobuf encoding and sending.
//!
//! Measured in this process, with nothing else competing, as CPU time (all threads: the
//! recorder's, SQLite's, the OpenTelemetry SDK's) per span, so the figures hold to a few
//! percent from run to run where an end-to-end comparison on two shared cores swings by
//! ten. The channel benchmark measures what a whole delivery costs on the same machine;
//! telemetry's overhead on webhook throughput is the sum of these over that.
//! Figures are printed, not asserted.

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/otlp_sink.rs"]
mod otlp_sink;

use std::time::Duration;

use pryx::telemetry::history::{Retention, SpanHistory};
use pryx::telemetry::{hub, AttributeValue, RecordedSpan, SpanRecorder, SPAN_TARGET};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// Spans per measurement, and per batch handed to the store (about 250 ms at 8,000 a second).
const SPANS: usize = 400_000;
const BATCH: usize = 2_000;
const ROUNDS: usize = 5;
/// Spans per export measurement, made at `EXPORT_RATE` a second.
const EXPORT_SPANS: usize = 16_000;
const EXPORT_RATE: u32 = 8_000;
/// Threads whose CPU time is not Pryx's (the OTLP receiver stand-in).
const SINK_THREAD: &str = "otlp-sink";

/// CPU time of this process's threads so far, leaving out the receiver stand-in's.
fn cpu_time() -> Duration {
    cpu::cpu_time("self", |task| {
        !std::fs::read_to_string(task.join("comm")).is_ok_and(|comm| comm.trim() == SINK_THREAD)
    })
}

/// One webhook's span, as `channels::receive_span` opens it and the handler completes it.
fn webhook_span() {
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "channel.receive",
        messaging.system = "telegram",
        messaging.operation.type = "receive",
        pryx.channel.via = "webhook",
        pryx.channel.outcome = "ignored",
        http.response.status_code = tracing::field::Empty,
    );
    span.record("http.response.status_code", 200);
    span.record("pryx.channel.outcome", "recorded");
}

/// How spans are made: as fast as possible, or at a webhook-like rate.
#[derive(Clone, Copy)]
enum Pace {
    Flat,
    /// Spans per second, made 100 at a time (the OTLP exporter sends on a timer and keeps a
    /// bounded queue, so spans made faster than it sends would only measure dropping).
    PerSecond(u32),
}

/// Median over rounds of CPU µs per span for `spans` webhook spans under `subscriber`,
/// with closed spans taken from the hub (and dropped) a batch at a time, as the store
/// writer would.
fn spans_under<S>(subscriber: S, spans: usize, pace: Pace) -> f64
where
    S: tracing::Subscriber + Send + Sync + 'static,
{
    let dispatch = tracing::Dispatch::new(subscriber);
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            tracing::dispatcher::with_default(&dispatch, || {
                let (before, start) = (cpu_time(), std::time::Instant::now());
                for i in 0..spans {
                    webhook_span();
                    if i % BATCH == 0 {
                        drop(hub().take_pending());
                    }
                    if let Pace::PerSecond(rate) = pace {
                        if i % 100 == 99 {
                            std::thread::sleep(
                                (start + Duration::from_secs(1) * (i as u32 + 1) / rate)
                                    .saturating_duration_since(std::time::Instant::now()),
                            );
                        }
                    }
                }
                drop(hub().take_pending());
                if let Pace::PerSecond(_) = pace {
                    // Let the exporter's thread send what is queued, so its work is counted.
                    std::thread::sleep(Duration::from_millis(700));
                }
                (cpu_time() - before).as_secs_f64() * 1e6 / spans as f64
            })
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

/// Only spans on the telemetry target (as `main` filters the recorder and export layers).
fn only_spans() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::filter_fn(|m| m.target() == SPAN_TARGET)
}

fn recorded(n: i64) -> RecordedSpan {
    let start_us = pryx::store::now_ms() * 1000;
    RecordedSpan {
        trace_id: rand::random::<u128>().max(1),
        span_id: rand::random::<u64>().max(1),
        parent_span_id: None,
        name: "channel.receive",
        session_id: None,
        turn_id: None,
        start_us: start_us + n,
        end_us: Some(start_us + n + 80),
        attributes: vec![
            ("messaging.system", AttributeValue::Str("telegram".into())),
            ("messaging.operation.type", AttributeValue::Str("receive".into())),
            ("pryx.channel.via", AttributeValue::Str("webhook".into())),
            ("pryx.channel.outcome", AttributeValue::Str("recorded".into())),
            ("http.response.status_code", AttributeValue::I64(200)),
        ],
    }
}

/// CPU µs per span to store batches of webhook spans, with trimming under way.
async fn storing() -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = SpanHistory::open_beside(&dir.path().join("pryx.db")).await.expect("span history");
    // Small enough that every batch also trims, as on a busy instance with a full history.
    let retention = Retention { days: 7, max_spans: 20_000 };
    let mut rounds = Vec::new();
    for round in 0..ROUNDS + 1 {
        let batches: Vec<Vec<RecordedSpan>> =
            (0..SPANS / BATCH / 4).map(|b| (0..BATCH).map(|i| recorded((b * BATCH + i) as i64)).collect()).collect();
        let before = cpu_time();
        for batch in &batches {
            history.add(batch, retention).await.expect("store spans");
        }
        let per_span = (cpu_time() - before).as_secs_f64() * 1e6 / (SPANS / 4) as f64;
        if round > 0 {
            rounds.push(per_span); // the first fills the table
        }
    }
    history.close().await;
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

fn main() {
    pryx::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let sink_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SINK_THREAD)
        .enable_all()
        .build()
        .expect("sink runtime");

    // What every instance pays: the registry's span, with a layer interested in it.
    let without = spans_under(
        tracing_subscriber::registry().with(tracing_subscriber::layer::Identity::new().with_filter(only_spans())),
        SPANS,
        Pace::Flat,
    );
    let with_recorder =
        spans_under(tracing_subscriber::registry().with(SpanRecorder.with_filter(only_spans())), SPANS, Pace::Flat);
    let stored = runtime.block_on(storing());
    // The export layer with a tracer that does nothing: what `tracing-opentelemetry` itself
    // costs on the thread that makes the span, before the SDK does anything.
    let with_layer_alone = spans_under(
        tracing_subscriber::registry().with(SpanRecorder.with_filter(only_spans())).with(
            pryx::telemetry::export::layer(opentelemetry::trace::noop::NoopTracer::new()).with_filter(only_spans()),
        ),
        SPANS,
        Pace::Flat,
    );

    let sink = sink_runtime.block_on(otlp_sink::otlp_sink());
    let otlp = pryx::telemetry::export::OtlpConfig { endpoint: Some(format!("http://{sink}")), ..Default::default() };
    let secrets = pryx::secrets::SecretsHandle::new(pryx::secrets::BackendChoice::Injected);
    let _guard = runtime.enter();
    let (exporter, layer) = pryx::telemetry::export::build(&otlp, &secrets).expect("build export").expect("configured");
    // The recorder alone at the same pace, so pacing's own cost cancels out.
    let paced = Pace::PerSecond(EXPORT_RATE);
    let recorder_paced =
        spans_under(tracing_subscriber::registry().with(SpanRecorder.with_filter(only_spans())), EXPORT_SPANS, paced);
    let with_export = spans_under(
        tracing_subscriber::registry()
            .with(SpanRecorder.with_filter(only_spans()))
            .with(layer.with_filter(only_spans())),
        EXPORT_SPANS,
        paced,
    );
    exporter.shutdown();
    let status = pryx::telemetry::export::stats().status();

    println!("telemetry, a webhook span without telemetry (registry only): {without:.2} µs");
    println!(
        "telemetry, recording one span: {:.2} µs ({with_recorder:.2} µs with the recorder)",
        with_recorder - without
    );
    println!("telemetry, storing one span (batches of {BATCH}, trimming): {stored:.2} µs");
    let exported = with_export - recorder_paced;
    println!("telemetry, exporting one span by OTLP/HTTP at {EXPORT_RATE}/s: {exported:.2} µs ({status:?})");
    println!(
        "telemetry, of which the tracing-opentelemetry layer alone (a no-op tracer): {:.2} µs",
        with_layer_alone - with_recorder
    );
    let on = with_recorder - without + stored;
    println!("telemetry, per webhook: {on:.2} µs on, {:.2} µs on with export", on + exported);
}
