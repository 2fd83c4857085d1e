//! CPU per OTLP request of 100 spans, natively: decode, scrub, re-encode (what the Worker
//! does per request, minus the fetch). Cloudflare bills Worker CPU milliseconds; the target
//! is under 1 ms per request. Run with `cargo bench` in cloudflare/ (or `./x bench`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use pryx_control::otlp::{decode, encode_for_backend, ingest, scrub_request, Encoding, Policy};

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// A batch shaped like Pryx's own: turns, model calls and tool calls, a few with personal
/// data in them.
pub fn batch(spans: usize) -> ExportTraceServiceRequest {
    let spans = (0..spans)
        .map(|i| {
            let mut attributes = vec![
                kv("gen_ai.operation.name", "chat"),
                kv("gen_ai.request.model", "gpt-4o-mini"),
                kv("pryx.session.id", "0193a6f2-7c1e-7d3a-9b5e-2f4c8d1e6a7b"),
                kv("server.address", "api.openai.com"),
                kv("url.full", "https://api.openai.com/v1/chat/completions"),
                kv("gen_ai.tool.name", "read_file"),
                kv("code.filepath", "/home/alice/projects/pryx/src/agent/turn.rs"),
                kv("gen_ai.tool.call.arguments", r#"{"path":"/home/alice/notes/todo.md"}"#),
            ];
            if i % 10 == 0 {
                attributes.push(kv("user.email", "alice@example.com"));
                attributes.push(kv("client.address", "203.0.113.42"));
            }
            Span {
                trace_id: vec![(i % 250) as u8 + 1; 16],
                span_id: vec![(i % 250) as u8 + 1; 8],
                name: format!("chat gpt-4o-mini #{i}"),
                start_time_unix_nano: 1_764_720_000_000_000_000 + i as u64,
                end_time_unix_nano: 1_764_720_000_500_000_000 + i as u64,
                attributes,
                events: vec![Event {
                    name: "gen_ai.choice".into(),
                    attributes: vec![kv("gen_ai.response.finish_reasons", "stop")],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "pryx"), kv("service.version", "0.1.0")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn median_per_request(encoding: Encoding, body: &[u8], content_encoding: Option<&str>) -> Duration {
    let policy = Policy::default();
    let mut samples: Vec<Duration> = (0..200)
        .map(|_| {
            let start = Instant::now();
            let out = ingest(encoding, content_encoding, black_box(body), &policy).expect("ingest");
            black_box(out);
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let request = batch(100);
    let protobuf = request.encode_to_vec();
    let json = serde_json::to_vec(&request).expect("json");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &protobuf).expect("gzip");
    let gzip = gz.finish().expect("gzip");
    println!("OTLP ingest, 100 spans per request (median of 200):");
    let stage = |label: &str, f: &mut dyn FnMut()| {
        let mut samples: Vec<Duration> = (0..200)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect();
        samples.sort();
        println!("  stage {label:<10} {:>8.3} ms", samples[100].as_secs_f64() * 1e3);
    };
    stage("decode", &mut || {
        black_box(decode(Encoding::Protobuf, black_box(&protobuf)).expect("decode"));
    });
    let decoded = decode(Encoding::Protobuf, &protobuf).expect("decode");
    stage("scrub", &mut || {
        let mut copy = decoded.clone();
        black_box(scrub_request(&mut copy, &Policy::default()));
    });
    stage("clone", &mut || {
        black_box(decoded.clone());
    });
    stage("encode", &mut || {
        black_box(encode_for_backend(black_box(&decoded)));
    });
    for (label, encoding, body, content_encoding) in [
        ("protobuf", Encoding::Protobuf, &protobuf, None),
        ("protobuf+gzip", Encoding::Protobuf, &gzip, Some("gzip")),
        ("json", Encoding::Json, &json, None),
    ] {
        let took = median_per_request(encoding, body, content_encoding);
        println!("  {label:<14} {:>7} bytes  {:>8.3} ms per request", body.len(), took.as_secs_f64() * 1e3);
    }
}
