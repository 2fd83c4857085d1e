//! Turning the model's Markdown into what a chat platform shows, in pieces it accepts.
//!
//! Telegram gets its HTML subset (`<b>`, `<i>`, `<code>`, `<pre>`, `<a>`), with every `&`,
//! `<` and `>` of the text escaped, so nothing the model writes can become markup Telegram
//! rejects or misreads; links keep only `http(s)` targets. Long answers are split below the
//! platform's limit (4096 characters for Telegram and WhatsApp), preferably between
//! paragraphs, never inside a code block (a long block is split into several blocks).

use crate::html::escape;

/// Telegram's (and WhatsApp's) limit on one message's text, in characters.
pub const MESSAGE_LIMIT: usize = 4096;

/// One message to send: the formatted body and the same text plain (sent if the platform
/// refuses the formatting).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// In the platform's markup (Telegram HTML, WhatsApp's `*bold*` style).
    pub formatted: String,
    pub plain: String,
}

/// The answer as Telegram HTML, in pieces within [`MESSAGE_LIMIT`] characters each.
pub fn telegram_pieces(markdown: &str) -> Vec<Piece> {
    // Leave room for the markup and escapes added to a chunk.
    pieces(markdown, MESSAGE_LIMIT - 200, telegram_html)
}

/// The answer in WhatsApp's markup (`*bold*`, `_italic_`, ``` ``` ``` blocks, `` `code` ``),
/// in pieces within [`MESSAGE_LIMIT`] characters. WhatsApp shows text literally apart from
/// those markers, so nothing needs escaping.
pub fn whatsapp_pieces(markdown: &str) -> Vec<Piece> {
    pieces(markdown, MESSAGE_LIMIT - 100, whatsapp_text)
}

/// Split, then render each chunk; empty chunks are dropped.
fn pieces(markdown: &str, limit: usize, render: fn(&str) -> String) -> Vec<Piece> {
    split_blocks(markdown, limit)
        .into_iter()
        .filter(|chunk| !chunk.trim().is_empty())
        .map(|chunk| Piece { formatted: render(&chunk), plain: chunk })
        .collect()
}

/// Markdown to WhatsApp: `**b**` → `*b*`, headings → `*heading*`, `[label](url)` →
/// `label (url)`; code blocks stay fenced.
fn whatsapp_text(markdown: &str) -> String {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            out.push("```".to_owned());
            continue;
        }
        if in_code {
            out.push(line.to_owned());
            continue;
        }
        let line = match heading(line.trim_start()) {
            Some(text) => format!("*{}*", text.replace("**", "")),
            None => line.replace("**", "*"),
        };
        out.push(replace_links(&line));
    }
    out.join("\n")
}

/// `[label](http…)` → `label (http…)`.
fn replace_links(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            if let Some((label, url, used)) = link(&chars[i..]) {
                out.push_str(&format!("{label} ({url})"));
                i += used;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Split Markdown into chunks of at most `limit` characters: whole paragraphs and whole
/// fenced code blocks where they fit, a long code block into several fenced blocks, and a
/// long paragraph at line or word boundaries.
fn split_blocks(markdown: &str, limit: usize) -> Vec<String> {
    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    let push = |chunks: &mut Vec<String>, current: &mut String| {
        if !current.trim().is_empty() {
            chunks.push(std::mem::take(current).trim_end().to_owned());
        }
        current.clear();
    };
    for block in blocks(markdown) {
        let len = block.chars().count();
        if current.chars().count() + len + 2 <= limit {
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(&block);
            continue;
        }
        push(&mut chunks, &mut current);
        if len <= limit {
            current = block;
            continue;
        }
        // One block longer than a whole message.
        match block.strip_prefix("```") {
            Some(rest) => {
                let (info, body) = rest.split_once('\n').unwrap_or(("", rest));
                let body = body.trim_end().trim_end_matches("```").trim_end_matches('\n');
                let fence = format!("```{info}\n");
                for part in split_text(body, limit - fence.len() - 4) {
                    chunks.push(format!("{fence}{part}\n```"));
                }
            }
            None => chunks.extend(split_text(&block, limit)),
        }
    }
    push(&mut chunks, &mut current);
    chunks
}

/// Paragraphs and fenced code blocks, in order.
fn blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        let fence = line.trim_start().starts_with("```");
        if in_code {
            current.push(line);
            if fence {
                blocks.push(current.join("\n"));
                current.clear();
                in_code = false;
            }
        } else if fence {
            if !current.is_empty() {
                blocks.push(current.join("\n"));
                current.clear();
            }
            current.push(line);
            in_code = true;
        } else if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(current.join("\n"));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        blocks.push(current.join("\n"));
    }
    blocks
}

