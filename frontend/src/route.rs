//! Where the UI is, as the part of the URL after `#`.
//!
//! Routes live in the fragment so the agent serves one page for all of them and deep links
//! from the desktop shell (`pryx://session/ID` becomes `#/session/ID`, see
//! `src/desktop/links.rs`) are a `location.hash` change, never a page load.

/// A screen of the Control Center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// An empty chat; `text` prefills the composer (a `pryx://new?text=…` link), never sent
    /// without the user.
    NewChat {
        text: String,
    },
    Session(String),
    /// One approval request, opened from a notification or the tray.
    Approval(String),
    Approvals,
    Connections,
    Tools,
    Traces,
    Settings,
}

impl Route {
    /// Parse a `location.hash` (with or without the leading `#`). Unknown paths are a new
    /// chat: the UI always shows something useful.
    pub fn parse(hash: &str) -> Route {
        let hash = hash.strip_prefix('#').unwrap_or(hash);
        let (path, query) = hash.split_once('?').unwrap_or((hash, ""));
        let parts: Vec<String> = path.split('/').filter(|part| !part.is_empty()).map(percent_decode).collect();
        match parts.as_slice() {
            [first, id] if first == "session" => Route::Session(id.clone()),
            [first, id] if first == "approve" => Route::Approval(id.clone()),
            [first] if first == "approvals" => Route::Approvals,
            [first] if first == "connections" => Route::Connections,
            [first] if first == "tools" => Route::Tools,
            [first] if first == "traces" => Route::Traces,
            [first] if first == "settings" => Route::Settings,
            [first] if first == "new" => Route::NewChat { text: query_value(query, "text").unwrap_or_default() },
            _ => Route::NewChat { text: String::new() },
        }
    }

    /// The hash that shows this route.
    pub fn hash(&self) -> String {
        match self {
            Route::NewChat { text } if text.is_empty() => "#/".into(),
            Route::NewChat { text } => format!("#/new?text={}", percent_encode(text)),
            Route::Session(id) => format!("#/session/{}", percent_encode(id)),
            Route::Approval(id) => format!("#/approve/{}", percent_encode(id)),
            Route::Approvals => "#/approvals".into(),
            Route::Connections => "#/connections".into(),
            Route::Tools => "#/tools".into(),
            Route::Traces => "#/traces".into(),
            Route::Settings => "#/settings".into(),
        }
    }
}

/// The value of `key` in a `a=1&b=2` query, `+` read as a space.
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(name) == key).then(|| percent_decode(&value.replace('+', " ")))
    })
}

/// Decode `%XX` escapes; invalid escapes and invalid UTF-8 are kept as they came.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// Encode everything but unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_desktop_shell_routes_parse() {
        // The exact strings `src/desktop/links.rs` produces.
        assert_eq!(
            Route::parse("#/session/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"),
            Route::Session("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into())
        );
        assert_eq!(
            Route::parse("#/new?text=hello+%3Cworld%3E+%26+more"),
            Route::NewChat { text: "hello <world> & more".into() }
        );
        assert_eq!(Route::parse("/approve/abc"), Route::Approval("abc".into()));
    }

    #[test]
    fn every_route_round_trips() {
        for route in [
            Route::NewChat { text: String::new() },
            Route::NewChat { text: "a b&c=d/é".into() },
            Route::Session("id with/slash".into()),
            Route::Approval("x".into()),
            Route::Approvals,
            Route::Connections,
            Route::Tools,
            Route::Traces,
            Route::Settings,
        ] {
            assert_eq!(Route::parse(&route.hash()), route);
        }
    }

    #[test]
    fn anything_else_is_a_new_chat() {
        for hash in ["", "#", "#/", "#/nope", "#/session", "#/session/a/b", "%zz"] {
            assert_eq!(Route::parse(hash), Route::NewChat { text: String::new() }, "{hash}");
        }
        assert_eq!(percent_decode("%FF%FE"), "%FF%FE", "invalid UTF-8 is kept as typed");
    }
}
