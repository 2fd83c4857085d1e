//! Small text helpers the screens share: arguments and results as people read them.

/// A letter or digit, for words in Markdown and code: ASCII ones, and every non-space
/// character beyond ASCII. Exact Unicode classes would bring Unicode's tables into the
/// page (kilobytes of download) for no difference anyone would see in a chat.
pub fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || (!c.is_ascii() && !c.is_whitespace())
}

/// JSON text pretty-printed; anything that is not JSON comes back as it was (models write
/// invalid arguments sometimes, and they must still be shown).
pub fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// At most `limit` characters, saying how many more there were.
pub fn clip(text: String, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}\n… ({} more characters)", &text[..cut], text[cut..].chars().count()),
        None => text,
    }
}

/// The first line, at most `limit` characters (a tool's description in a table).
pub fn first_line(text: &str, limit: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_indented_and_anything_else_kept() {
        assert_eq!(pretty_json(r#"{"path":"a.txt"}"#), "{\n  \"path\": \"a.txt\"\n}");
        assert_eq!(pretty_json("{not json"), "{not json");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(clip("héllo wörld".into(), 5), "héllo\n… (6 more characters)");
        assert_eq!(clip("short".into(), 5), "short");
        assert_eq!(first_line("Reads a file.\nMore detail.", 100), "Reads a file.");
        assert_eq!(first_line("ééééé", 3), "ééé…");
    }
}