/// `text` in pieces of at most `limit` characters, cut after a newline or a space when one
/// is near the end, never inside a character.
fn split_text(text: &str, limit: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.chars().count() > limit {
        let hard = rest.char_indices().nth(limit).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..hard];
        let cut = window.rfind('\n').or_else(|| window.rfind(' ')).filter(|&i| i > hard / 2).map_or(hard, |i| i + 1);
        pieces.push(rest[..cut].trim_end().to_owned());
        rest = &rest[cut..];
    }
    if !rest.trim().is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

/// A Markdown chunk (whole blocks) as Telegram HTML.
fn telegram_html(markdown: &str) -> String {
    let mut html = String::new();
    let mut in_code = false;
    // No line break right after `<pre><code>`: Telegram would show an empty first line.
    let mut line_break = false;
    for line in markdown.lines() {
        if std::mem::replace(&mut line_break, true) {
            html.push('\n');
        }
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            if in_code {
                html.push_str("</code></pre>");
            } else {
                line_break = false;
                let language: String = info.trim().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
                if language.is_empty() {
                    html.push_str("<pre><code>");
                } else {
                    html.push_str(&format!("<pre><code class=\"language-{language}\">"));
                }
            }
            in_code = !in_code;
            continue;
        }
        if in_code {
            html.push_str(&escape(line));
            continue;
        }
        if let Some(text) = heading(trimmed) {
            html.push_str(&format!("<b>{}</b>", inline(text)));
        } else if let Some(item) = trimmed.strip_prefix("- ").or_else(|| trimmed.strip_prefix("* ")) {
            html.push_str(&format!("• {}", inline(item)));
        } else {
            html.push_str(&inline(line));
        }
    }
    if in_code {
        html.push_str("</code></pre>");
    }
    html
}

fn heading(line: &str) -> Option<&str> {
    let text = line.trim_start_matches('#');
    (text.len() < line.len() && line.len() - text.len() <= 6 && text.starts_with(' ')).then(|| text.trim())
}

/// Inline Markdown (code spans, bold, italic, links) to HTML, escaping everything else.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut bold = false;
    let mut italic = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '`' {
            if let Some(end) = chars[i + 1..].iter().position(|&x| x == '`') {
                let code: String = chars[i + 1..i + 1 + end].iter().collect();
                out.push_str(&format!("<code>{}</code>", escape(&code)));
                i += end + 2;
                continue;
            }
        }
        if c == '*' && chars.get(i + 1) == Some(&'*') {
            out.push_str(if bold { "</b>" } else { "<b>" });
            bold = !bold;
            i += 2;
            continue;
        }
        if (c == '*' || c == '_') && italic_marker(&chars, i, italic) {
            out.push_str(if italic { "</i>" } else { "<i>" });
            italic = !italic;
            i += 1;
            continue;
        }
        if c == '[' {
            if let Some((label, url, used)) = link(&chars[i..]) {
                out.push_str(&format!("<a href=\"{}\">{}</a>", escape(&url).replace('"', "&quot;"), escape(&label)));
                i += used;
                continue;
            }
        }
        out.push_str(&escape(&c.to_string()));
        i += 1;
    }
    // Close what the model left open, so Telegram accepts the message.
    if italic {
        out.push_str("</i>");
    }
    if bold {
        out.push_str("</b>");
    }
    out
}

/// A `*`/`_` that opens (followed by a non-space) or closes (preceded by one) emphasis.
fn italic_marker(chars: &[char], i: usize, open: bool) -> bool {
    if open {
        i > 0 && !chars[i - 1].is_whitespace()
    } else {
        let next_ok = chars.get(i + 1).is_some_and(|n| !n.is_whitespace());
        let prev_ok = i == 0 || !chars[i - 1].is_alphanumeric();
        next_ok && prev_ok && chars[i + 1..].contains(&chars[i])
    }
}

