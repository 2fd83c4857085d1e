//! Turning an MCP tool result into text the model can read.
//!
//! Text blocks are kept as they are. Images and audio cannot go into a Chat Completions
//! tool message, so they become a one-line note with their type and size (the model learns
//! the tool produced one, and can say so). Embedded resources give their text, or a note for
//! binary ones; resource links give their URI. `structuredContent` is appended as JSON, since
//! it is often the most precise part of a result. The whole output is capped so one
//! runaway tool cannot fill the model's context window.

use serde_json::Value;

/// The model-facing text of a `CallToolResult` (as JSON) and whether the tool reported an
/// error (`isError`). At most `max_bytes` of it, cut on a character boundary with a note.
pub fn render(result: &Value, max_bytes: usize) -> (String, bool) {
    let mut parts: Vec<String> = Vec::new();
    for block in result["content"].as_array().into_iter().flatten() {
        parts.push(render_block(block));
    }
    if let Some(structured) = result.get("structuredContent").filter(|v| !v.is_null()) {
        // Servers usually say the same in a text block too; add it only if it says more.
        let text = parts.join("\n");
        if !said_in(structured, &text) {
            parts.push(format!("structured result: {structured}"));
        }
    }
    let is_error = result["isError"].as_bool().unwrap_or(false);
    let text = if parts.is_empty() { "(the tool returned no content)".to_owned() } else { parts.join("\n") };
    (cap(text, max_bytes), is_error)
}

/// Whether every value in `structured` already appears in `text`.
fn said_in(structured: &Value, text: &str) -> bool {
    match structured {
        Value::Null => true,
        Value::String(s) => text.contains(s.as_str()),
        Value::Number(_) | Value::Bool(_) => text.contains(&structured.to_string()),
        Value::Array(items) => items.iter().all(|v| said_in(v, text)),
        Value::Object(fields) => fields.values().all(|v| said_in(v, text)),
    }
}

fn render_block(block: &Value) -> String {
    let kind = block["type"].as_str().unwrap_or("");
    match kind {
        "text" => block["text"].as_str().unwrap_or("").to_owned(),
        "image" | "audio" => {
            let mime = block["mimeType"].as_str().unwrap_or("unknown type");
            let bytes = block["data"].as_str().map_or(0, |d| d.len() / 4 * 3);
            format!("[{kind}: {mime}, about {bytes} bytes, not shown to the model]")
        }
        "resource" => {
            let resource = &block["resource"];
            let uri = resource["uri"].as_str().unwrap_or("?");
            match resource["text"].as_str() {
                Some(text) => format!("[resource {uri}]\n{text}"),
                None => {
                    let mime = resource["mimeType"].as_str().unwrap_or("binary");
                    format!("[resource {uri}: {mime}, not shown to the model]")
                }
            }
        }
        "resource_link" => {
            let uri = block["uri"].as_str().unwrap_or("?");
            let name = block["name"].as_str().unwrap_or("");
            format!("[link to resource {uri}{}]", if name.is_empty() { String::new() } else { format!(" ({name})") })
        }
        other => format!("[a `{other}` content block Pryx cannot show]"),
    }
}

/// `text` cut to `max_bytes` on a character boundary, saying how much was left out.
pub fn cap(text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[output cut: {} of {} bytes shown]", &text[..end], end, text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_blocks_are_joined() {
        let result = json!({"content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]});
        assert_eq!(render(&result, 1000), ("one\ntwo".to_owned(), false));
    }

    #[test]
    fn images_become_a_note_and_errors_are_flagged() {
        let result = json!({"isError": true, "content": [{"type": "image", "mimeType": "image/png", "data": "AAAA"}]});
        let (text, is_error) = render(&result, 1000);
        assert!(text.contains("image/png") && text.contains("3 bytes"), "{text}");
        assert!(is_error);
    }

    #[test]
    fn resources_show_their_text_and_links_their_uri() {
        let result = json!({"content": [
            {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "hello"}},
            {"type": "resource_link", "uri": "file:///b.txt", "name": "b"}
        ]});
        let (text, _) = render(&result, 1000);
        assert!(text.contains("[resource file:///a.txt]\nhello"), "{text}");
        assert!(text.contains("file:///b.txt (b)"), "{text}");
    }

    #[test]
    fn structured_content_is_kept_once() {
        let same = json!({"content": [{"type": "text", "text": "{\"t\":1}"}], "structuredContent": {"t": 1}});
        assert_eq!(render(&same, 1000).0, "{\"t\":1}");
        let wrapped = json!({"content": [{"type": "text", "text": "milk"}], "structuredContent": {"content": "milk"}});
        assert_eq!(render(&wrapped, 1000).0, "milk");
        let extra = json!({"content": [{"type": "text", "text": "done"}], "structuredContent": {"t": 1}});
        assert_eq!(render(&extra, 1000).0, "done\nstructured result: {\"t\":1}");
    }

    #[test]
    fn huge_output_is_cut_on_a_character_boundary() {
        let text = cap("é".repeat(100), 51);
        assert!(text.starts_with(&"é".repeat(25)));
        assert!(text.contains("[output cut: 50 of 200 bytes shown]"), "{text}");
    }

    #[test]
    fn an_empty_result_says_so() {
        assert_eq!(render(&json!({"content": []}), 100).0, "(the tool returned no content)");
    }
}
