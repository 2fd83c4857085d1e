//! The form spans take in `telemetry.db`: [`RecordedSpan`]s written in a compact binary
//! encoding, read back as the API's [`SpanRecord`]s.
//!
//! Under webhook load the span writer stores thousands of spans a second. Written as JSON,
//! a webhook's span is about 350 bytes of hex ids, quoted keys and escaped strings, and
//! writing it cost more than recording the span (0.8 µs against 0.7). Here numbers are
//! copied as they are and strings are not escaped; the work of making JSON is left to the
//! rare read.
//!
//! Layout (integers little-endian; `len` is an unsigned LEB128 varint; `str` is a `len`
//! then UTF-8 bytes; `opt<T>` is a byte 0 (absent) or 1 followed by `T`):
//!
//! ```text
//! spans     := version:u8 (= 1) count:len span*
//! span      := trace_id:u128 span_id:u64 parent_span_id:opt<u64> name:str
//!              session_id:opt<str> turn_id:opt<str> start_us:i64 end_us:opt<i64>
//!              attribute_count:len attribute*
//! attribute := key:str value
//! value     := 0 str | 1 i64 | 2 u64 | 3 f64 | 4 u8 (bool: 0 or 1)
//! ```
//!
//! A change of layout takes a new version byte; a reader refuses versions it does not know.

use pryx_api::SpanRecord;

use super::span::{span_id_hex, status_of, trace_id_hex, AttributeValue, RecordedSpan};

const VERSION: u8 = 1;

/// Why stored bytes are not spans.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("stored spans end too soon")]
    Truncated,
    #[error("stored spans are in an unknown format (version {0})")]
    UnknownVersion(u8),
    #[error("stored spans have an unknown tag {0}")]
    BadTag(u8),
    #[error("stored spans have text that is not UTF-8")]
    NotUtf8,
    #[error("stored spans have a malformed length")]
    BadLength,
    #[error("stored spans have {0} bytes left over")]
    TrailingBytes(usize),
}

/// `spans` in the stored form.
pub fn encode(spans: &[RecordedSpan]) -> Vec<u8> {
    // About what a webhook's span takes, so a batch rarely reallocates.
    let mut out = Writer(Vec::with_capacity(8 + spans.len() * 192));
    out.0.push(VERSION);
    out.len(spans.len());
    for span in spans {
        out.0.extend_from_slice(&span.trace_id.to_le_bytes());
        out.0.extend_from_slice(&span.span_id.to_le_bytes());
        out.opt(span.parent_span_id, |out, id| out.0.extend_from_slice(&id.to_le_bytes()));
        out.str(span.name);
        out.opt(span.session_id.as_deref(), Writer::str);
        out.opt(span.turn_id.as_deref(), Writer::str);
        out.0.extend_from_slice(&span.start_us.to_le_bytes());
        out.opt(span.end_us, |out, end| out.0.extend_from_slice(&end.to_le_bytes()));
        out.len(span.attributes.len());
        for (key, value) in &span.attributes {
            out.str(key);
            match value {
                AttributeValue::Str(s) => {
                    out.0.push(0);
                    out.str(s);
                }
                AttributeValue::I64(n) => {
                    out.0.push(1);
                    out.0.extend_from_slice(&n.to_le_bytes());
                }
                AttributeValue::U64(n) => {
                    out.0.push(2);
                    out.0.extend_from_slice(&n.to_le_bytes());
                }
                AttributeValue::F64(n) => {
                    out.0.push(3);
                    out.0.extend_from_slice(&n.to_le_bytes());
                }
                AttributeValue::Bool(b) => out.0.extend_from_slice(&[4, u8::from(*b)]),
            }
        }
    }
    out.0
}

/// Spans written by [`encode`], as the API shows them.
pub fn decode(bytes: &[u8]) -> Result<Vec<SpanRecord>, DecodeError> {
    let mut input = Reader(bytes);
    match input.u8()? {
        VERSION => {}
        other => return Err(DecodeError::UnknownVersion(other)),
    }
    let count = input.len()?;
    // The count is read from the file: a corrupt one must not reserve gigabytes.
    let mut spans = Vec::with_capacity(count.min(bytes.len() / 32));
    for _ in 0..count {
        let trace_id = u128::from_le_bytes(input.array()?);
        let span_id = u64::from_le_bytes(input.array()?);
        let parent_span_id = input.opt(|input| Ok(u64::from_le_bytes(input.array()?)))?;
        let name = input.str()?.to_owned();
        let session_id = input.opt(|input| Ok(input.str()?.to_owned()))?;
        let turn_id = input.opt(|input| Ok(input.str()?.to_owned()))?;
        let start_us = i64::from_le_bytes(input.array()?);
        let end_us = input.opt(|input| Ok(i64::from_le_bytes(input.array()?)))?;
        let attribute_count = input.len()?;
        let mut attributes = Vec::with_capacity(attribute_count.min(64));
        for _ in 0..attribute_count {
            let key = input.str()?;
            let value = match input.u8()? {
                0 => AttributeValue::Str(input.str()?.into()),
                1 => AttributeValue::I64(i64::from_le_bytes(input.array()?)),
                2 => AttributeValue::U64(u64::from_le_bytes(input.array()?)),
                3 => AttributeValue::F64(f64::from_le_bytes(input.array()?)),
                4 => AttributeValue::Bool(input.u8()? != 0),
                tag => return Err(DecodeError::BadTag(tag)),
            };
            attributes.push((key, value));
        }
        spans.push(SpanRecord {
            trace_id: trace_id_hex(trace_id),
            span_id: span_id_hex(span_id),
            parent_span_id: parent_span_id.map(span_id_hex),
            name,
            session_id,
            turn_id,
            start_us,
            end_us,
            status: status_of(attributes.iter().map(|(key, value)| (*key, value))),
            attributes: attributes.into_iter().map(|(key, value)| (key.to_owned(), value.into_json())).collect(),
        });
    }
    match input.0.len() {
        0 => Ok(spans),
        left => Err(DecodeError::TrailingBytes(left)),
    }
}

