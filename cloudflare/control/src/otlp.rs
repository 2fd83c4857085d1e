//! Private OTLP/HTTP trace ingest: decode, scrub, re-encode.
//!
//! Takes an `ExportTraceServiceRequest` as protobuf or as OTLP JSON (hex ids, camelCase),
//! plain or gzip-compressed; masks personal data ([`crate::scrub`]) in every string it
//! carries — span and event names, status messages, and the attributes of spans, events,
//! links, scopes and resources, through arrays and key-value lists — and removes content
//! attributes (prompts, completions, tool arguments) unless the operator allows them.
//! What it masked is counted the way the OpenTelemetry Collector's redaction processor
//! reports it: `redaction.masked.count` / `.keys` and `redaction.redacted.count` / `.keys`
//! on the span (or on the resource, for resource and scope attributes), plus
//! `redaction.masked.kinds`.
//!
//! Spans whose ids are not valid OTLP ids are dropped and reported as partial success, as
//! the OTLP specification prescribes. The forwarded request is always protobuf.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::http::{media_type, Reply};
use crate::scrub::{scrub, Tally};

/// The largest body accepted as sent (compressed or not).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// The largest body accepted after decompression: a gzip bomb stops here.
pub const MAX_DECODED: usize = 16 * 1024 * 1024;
pub const CONTENT_TYPES: &[&str] = &["application/x-protobuf", "application/json"];

/// Attribute keys that hold what people said to the model or what it answered. Matched as
/// prefixes, so indexed legacy forms (`gen_ai.prompt.0.content`) are covered.
const CONTENT_KEYS: &[&str] = &[
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "llm.prompts",
    "llm.completions",
    "input.value",
    "output.value",
    "pryx.user_message",
    "pryx.assistant_message",
];

/// The wire encoding of a request, and of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// `None` for anything OTLP/HTTP does not define.
    pub fn from_content_type(content_type: Option<&str>) -> Option<Encoding> {
        match media_type(content_type).as_str() {
            "application/x-protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }
}

/// What the operator allows through.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Keep prompt, completion and tool-argument attributes (still scrubbed).
    pub allow_content: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    #[error("the content encoding {0:?} is not supported (use gzip or none)")]
    ContentEncoding(String),
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("the body decompresses to more than {MAX_DECODED} bytes")]
    Inflated,
    #[error("the body is not valid gzip")]
    Gzip,
    #[error("the body is not an OTLP ExportTraceServiceRequest: {0}")]
    Malformed(String),
}

impl IngestError {
    pub fn status(&self) -> u16 {
        match self {
            IngestError::ContentEncoding(_) => 415,
            IngestError::TooLarge | IngestError::Inflated => 413,
            IngestError::Gzip | IngestError::Malformed(_) => 400,
        }
    }
}

/// What scrubbing did to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub accepted_spans: u64,
    pub rejected_spans: u64,
    pub masked: Tally,
    pub removed: u32,
}

/// Undoes the content encoding, within the limits.
pub fn inflate(content_encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, IngestError> {
    if body.len() > MAX_BODY {
        return Err(IngestError::TooLarge);
    }
    match content_encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .take(MAX_DECODED as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|_| IngestError::Gzip)?;
            if out.len() > MAX_DECODED {
                return Err(IngestError::Inflated);
            }
            Ok(out)
        }
        Some(other) => Err(IngestError::ContentEncoding(other.to_string())),
    }
}

/// Decodes a (decompressed) request body.
pub fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, IngestError> {
    match encoding {
        Encoding::Protobuf => {
            ExportTraceServiceRequest::decode(body).map_err(|e| IngestError::Malformed(e.to_string()))
        }
        Encoding::Json => serde_json::from_slice(body).map_err(|e| IngestError::Malformed(e.to_string())),
    }
}

/// The protobuf the backend receives.
pub fn encode_for_backend(request: &ExportTraceServiceRequest) -> Vec<u8> {
    request.encode_to_vec()
}

