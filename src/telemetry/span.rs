//! [`RecordedSpan`]: a span as the recorder keeps it between closing and being stored.
//!
//! Under webhook load thousands of spans close every second, so their cost is mostly
//! allocation. This form keeps what `tracing` hands over without copying it: ids stay
//! numbers (hex only when written out), the name and attribute keys stay the `&'static str`
//! of the span's metadata, and attributes are a short `Vec` rather than a map. Only string
//! values are copied. It becomes the API's [`SpanRecord`] only for someone who reads it (a
//! live subscriber); the history serializes it straight from this form, as the same JSON.

use pryx_api::SpanRecord;
use serde::ser::{Serialize, Serializer};
use serde_json::{Map, Value};

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
    Str(String),
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
                SESSION_ID => self.session_id = Some(id.clone()),
                TURN_ID => self.turn_id = Some(id.clone()),
                _ => {}
            }
        }
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = value,
            None => self.attributes.push((key, value)),
        }
    }

    /// `error` when the span recorded an error (`error.type`, or `otel.status_code` = `ERROR`),
    /// else `ok`.
    pub fn status(&self) -> &'static str {
        let failed = self.attributes.iter().any(|(key, value)| {
            *key == "error.type"
                || (*key == "otel.status_code" && matches!(value, AttributeValue::Str(s) if s == "ERROR"))
        });
        if failed {
            "error"
        } else {
            "ok"
        }
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
            status: self.status().to_owned(),
            attributes: self.attributes_json(),
        }
    }

    fn attributes_json(&self) -> Map<String, Value> {
        // Through `Serialize`, so the live record and the stored JSON cannot differ.
        self.attributes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), serde_json::to_value(value).unwrap_or(Value::Null)))
            .collect()
    }
}

/// A trace id as W3C writes it: 32 lowercase hex digits.
fn trace_id_hex(id: u128) -> String {
    hex(id, 32).as_str().to_owned()
}

/// A span id as W3C writes it: 16 lowercase hex digits.
fn span_id_hex(id: u64) -> String {
    hex(id.into(), 16).as_str().to_owned()
}

impl Serialize for AttributeValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AttributeValue::Str(s) => serializer.serialize_str(s),
            AttributeValue::I64(n) => serializer.serialize_i64(*n),
            AttributeValue::U64(n) => serializer.serialize_u64(*n),
            // JSON has no NaN or infinity.
            AttributeValue::F64(n) if !n.is_finite() => serializer.serialize_unit(),
            AttributeValue::F64(n) => serializer.serialize_f64(*n),
            AttributeValue::Bool(b) => serializer.serialize_bool(*b),
        }
    }
}

/// Serialized as its [`SpanRecord`] would be (absent ids left out, which reads back as
/// `None`), without building one.
impl Serialize for RecordedSpan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut record = serializer.serialize_struct("SpanRecord", 10)?;
        record.serialize_field("trace_id", hex(self.trace_id, 32).as_str())?;
        record.serialize_field("span_id", hex(self.span_id.into(), 16).as_str())?;
        match self.parent_span_id {
            Some(parent) => record.serialize_field("parent_span_id", hex(parent.into(), 16).as_str())?,
            None => record.skip_field("parent_span_id")?,
        }
        record.serialize_field("name", self.name)?;
        for (key, id) in [("session_id", &self.session_id), ("turn_id", &self.turn_id)] {
            match id {
                Some(id) => record.serialize_field(key, id)?,
                None => record.skip_field(key)?,
            }
        }
        record.serialize_field("start_us", &self.start_us)?;
        record.serialize_field("end_us", &self.end_us)?;
        record.serialize_field("status", self.status())?;
        record.serialize_field("attributes", &AttributesJson(&self.attributes))?;
        record.end()
    }
}

/// The last `digits` hex digits of `id`, lowercase, without going through `fmt`.
fn hex(id: u128, digits: usize) -> HexDigits {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'0'; 32];
    for (i, byte) in text[..digits].iter_mut().rev().enumerate() {
        *byte = DIGITS[((id >> (4 * i)) & 0xf) as usize];
    }
    HexDigits { text, len: digits }
}

struct HexDigits {
    text: [u8; 32],
    len: usize,
}

impl HexDigits {
    fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.text[..self.len]).unwrap_or_default()
    }
}

/// The attributes as one JSON object, written without building a map.
struct AttributesJson<'a>(&'a [(&'static str, AttributeValue)]);

impl Serialize for AttributesJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, value)| (key, value)))
    }
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
        assert_eq!(span.status(), "ok");
        span.set("otel.status_code", AttributeValue::Str("ERROR".into()));
        let record = span.to_record();
        assert_eq!(record.trace_id, "00000000000000000000000000000abc");
        assert_eq!(trace_id_hex(u128::MAX - 1), "fffffffffffffffffffffffffffffffe");
        assert_eq!(span_id_hex(0x0123_4567_89ab_cdef), "0123456789abcdef");
        assert_eq!(record.span_id, "0000000000000012");
        assert_eq!(record.parent_span_id.as_deref(), Some("0000000000000001"));
        assert_eq!(record.status, "error");
    }

    #[test]
    fn it_serializes_as_the_json_of_its_record() {
        let mut span = span();
        span.set("gen_ai.usage.input_tokens", AttributeValue::I64(12));
        span.set("pryx.ratio", AttributeValue::F64(f64::NAN));
        span.set("pryx.cost", AttributeValue::F64(0.25));
        span.set("pryx.flag", AttributeValue::Bool(true));
        span.set("text", AttributeValue::Str("it's \"quoted\"\n".into()));
        span.set(TURN_ID, AttributeValue::Str("t-1".into()));
        for parent in [Some(1), None] {
            span.parent_span_id = parent;
            let written = serde_json::to_string(&span).unwrap();
            let parsed: SpanRecord = serde_json::from_str(&written).unwrap();
            assert_eq!(parsed, span.to_record());
        }
    }
}
