//! [`RecordedSpan`]: a span as the recorder keeps it between closing and being stored.
//!
//! Under webhook load thousands of spans close every second, so their cost is mostly
//! allocation. This form keeps what `tracing` hands over without copying it: ids stay
//! numbers (hex only when written out), the name and attribute keys stay the `&'static str`
//! of the span's metadata, and attributes are a short `Vec` rather than a map. Only string
//! values are copied. It becomes the API's [`SpanRecord`] only for someone who reads it (a
//! live subscriber); the history stores it straight from this form (see [`super::codec`]).

use pryx_api::{SpanRecord, SpanStatus};
use serde_json::{Map, Value};
use smol_str::SmolStr;

/// The attribute that carries a span's session id (also kept in `RecordedSpan::session_id`,
/// by which a session's spans are stored and found).
pub const SESSION_ID: &str = "pryx.session.id";
/// The attribute that carries a span's turn id (also kept in `RecordedSpan::turn_id`).
pub const TURN_ID: &str = "pryx.turn.id";

/// One span: open (no `end_us`) or finished.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSpan {
    /// W3C trace id (16 bytes).
    pub trace_id: u128,
    /// W3C span id (8 bytes).
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    pub name: &'static str,
    pub session_id: Option<String>,
    pub turn_id: Option<String>,
    /// Unix microseconds.
    pub start_us: i64,
    pub end_us: Option<i64>,
    /// Attributes in the order first recorded; a key appears once.
    pub attributes: Vec<(&'static str, AttributeValue)>,
}

/// An attribute's value, as `tracing` records it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// Most values are short words ("telegram", "recorded"): kept inline, not allocated.
    Str(SmolStr),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl RecordedSpan {
    /// Set `key` (replacing an earlier value); session and turn ids also fill their columns.
    pub fn set(&mut self, key: &'static str, value: AttributeValue) {
        if let AttributeValue::Str(id) = &value {
            match key {
                SESSION_ID => self.session_id = Some(id.to_string()),
                TURN_ID => self.turn_id = Some(id.to_string()),
                _ => {}
            }
        }
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = value,
            None => self.attributes.push((key, value)),
        }
    }

    /// `error` when the span recorded an error, else `ok`.
    pub fn status(&self) -> SpanStatus {
        status_of(self.attributes.iter().map(|(key, value)| (*key, value)))
    }

    /// The span as the API shows it.
    pub fn to_record(&self) -> SpanRecord {
        SpanRecord {
            trace_id: trace_id_hex(self.trace_id),
            span_id: span_id_hex(self.span_id),
            parent_span_id: self.parent_span_id.map(span_id_hex),
            name: self.name.to_owned(),
            session_id: self.session_id.clone(),
            turn_id: self.turn_id.clone(),
            start_us: self.start_us,
            end_us: self.end_us,
            status: self.status(),
            attributes: self.attributes_json(),
        }
    }

    fn attributes_json(&self) -> Map<String, Value> {
        self.attributes.iter().map(|(key, value)| ((*key).to_owned(), value.clone().into_json())).collect()
    }
}

impl AttributeValue {
    /// The value as the API's JSON shows it.
    pub(super) fn into_json(self) -> Value {
        match self {
            AttributeValue::Str(s) => Value::String(s.into()),
            AttributeValue::I64(n) => n.into(),
            AttributeValue::U64(n) => n.into(),
            // JSON has no NaN or infinity.
            AttributeValue::F64(n) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
            AttributeValue::Bool(b) => b.into(),
        }
    }
}

/// `error` when the attributes record an error (`error.type`, or `otel.status_code` =
/// `ERROR`), else `ok`.
pub(super) fn status_of<'a>(mut attributes: impl Iterator<Item = (&'a str, &'a AttributeValue)>) -> SpanStatus {
    let failed = attributes.any(|(key, value)| {
        key == "error.type" || (key == "otel.status_code" && matches!(value, AttributeValue::Str(s) if s == "ERROR"))
    });
    if failed {
        SpanStatus::Error
    } else {
        SpanStatus::Ok
    }
}

/// A trace id as W3C writes it: 32 lowercase hex digits.
pub(super) fn trace_id_hex(id: u128) -> String {
    format!("{id:032x}")
}

/// A span id as W3C writes it: 16 lowercase hex digits.
pub(super) fn span_id_hex(id: u64) -> String {
    format!("{id:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> RecordedSpan {
        RecordedSpan {
            trace_id: 0xabc,
            span_id: 0x12,
            parent_span_id: Some(0x1),
            name: "execute_tool",
            session_id: None,
            turn_id: None,
            start_us: 10,
            end_us: Some(20),
            attributes: Vec::new(),
        }
    }

    #[test]
    fn a_later_value_replaces_an_earlier_one_and_ids_fill_their_columns() {
        let mut span = span();
        span.set("pryx.channel.outcome", AttributeValue::Str("ignored".into()));
        span.set(SESSION_ID, AttributeValue::Str("s-1".into()));
        span.set("pryx.channel.outcome", AttributeValue::Str("recorded".into()));
        assert_eq!(span.attributes.len(), 2);
        assert_eq!(span.session_id.as_deref(), Some("s-1"));
        let record = span.to_record();
        assert_eq!(record.attributes["pryx.channel.outcome"], "recorded");
        assert_eq!(record.attributes[SESSION_ID], "s-1");
    }

    #[test]
    fn records_carry_w3c_hex_ids_and_the_status() {
        let mut span = span();
        assert_eq!(span.status(), SpanStatus::Ok);
        span.set("otel.status_code", AttributeValue::Str("ERROR".into()));
        let record = span.to_record();
        assert_eq!(record.trace_id, "00000000000000000000000000000abc");
        assert_eq!(trace_id_hex(u128::MAX - 1), "fffffffffffffffffffffffffffffffe");
        assert_eq!(span_id_hex(0x0123_4567_89ab_cdef), "0123456789abcdef");
        assert_eq!(record.span_id, "0000000000000012");
        assert_eq!(record.parent_span_id.as_deref(), Some("0000000000000001"));
        assert_eq!(record.status, SpanStatus::Error);
    }
}