fn is_content_key(key: &str) -> bool {
    CONTENT_KEYS
        .iter()
        .any(|prefix| key.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')))
}

/// Strings already found clean in this request. Traces repeat themselves (model names,
/// URLs, operation names, session ids), and a lookup costs a fraction of a scan. The keys
/// come from the sender, so the hasher stays std's SipHash: a faster, predictable one would
/// let crafted collisions turn the cache into a CPU bill.
#[derive(Default)]
struct CleanStrings(HashSet<String>);

impl CleanStrings {
    const MAX_ENTRIES: usize = 4096;
    const MAX_LEN: usize = 256;
}

/// Redactions within one span, or one resource with its scopes.
struct Record<'c> {
    clean: &'c mut CleanStrings,
    masked: Tally,
    masked_keys: BTreeSet<String>,
    removed_keys: BTreeSet<String>,
    removed: u32,
}

impl<'c> Record<'c> {
    fn new(clean: &'c mut CleanStrings) -> Self {
        Record {
            clean,
            masked: Tally::default(),
            masked_keys: BTreeSet::new(),
            removed_keys: BTreeSet::new(),
            removed: 0,
        }
    }

    fn text(&mut self, key: &str, text: &mut String) {
        if self.clean.0.contains(text.as_str()) {
            return;
        }
        let before = self.masked.total();
        match scrub(text, &mut self.masked) {
            Some(clean) => *text = clean,
            None if text.len() <= CleanStrings::MAX_LEN && self.clean.0.len() < CleanStrings::MAX_ENTRIES => {
                self.clean.0.insert(text.clone());
            }
            None => {}
        }
        if self.masked.total() > before {
            self.masked_keys.insert(key.to_string());
        }
    }

    fn value(&mut self, key: &str, value: &mut AnyValue) {
        match &mut value.value {
            // `service.version = "1.2.3.4"` is a version, though it has an address's shape.
            Some(AnyValueKind::StringValue(text)) if is_version(key, text) => {}
            Some(AnyValueKind::StringValue(text)) => self.text(key, text),
            Some(AnyValueKind::ArrayValue(array)) => {
                for item in &mut array.values {
                    self.value(key, item);
                }
            }
            // Nested values are reported under the attribute that holds them.
            Some(AnyValueKind::KvlistValue(list)) => {
                for nested in &mut list.values {
                    if let Some(value) = &mut nested.value {
                        self.value(key, value);
                    }
                }
            }
            Some(AnyValueKind::BytesValue(bytes)) => {
                // Bytes that are text are scrubbed as text; other bytes are kept as sent.
                if let Ok(text) = std::str::from_utf8(bytes) {
                    let mut text = text.to_string();
                    let before = self.masked.total();
                    self.text(key, &mut text);
                    if self.masked.total() > before {
                        *bytes = text.into_bytes();
                    }
                }
            }
            _ => {}
        }
    }

    /// Scrubs a list of attributes in place; forged redaction counts and (unless allowed)
    /// content attributes are removed.
    fn attributes(&mut self, attributes: &mut Vec<KeyValue>, policy: &Policy) {
        attributes.retain(|kv| {
            if kv.key.starts_with("redaction.") {
                return false;
            }
            if !policy.allow_content && is_content_key(&kv.key) {
                self.removed += 1;
                self.removed_keys.insert(kv.key.clone());
                return false;
            }
            true
        });
        for KeyValue { key, value, .. } in attributes.iter_mut() {
            if let Some(value) = value {
                self.value(key, value);
            }
        }
    }

    /// Appends the redaction processor's attributes, when anything was redacted.
    fn report(self, attributes: &mut Vec<KeyValue>, outcome: &mut Outcome) {
        let masked = self.masked.total();
        outcome.masked.merge(&self.masked);
        outcome.removed += self.removed;
        if masked > 0 {
            attributes.push(int("redaction.masked.count", masked.into()));
            attributes.push(string("redaction.masked.keys", join(&self.masked_keys)));
            let kinds: Vec<&str> = self.masked.kinds().map(|k| k.name()).collect();
            attributes.push(string("redaction.masked.kinds", kinds.join(",")));
        }
        if self.removed > 0 {
            attributes.push(int("redaction.redacted.count", self.removed.into()));
            attributes.push(string("redaction.redacted.keys", join(&self.removed_keys)));
        }
    }
}

