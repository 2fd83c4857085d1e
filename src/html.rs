//! HTML text escaping, for the few pages Pryx writes itself (the OAuth callback) and
//! Telegram's HTML subset. A leaf: it depends on nothing in the crate.

/// Escape text for HTML element content. Attribute values also need `"` escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_characters_become_entities() {
        assert_eq!(super::escape("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
    }
}
