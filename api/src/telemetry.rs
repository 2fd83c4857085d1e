//! Telemetry: spans as the API shows them, and how OTLP export is doing.

use serde::{Deserialize, Serialize};

/// Whether a span's work went well: `error` when it recorded an error type (or an
/// OpenTelemetry `ERROR` status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    Ok,
    Error,
}

impl SpanStatus {
    /// The wire name (`ok`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }
}

/// What `spans.query` asks for; every field may be left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpanQuery {
    /// Only this session's spans.
    pub session_id: Option<String>,
    /// Only spans that started at or after this (Unix µs).
    pub since_us: Option<i64>,
    /// At most this many (default 1000, at most 10000).
    pub limit: Option<u32>,
    /// The latest `limit` spans instead of the earliest (still answered oldest first).
    pub newest: Option<bool>,
}

/// One span of the agent's work (a turn, an LLM request, a tool call, an approval wait).
/// Times are Unix microseconds; `end_us` is absent while the span is still open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub session_id: Option<String>,
    pub turn_id: Option<String>,
    pub start_us: i64,
    pub end_us: Option<i64>,
    pub status: SpanStatus,
    /// OpenTelemetry-style attributes (`gen_ai.*`, `pryx.*`).
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// How OTLP export is doing (counts since the process started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportStatus {
    pub endpoint: String,
    /// Spans the receiver accepted.
    pub exported: u64,
    /// Spans in batches the receiver did not accept (down, refused, timed out).
    pub failed: u64,
    /// Spans dropped because too many were waiting.
    pub dropped: u64,
}