fn is_version(key: &str, text: &str) -> bool {
    key.ends_with("version") && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn join(keys: &BTreeSet<String>) -> String {
    keys.iter().map(String::as_str).collect::<Vec<_>>().join(",")
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(AnyValueKind::IntValue(value)) }),
        ..Default::default()
    }
}

fn string(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(AnyValueKind::StringValue(value)) }),
        ..Default::default()
    }
}

/// Valid OTLP ids: 16-byte trace id and 8-byte span id, not all zero; parent empty or 8.
fn has_valid_ids(span: &Span) -> bool {
    let nonzero = |id: &[u8]| id.iter().any(|b| *b != 0);
    span.trace_id.len() == 16
        && nonzero(&span.trace_id)
        && span.span_id.len() == 8
        && nonzero(&span.span_id)
        && (span.parent_span_id.is_empty() || span.parent_span_id.len() == 8)
}

fn scrub_span(span: &mut Span, policy: &Policy, clean: &mut CleanStrings, outcome: &mut Outcome) {
    let mut record = Record::new(clean);
    record.text("span.name", &mut span.name);
    record.attributes(&mut span.attributes, policy);
    for event in &mut span.events {
        record.text("event.name", &mut event.name);
        record.attributes(&mut event.attributes, policy);
    }
    for link in &mut span.links {
        record.attributes(&mut link.attributes, policy);
    }
    if let Some(status) = &mut span.status {
        record.text("status.message", &mut status.message);
    }
    record.report(&mut span.attributes, outcome);
}

/// Scrubs a request in place and drops the spans with invalid ids.
pub fn scrub_request(request: &mut ExportTraceServiceRequest, policy: &Policy) -> Outcome {
    let mut outcome = Outcome::default();
    let mut clean = CleanStrings::default();
    // The resource's record lives across its spans, so it keeps its own cache.
    let mut resource_clean = CleanStrings::default();
    for resource_spans in &mut request.resource_spans {
        let mut resource_record = Record::new(&mut resource_clean);
        let mut resource_attributes =
            resource_spans.resource.as_mut().map(|r| std::mem::take(&mut r.attributes)).unwrap_or_default();
        resource_record.attributes(&mut resource_attributes, policy);
        for scope_spans in &mut resource_spans.scope_spans {
            if let Some(scope) = &mut scope_spans.scope {
                resource_record.attributes(&mut scope.attributes, policy);
            }
            let before = scope_spans.spans.len();
            scope_spans.spans.retain(has_valid_ids);
            outcome.rejected_spans += (before - scope_spans.spans.len()) as u64;
            for span in &mut scope_spans.spans {
                scrub_span(span, policy, &mut clean, &mut outcome);
                outcome.accepted_spans += 1;
            }
        }
        resource_record.report(&mut resource_attributes, &mut outcome);
        if let Some(resource) = &mut resource_spans.resource {
            resource.attributes = resource_attributes;
        } else if !resource_attributes.is_empty() {
            resource_spans.resource = Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: resource_attributes,
                ..Default::default()
            });
        }
    }
    outcome
}

