//! `pryx://` deep links: parsed and checked here, before anything acts on them.
//!
//! - `pryx://session/ID` opens that conversation;
//! - `pryx://new?text=…` opens a new chat with the composer prefilled (never sent);
//! - `pryx://approve/ID` shows that approval request.
//!
//! Anything else is refused with a message saying why; a link never causes an action
//! without the user.

use thiserror::Error;

/// Longest link accepted, in bytes (a prefilled message plus encoding).
const MAX_LINK_BYTES: usize = 16 * 1024;
/// Longest prefilled text, in characters.
const MAX_TEXT_CHARS: usize = 8_000;

/// What a valid link asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeepLink {
    Session(String),
    NewChat { text: Option<String> },
    Approval(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("the link is longer than {MAX_LINK_BYTES} bytes")]
    TooLong,
    #[error("this is not a pryx:// link")]
    NotPryx,
    #[error("the link is malformed: {0}")]
    Malformed(String),
    #[error("Pryx does not know links to `{0}` (it opens session/ID, new?text=… and approve/ID)")]
    Unknown(String),
    #[error("`{0}` is not a valid id")]
    BadId(String),
    #[error("the text to prefill is longer than {MAX_TEXT_CHARS} characters")]
    TextTooLong,
}

impl DeepLink {
    pub fn parse(link: &str) -> Result<DeepLink, LinkError> {
        if link.len() > MAX_LINK_BYTES {
            return Err(LinkError::TooLong);
        }
        if !link.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("pryx://")) {
            return Err(LinkError::NotPryx);
        }
        let url = url::Url::parse(link).map_err(|e| LinkError::Malformed(e.to_string()))?;
        // `pryx://session/ID`: the first segment parses as the host.
        let kind = url.host_str().unwrap_or("").to_ascii_lowercase();
        let segments: Vec<&str> =
            url.path_segments().map(|s| s.filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        match (kind.as_str(), segments.as_slice()) {
            ("session", [id]) => Ok(DeepLink::Session(checked_id(id)?)),
            ("approve", [id]) => Ok(DeepLink::Approval(checked_id(id)?)),
            ("new", []) => {
                let text = url.query_pairs().find(|(key, _)| key == "text").map(|(_, value)| value.into_owned());
                if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
                    return Err(LinkError::TextTooLong);
                }
                Ok(DeepLink::NewChat { text: text.filter(|t| !t.trim().is_empty()) })
            }
            _ => Err(LinkError::Unknown(format!("{kind}/{}", segments.join("/")).trim_end_matches('/').to_owned())),
        }
    }

    /// What the link opens, in one word (for the log: never the text it carries).
    pub fn kind(&self) -> &'static str {
        match self {
            DeepLink::Session(_) => "session",
            DeepLink::NewChat { .. } => "new",
            DeepLink::Approval(_) => "approve",
        }
    }

    /// Where the page shows it (a fragment route of the page at `/`).
    pub fn page_route(&self) -> String {
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        match self {
            DeepLink::Session(id) => format!("#/session/{id}"),
            DeepLink::Approval(id) => format!("#/approve/{id}"),
            DeepLink::NewChat { text: Some(text) } => format!("#/new?text={}", encode(text)),
            DeepLink::NewChat { text: None } => "#/new".to_owned(),
        }
    }
}

/// Session and approval ids are UUIDs; accept their alphabet only.
fn checked_id(id: &str) -> Result<String, LinkError> {
    let decoded = url::form_urlencoded::parse(format!("x={id}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if (1..=64).contains(&decoded.len()) && decoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(decoded)
    } else {
        Err(LinkError::BadId(decoded.chars().take(80).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_session() {
        let link = DeepLink::parse("pryx://session/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0").unwrap();
        assert_eq!(link, DeepLink::Session("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()));
        assert_eq!(link.page_route(), "#/session/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
    }

    #[test]
    fn prefills_a_new_chat_with_decoded_text() {
        let link = DeepLink::parse("pryx://new?text=hello%20%3Cworld%3E%20%26%20more").unwrap();
        assert_eq!(link, DeepLink::NewChat { text: Some("hello <world> & more".into()) });
        assert_eq!(link.page_route(), "#/new?text=hello+%3Cworld%3E+%26+more");
        assert_eq!(link.kind(), "new", "the log names the kind, never the text");
        assert_eq!(DeepLink::parse("pryx://new").unwrap(), DeepLink::NewChat { text: None });
        assert_eq!(DeepLink::parse("PRYX://new/").unwrap(), DeepLink::NewChat { text: None });
    }

    #[test]
    fn focuses_an_approval() {
        assert_eq!(DeepLink::parse("pryx://approve/abc-123").unwrap(), DeepLink::Approval("abc-123".into()));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert_eq!(DeepLink::parse("https://example.com"), Err(LinkError::NotPryx));
        assert_eq!(DeepLink::parse("pryx://delete/everything"), Err(LinkError::Unknown("delete/everything".into())));
        assert_eq!(DeepLink::parse("pryx://session"), Err(LinkError::Unknown("session".into())));
        assert_eq!(DeepLink::parse("pryx://session/a/b"), Err(LinkError::Unknown("session/a/b".into())));
        assert!(matches!(DeepLink::parse("pryx://session/..%2F..%2Fetc"), Err(LinkError::BadId(_))));
        assert!(matches!(DeepLink::parse("pryx://approve/%3Cscript%3E"), Err(LinkError::BadId(_))));
        assert_eq!(DeepLink::parse(&format!("pryx://new?text={}", "a".repeat(20_000))), Err(LinkError::TooLong));
        assert_eq!(DeepLink::parse(&format!("pryx://new?text={}", "a".repeat(9_000))), Err(LinkError::TextTooLong));
    }
}