/// `[label](http…)` at the start of `chars`: label, URL and characters used.
fn link(chars: &[char]) -> Option<(String, String, usize)> {
    let close = chars.iter().position(|&c| c == ']')?;
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = chars[close + 2..].iter().position(|&c| c == ')')? + close + 2;
    let url: String = chars[close + 2..end].iter().collect();
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(char::is_whitespace) {
        return None;
    }
    Some((chars[1..close].iter().collect(), url, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(markdown: &str) -> String {
        telegram_html(markdown)
    }

    #[test]
    fn markup_in_the_text_is_escaped_not_interpreted() {
        assert_eq!(html("1 < 2 && <b>x</b>"), "1 &lt; 2 &amp;&amp; &lt;b&gt;x&lt;/b&gt;");
        assert_eq!(html("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
    }

    #[test]
    fn inline_markdown_becomes_telegram_html() {
        assert_eq!(html("**bold** and *it* and `a<b`"), "<b>bold</b> and <i>it</i> and <code>a&lt;b</code>");
        assert_eq!(html("see [docs](https://x.org/a?b=1&c=2)"), "see <a href=\"https://x.org/a?b=1&amp;c=2\">docs</a>");
        assert_eq!(html("[bad](javascript:alert(1))"), "[bad](javascript:alert(1))");
        assert_eq!(html("# Title\n- item"), "<b>Title</b>\n• item");
        assert_eq!(html("2 * 3 * 4"), "2 * 3 * 4");
        assert_eq!(html("**unclosed"), "<b>unclosed</b>");
    }

    #[test]
    fn code_blocks_are_pre_and_escaped() {
        assert_eq!(
            html("```rust\nfn x() -> &str { \"<\" }\n```"),
            "<pre><code class=\"language-rust\">fn x() -&gt; &amp;str { \"&lt;\" }\n</code></pre>"
        );
    }

    #[test]
    fn whatsapp_gets_its_own_markers() {
        let pieces = whatsapp_pieces("# Plan\n**Bold** and _it_, see [docs](https://x.org).\n\n```\nlet x = 1;\n```");
        assert_eq!(pieces[0].formatted, "*Plan*\n*Bold* and _it_, see docs (https://x.org).\n\n```\nlet x = 1;\n```");
    }

    #[test]
    fn short_answers_are_one_piece() {
        let pieces = telegram_pieces("Hello **there**.");
        assert_eq!(pieces, [Piece { formatted: "Hello <b>there</b>.".into(), plain: "Hello **there**.".into() }]);
    }

    #[test]
    fn long_answers_split_between_paragraphs_within_the_limit() {
        let paragraph = "word ".repeat(300); // 1500 characters
        let answer = [paragraph.trim(); 5].join("\n\n");
        let pieces = telegram_pieces(&answer);
        assert!(pieces.len() >= 2, "{}", pieces.len());
        for piece in &pieces {
            assert!(piece.formatted.chars().count() <= MESSAGE_LIMIT);
            assert!(!piece.plain.starts_with("\n") && piece.plain.ends_with("word"));
        }
        let words: usize = pieces.iter().map(|p| p.plain.split_whitespace().count()).sum();
        assert_eq!(words, 1500, "nothing lost");
    }

    #[test]
    fn a_code_block_longer_than_a_message_becomes_several_blocks() {
        let code = (0..600).map(|i| format!("let line_{i} = {i};")).collect::<Vec<_>>().join("\n");
        let pieces = telegram_pieces(&format!("Here:\n\n```rust\n{code}\n```\n\nDone."));
        assert!(pieces.len() >= 3);
        for piece in &pieces {
            assert!(piece.formatted.chars().count() <= MESSAGE_LIMIT, "{}", piece.formatted.chars().count());
            assert_eq!(piece.formatted.matches("<pre>").count(), piece.formatted.matches("</pre>").count());
        }
        let lines: usize = pieces.iter().map(|p| p.plain.matches("let line_").count()).sum();
        assert_eq!(lines, 600);
    }
}