/// `google.rpc.Status`, the body of every OTLP/HTTP error answer.
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The `ExportTracePartialSuccess` part of a success answer (encoded by hand so the answer
/// does not depend on the request types' serde shape).
#[derive(Clone, PartialEq, prost::Message)]
struct PartialSuccess {
    #[prost(int64, tag = "1")]
    rejected_spans: i64,
    #[prost(string, tag = "2")]
    error_message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    partial_success: Option<PartialSuccess>,
}

fn typed(encoding: Encoding, status: u16, body: Vec<u8>) -> Reply {
    Reply {
        status,
        content_type: match encoding {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        },
        headers: Vec::new(),
        body,
    }
}

/// The success answer; with `partial_success` when spans were rejected.
pub fn success_reply(encoding: Encoding, outcome: &Outcome) -> Reply {
    let partial = (outcome.rejected_spans > 0).then(|| PartialSuccess {
        rejected_spans: outcome.rejected_spans as i64,
        error_message: format!("{} span(s) had an invalid trace or span id and were dropped", outcome.rejected_spans),
    });
    let body = match (encoding, &partial) {
        (Encoding::Protobuf, _) => ExportResponse { partial_success: partial.clone() }.encode_to_vec(),
        (Encoding::Json, None) => b"{}".to_vec(),
        (Encoding::Json, Some(p)) => serde_json::to_vec(&json!({
            "partialSuccess": { "rejectedSpans": p.rejected_spans.to_string(), "errorMessage": p.error_message }
        }))
        .unwrap_or_default(),
    };
    typed(encoding, 200, body)
}

/// An error answer in OTLP's shape (`google.rpc.Status`), in the request's encoding.
pub fn error_reply(encoding: Encoding, status: u16, message: &str) -> Reply {
    // gRPC codes: INVALID_ARGUMENT, UNAUTHENTICATED, RESOURCE_EXHAUSTED, UNAVAILABLE, ...
    let code = match status {
        400 | 413 | 415 => 3,
        401 | 403 => 16,
        429 => 8,
        502..=504 => 14,
        405 => 12,
        _ => 13,
    };
    let body = match encoding {
        Encoding::Protobuf => Status { code, message: message.to_string() }.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&json!({ "code": code, "message": message })).unwrap_or_default(),
    };
    typed(encoding, status, body)
}