struct Writer(Vec<u8>);

impl Writer {
    /// A length as an unsigned LEB128 varint: one byte for anything under 128.
    fn len(&mut self, len: usize) {
        let mut rest = len as u64;
        while rest >= 0x80 {
            self.0.push((rest as u8 & 0x7f) | 0x80);
            rest >>= 7;
        }
        self.0.push(rest as u8);
    }

    fn str(&mut self, text: &str) {
        self.len(text.len());
        self.0.extend_from_slice(text.as_bytes());
    }

    fn opt<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match value {
            Some(value) => {
                self.0.push(1);
                write(self, value);
            }
            None => self.0.push(0),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let mut len: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            len |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                // A length longer than what is left is caught by `take`.
                return Ok(usize::try_from(len).unwrap_or(usize::MAX));
            }
        }
        Err(DecodeError::BadLength)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.len()?;
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::NotUtf8)
    }

    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T, DecodeError>) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            tag => Err(DecodeError::BadTag(tag)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::span::{SESSION_ID, TURN_ID};

    fn span(parent: Option<u64>) -> RecordedSpan {
        let mut span = RecordedSpan {
            trace_id: u128::MAX - 1,
            span_id: 0x0123_4567_89ab_cdef,
            parent_span_id: parent,
            name: "execute_tool",
            session_id: None,
            turn_id: None,
            start_us: 1_700_000_000_000_000,
            end_us: Some(1_700_000_000_000_500),
            attributes: Vec::new(),
        };
        span.set("gen_ai.usage.input_tokens", AttributeValue::I64(-12));
        span.set("pryx.bytes", AttributeValue::U64(u64::MAX));
        span.set("pryx.ratio", AttributeValue::F64(f64::NAN));
        span.set("pryx.cost", AttributeValue::F64(0.25));
        span.set("pryx.flag", AttributeValue::Bool(true));
        span.set("text", AttributeValue::Str("it's \"quoted\"\n, ünïcode and ".repeat(10).into()));
        span.set(TURN_ID, AttributeValue::Str("t-1".into()));
        span
    }

    #[test]
    fn spans_read_back_as_the_records_the_live_view_shows() {
        let mut with_session = span(Some(1));
        with_session.set(SESSION_ID, AttributeValue::Str("s-1".into()));
        with_session.set("error.type", AttributeValue::Str("denied".into()));
        let mut open = span(None);
        open.end_us = None;
        let spans = [span(None), with_session, open];
        let records: Vec<SpanRecord> = spans.iter().map(RecordedSpan::to_record).collect();
        assert_eq!(decode(&encode(&spans)).unwrap(), records);
        assert_eq!(records[1].status, pryx_api::SpanStatus::Error);
        assert_eq!(decode(&encode(&[])).unwrap(), []);
    }

    #[test]
    fn it_is_smaller_than_the_json() {
        let spans = [span(Some(1))];
        let json = serde_json::to_string(&spans[0].to_record()).unwrap();
        assert!(encode(&spans).len() * 4 < json.len() * 3, "{} bytes against {}", encode(&spans).len(), json.len());
    }

    #[test]
    fn damaged_bytes_are_an_error_never_a_panic() {
        let bytes = encode(&[span(Some(1)), span(None)]);
        // Every cut is caught.
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end]).is_err(), "cut at {end}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(decode(&extra), Err(DecodeError::TrailingBytes(1)));
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert_eq!(decode(&newer), Err(DecodeError::UnknownVersion(2)));
        // A count of a billion spans in a few bytes fails without reserving for them.
        assert_eq!(decode(&[VERSION, 0x80, 0x94, 0xeb, 0xdc, 0x03]), Err(DecodeError::Truncated));
        // Every flipped byte decodes to something or fails cleanly.
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0xff;
            let _ = decode(&flipped);
        }
    }
}
