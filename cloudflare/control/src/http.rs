//! What every request passes before any service looks at it, and the shape of an answer.
//!
//! The Worker answers native clients (Pryx, OpenTelemetry exporters, OAuth libraries), never
//! web pages: no CORS headers are ever sent, preflights are refused, and a request that
//! carries an `Origin` (which browsers add to cross-site requests and native clients do
//! not) is refused before it reaches a provider.

/// An answer, ready for the Worker to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            // Serialising a Value cannot fail.
            body: serde_json::to_vec(value).unwrap_or_default(),
            headers: vec![("cache-control", "no-store".to_string())],
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The body as text, for tests and logs of *our* messages (never of a provider's).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request was refused before any service looked at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only POST is accepted here")]
    Method,
    #[error("cross-origin requests are not accepted")]
    CrossOrigin,
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the content type must be one of: {}", accepted.join(", "))]
    ContentType { accepted: &'static [&'static str] },
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Method => 405,
            Refusal::CrossOrigin => 403,
            Refusal::TooLarge { .. } => 413,
            Refusal::ContentType { .. } => 415,
        }
    }
}

/// The parts of a request the checks look at.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub method: &'a str,
    pub origin: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// The declared length, when the client sent one; the body is checked again after reading.
    pub content_length: Option<u64>,
}

/// The media type without parameters, lower-cased: `application/json; charset=utf-8` →
/// `application/json`.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Method, origin, declared size and content type, in that order.
pub fn check(head: &Head, limit: usize, accepted: &'static [&'static str]) -> Result<(), Refusal> {
    if head.method != "POST" {
        return Err(Refusal::Method);
    }
    if head.origin.is_some() {
        return Err(Refusal::CrossOrigin);
    }
    if head.content_length.is_some_and(|len| len > limit as u64) {
        return Err(Refusal::TooLarge { limit });
    }
    let media = media_type(head.content_type);
    if !accepted.contains(&media.as_str()) {
        return Err(Refusal::ContentType { accepted });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMS: &[&str] = &["application/x-www-form-urlencoded", "application/json"];

    fn head<'a>(method: &'a str, content_type: Option<&'a str>) -> Head<'a> {
        Head { method, origin: None, content_type, content_length: Some(10) }
    }

    #[test]
    fn a_plain_form_post_passes() {
        let ok = head("POST", Some("application/x-www-form-urlencoded; charset=UTF-8"));
        assert_eq!(check(&ok, 100, FORMS), Ok(()));
        assert_eq!(check(&head("POST", Some("Application/JSON")), 100, FORMS), Ok(()));
    }

    #[test]
    fn other_methods_origins_sizes_and_types_are_refused() {
        assert_eq!(check(&head("GET", Some("application/json")), 100, FORMS), Err(Refusal::Method));
        assert_eq!(check(&head("OPTIONS", None), 100, FORMS), Err(Refusal::Method));
        let from_a_page = Head { origin: Some("https://evil.example"), ..head("POST", Some("application/json")) };
        assert_eq!(check(&from_a_page, 100, FORMS), Err(Refusal::CrossOrigin));
        let big = Head { content_length: Some(101), ..head("POST", Some("application/json")) };
        assert_eq!(check(&big, 100, FORMS).map_err(|r| r.status()), Err(413));
        let text = check(&head("POST", Some("text/plain")), 100, FORMS).unwrap_err();
        assert_eq!(text.status(), 415);
        assert!(text.to_string().contains("application/json"));
        assert_eq!(check(&head("POST", None), 100, FORMS).map_err(|r| r.status()), Err(415));
    }
}