/// Everything between a received body and the bytes to forward.
pub fn ingest(
    encoding: Encoding,
    content_encoding: Option<&str>,
    body: &[u8],
    policy: &Policy,
) -> Result<(Vec<u8>, Outcome), IngestError> {
    let raw = inflate(content_encoding, body)?;
    let mut request = decode(encoding, &raw)?;
    let outcome = scrub_request(&mut request, policy);
    Ok((encode_for_backend(&request), outcome))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status as SpanStatus};

    use super::*;

    fn s(text: &str) -> Option<AnyValue> {
        Some(AnyValue { value: Some(AnyValueKind::StringValue(text.into())) })
    }

    fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue { key: key.into(), value, ..Default::default() }
    }

    fn new_span(name: &str, attributes: Vec<KeyValue>) -> Span {
        Span { trace_id: vec![0xab; 16], span_id: vec![0xcd; 8], name: name.into(), attributes, ..Default::default() }
    }

    fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: resource, ..Default::default() }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "pryx".into(),
                        attributes: vec![kv("scope.owner", s("dev@example.com"))],
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValueKind> {
        attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn text_of<'a>(attributes: &'a [KeyValue], key: &str) -> &'a str {
        match attribute(attributes, key) {
            Some(AnyValueKind::StringValue(s)) => s,
            other => panic!("{key} is {other:?}"),
        }
    }

    /// Every string in the encoded request, for "none of it is left" checks.
    fn leaks(request: &ExportTraceServiceRequest, planted: &[&str]) -> Vec<String> {
        let json = serde_json::to_string(request).unwrap();
        planted.iter().filter(|p| json.contains(*p)).map(|p| p.to_string()).collect()
    }

    #[test]
    fn every_place_a_string_can_hide_is_scrubbed() {
        let mut span = new_span(
            "GET /users/alice@example.com",
            vec![
                kv("http.client_ip", s("203.0.113.9")),
                kv(
                    "tags",
                    Some(AnyValue {
                        value: Some(AnyValueKind::ArrayValue(ArrayValue {
                            values: vec![s("ok").unwrap(), s("+44 20 7946 0958").unwrap()],
                        })),
                    }),
                ),
                kv(
                    "nested",
                    Some(AnyValue {
                        value: Some(AnyValueKind::KvlistValue(KeyValueList {
                            values: vec![kv("auth", s("Bearer abcdefgh12345678"))],
                        })),
                    }),
                ),
                kv("raw", Some(AnyValue { value: Some(AnyValueKind::BytesValue(b"path /home/alice/x".to_vec())) })),
                kv("redaction.masked.count", Some(AnyValue { value: Some(AnyValueKind::IntValue(0)) })),
            ],
        );
        span.events.push(Event {
            name: "mail to bob@example.org".into(),
            attributes: vec![kv("exception.message", s("card 4111 1111 1111 1111 declined"))],
            ..Default::default()
        });
        span.links.push(Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            attributes: vec![kv("peer", s("2001:db8::7334:1"))],
            ..Default::default()
        });
        span.status = Some(SpanStatus { message: "key sk-proj-abcdefghijklmnopqrstuvwxyz rejected".into(), code: 2 });
        let mut req =
            request(vec![kv("host.name", s("alice-laptop")), kv("user.email", s("carol@example.net"))], vec![span]);
        let outcome = scrub_request(&mut req, &Policy::default());
        let planted = [
            "alice@example.com",
            "203.0.113.9",
            "7946",
            "abcdefgh12345678",
            "/home/alice",
            "bob@example.org",
            "4111",
            "2001:db8",
            "sk-proj",
            "carol@example.net",
            "dev@example.com",
        ];
        assert_eq!(leaks(&req, &planted), Vec::<String>::new());
        assert_eq!(outcome.accepted_spans, 1);
        assert_eq!(outcome.masked.total(), 11);

        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.name, "GET /users/[REDACTED:email]");
        assert_eq!(
            attribute(&span.attributes, "redaction.masked.count"),
            Some(&AnyValueKind::IntValue(9)),
            "the forged count is replaced"
        );
        assert_eq!(
            text_of(&span.attributes, "redaction.masked.keys"),
            "event.name,exception.message,http.client_ip,nested,peer,raw,span.name,status.message,tags"
        );
        assert_eq!(
            text_of(&span.attributes, "redaction.masked.kinds"),
            "api_key,bearer_token,card_number,email,ipv6,ipv4,phone,user"
        );
        let resource = &req.resource_spans[0].resource.as_ref().unwrap().attributes;
        assert_eq!(attribute(resource, "redaction.masked.count"), Some(&AnyValueKind::IntValue(2)));
        assert_eq!(text_of(resource, "host.name"), "alice-laptop", "host names are not personal data by shape");
    }

    #[test]
    fn content_attributes_are_removed_unless_allowed_and_then_still_scrubbed() {
        let attributes = || {
            vec![
                kv("gen_ai.tool.call.arguments", s(r#"{"to":"eve@example.com"}"#)),
                kv("gen_ai.prompt.0.content", s("hello")),
                kv("pryx.user_message", s("my number is +1 202 555 0143")),
                kv("gen_ai.request.model", s("gpt-4o")),
                kv("gen_ai.promptness", s("kept: not a content key")),
                kv("service.version", s("10.1.2.3")),
                kv("build.label", s("10.1.2.3")),
            ]
        };
        let mut req = request(vec![], vec![new_span("chat", attributes())]);
        let outcome = scrub_request(&mut req, &Policy::default());
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(outcome.removed, 3);
        assert!(attribute(&span.attributes, "gen_ai.tool.call.arguments").is_none());
        assert_eq!(text_of(&span.attributes, "gen_ai.request.model"), "gpt-4o");
        assert_eq!(text_of(&span.attributes, "gen_ai.promptness"), "kept: not a content key");
        assert_eq!(text_of(&span.attributes, "service.version"), "10.1.2.3", "a version is no address");
        assert_eq!(text_of(&span.attributes, "build.label"), "[REDACTED:ipv4]");
        assert_eq!(attribute(&span.attributes, "redaction.redacted.count"), Some(&AnyValueKind::IntValue(3)));
        assert_eq!(
            text_of(&span.attributes, "redaction.redacted.keys"),
            "gen_ai.prompt.0.content,gen_ai.tool.call.arguments,pryx.user_message"
        );

        let mut allowed = request(vec![], vec![new_span("chat", attributes())]);
        scrub_request(&mut allowed, &Policy { allow_content: true });
        let span = &allowed.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(text_of(&span.attributes, "gen_ai.tool.call.arguments"), r#"{"to":"[REDACTED:email]"}"#);
        assert_eq!(text_of(&span.attributes, "pryx.user_message"), "my number is [REDACTED:phone]");
    }

    #[test]
    fn spans_with_invalid_ids_are_dropped_and_reported_as_partial_success() {
        let good = new_span("ok", vec![]);
        let short_trace = Span { trace_id: vec![1; 8], ..new_span("bad", vec![]) };
        let zero_span = Span { span_id: vec![0; 8], ..new_span("bad", vec![]) };
        let odd_parent = Span { parent_span_id: vec![1; 3], ..new_span("bad", vec![]) };
        let mut req = request(vec![], vec![good, short_trace, zero_span, odd_parent]);
        let outcome = scrub_request(&mut req, &Policy::default());
        assert_eq!((outcome.accepted_spans, outcome.rejected_spans), (1, 3));

        let json: serde_json::Value = serde_json::from_slice(&success_reply(Encoding::Json, &outcome).body).unwrap();
        assert_eq!(json["partialSuccess"]["rejectedSpans"], "3");
        let proto = ExportResponse::decode(&*success_reply(Encoding::Protobuf, &outcome).body).unwrap();
        assert_eq!(proto.partial_success.unwrap().rejected_spans, 3);
        let clean = success_reply(Encoding::Json, &Outcome { accepted_spans: 1, ..Default::default() });
        assert_eq!((clean.status, clean.text().as_str()), (200, "{}"));
        assert!(success_reply(Encoding::Protobuf, &Outcome::default()).body.is_empty());
    }

    /// The JSON encoding as the OTLP specification's example shows it.
    const SPEC_JSON: &str = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{
          "scope": {"name": "my.library", "version": "1.0.0"},
          "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "spanId": "EEE19B7EC3C1B174",
            "parentSpanId": "EEE19B7EC3C1B173",
            "name": "I'm a server span for 198.51.100.23",
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": 1544712661000000000,
            "kind": 2,
            "attributes": [
              {"key": "my.span.attr", "value": {"stringValue": "contact ops@example.com"}},
              {"key": "count", "value": {"intValue": "42"}}
            ]
          }]
        }]
      }]
    }"#;

    #[test]
    fn both_encodings_decode_to_the_same_request() {
        let from_json = decode(Encoding::Json, SPEC_JSON.as_bytes()).unwrap();
        let span = &from_json.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id[0], 0x5B);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(attribute(&span.attributes, "count"), Some(&AnyValueKind::IntValue(42)));
        let from_proto = decode(Encoding::Protobuf, &from_json.encode_to_vec()).unwrap();
        assert_eq!(from_json, from_proto);

        let (forwarded, outcome) = ingest(Encoding::Json, None, SPEC_JSON.as_bytes(), &Policy::default()).unwrap();
        assert_eq!(outcome.masked.total(), 2);
        let forwarded = ExportTraceServiceRequest::decode(&*forwarded).unwrap();
        assert_eq!(forwarded.resource_spans[0].scope_spans[0].spans[0].name, "I'm a server span for [REDACTED:ipv4]");
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_is_accepted_and_bombs_and_oversize_bodies_are_not() {
        let body = request(vec![], vec![new_span("x", vec![])]).encode_to_vec();
        let (_, outcome) = ingest(Encoding::Protobuf, Some("gzip"), &gzip(&body), &Policy::default()).unwrap();
        assert_eq!(outcome.accepted_spans, 1);

        // 64 MiB of zeros compress to about 64 KiB.
        let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
        assert!(bomb.len() < MAX_BODY);
        assert_eq!(inflate(Some("gzip"), &bomb), Err(IngestError::Inflated));
        assert_eq!(inflate(None, &vec![0u8; MAX_BODY + 1]), Err(IngestError::TooLarge));
        assert_eq!(inflate(Some("gzip"), b"not gzip at all"), Err(IngestError::Gzip));
        assert_eq!(inflate(Some("br"), b"x").map_err(|e| e.status()), Err(415));
    }

    #[test]
    fn malformed_bodies_get_otlps_error_shape() {
        let err = decode(Encoding::Protobuf, &[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(decode(Encoding::Json, b"{\"resourceSpans\": 3}").is_err());
        assert!(
            decode(Encoding::Json, br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#).is_err()
        );

        let reply = error_reply(Encoding::Protobuf, 400, "bad");
        let status = Status::decode(&*reply.body).unwrap();
        assert_eq!((status.code, status.message.as_str()), (3, "bad"));
        let reply = error_reply(Encoding::Json, 401, "no token");
        assert_eq!(reply.text(), r#"{"code":16,"message":"no token"}"#);
    }
}
