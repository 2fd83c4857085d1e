//! Model output as a tree of safe Markdown blocks.
//!
//! The model's text is untrusted: it may contain `<script>`, `<img onerror=…>` or
//! `javascript:` links, on purpose (prompt injection) or not. The UI never hands it to
//! `innerHTML`; it parses it here into [`Block`]s and [`Inline`]s that the view turns into
//! DOM nodes one by one. Raw HTML in the input stays visible as text, images become links
//! (nothing is fetched), and only `http`, `https` and `mailto` links survive.
//!
//! The parser covers what models write (CommonMark's common constructs and GitHub's tables
//! and strikethrough), not all of CommonMark: a full parser (pulldown-cmark) was a sixth of
//! the page's download. It never fails and tolerates text that is still streaming in.

use crate::text::is_word_char;

/// A block of rendered Markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Paragraph(Vec<Inline>),
    Heading(u8, Vec<Inline>),
    /// A fenced code block; `lang` is the fence's first word, if any.
    Code {
        lang: Option<String>,
        text: String,
    },
    Quote(Vec<Block>),
    /// `start` is the first number of an ordered list, `None` for bullets.
    List {
        start: Option<u64>,
        items: Vec<Vec<Block>>,
    },
    /// Header cells, then rows of cells.
    Table {
        head: Vec<Vec<Inline>>,
        rows: Vec<Vec<Vec<Inline>>>,
    },
    Rule,
}

/// Text-level Markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inline {
    Text(String),
    Code(String),
    Strong(Vec<Inline>),
    Emphasis(Vec<Inline>),
    Strike(Vec<Inline>),
    /// A link whose target passed [`safe_href`]; links that did not are plain text.
    Link {
        href: String,
        children: Vec<Inline>,
    },
    LineBreak,
}

/// The link targets the UI follows (in a new browser window, never inside the app).
pub fn safe_href(href: &str) -> Option<String> {
    let href = href.trim();
    let scheme = href.split_once(':').map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https" | "mailto") => Some(href.to_owned()),
        _ => None,
    }
}

/// Parse `text` into blocks. Never fails: anything unusual ends up as text.
pub fn parse(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    parse_lines(&lines)
}

fn parse_lines(lines: &[&str]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            i += 1;
        } else if let Some((fence, info)) = fence_open(trimmed) {
            let lang = info.split_whitespace().next().map(str::to_owned);
            let mut body = Vec::new();
            let mut closed = false;
            i += 1;
            while i < lines.len() {
                let candidate = lines[i].trim();
                if candidate.starts_with(fence) && candidate.chars().all(|c| c == fence.chars().next().unwrap_or('`')) {
                    closed = true;
                    i += 1;
                    break;
                }
                // Content keeps its own indentation, less the fence's.
                body.push(strip_indent(lines[i], indent));
                i += 1;
            }
            let mut text = body.join("\n");
            if closed && !body.is_empty() {
                text.push('\n');
            }
            blocks.push(Block::Code { lang, text });
        } else if let Some((level, title)) = heading(trimmed) {
            blocks.push(Block::Heading(level, parse_inlines(title)));
            i += 1;
        } else if is_rule(trimmed) {
            blocks.push(Block::Rule);
            i += 1;
        } else if trimmed.starts_with('>') {
            let mut quoted = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('>') {
                let inner = &lines[i].trim_start()[1..];
                quoted.push(inner.strip_prefix(' ').unwrap_or(inner));
                i += 1;
            }
            blocks.push(Block::Quote(parse_lines(&quoted)));
        } else if let Some(marker) = list_marker(trimmed) {
            let (block, next) = list(lines, i, indent, marker);
            blocks.push(block);
            i = next;
        } else if i + 1 < lines.len() && trimmed.contains('|') && is_table_divider(lines[i + 1]) {
            let head = cells(trimmed);
            let mut rows = Vec::new();
            i += 2;
            while i < lines.len() && lines[i].contains('|') && !lines[i].trim().is_empty() {
                rows.push(cells(lines[i].trim()));
                i += 1;
            }
            blocks.push(Block::Table { head, rows });
        } else {
            let start = i;
            i += 1;
            while i < lines.len() && continues_paragraph(lines[i]) {
                i += 1;
            }
            let text: Vec<&str> = lines[start..i].iter().map(|l| l.trim_start()).collect();
            blocks.push(Block::Paragraph(parse_inlines(&text.join("\n"))));
        }
    }
    blocks
}

/// A line that goes on with the paragraph above it (nothing else starts there).
fn continues_paragraph(line: &str) -> bool {
    let trimmed = line.trim_start();
    !trimmed.is_empty()
        && fence_open(trimmed).is_none()
        && heading(trimmed).is_none()
        && !is_rule(trimmed)
        && !trimmed.starts_with('>')
        && list_marker(trimmed).is_none()
}

fn strip_indent(line: &str, indent: usize) -> &str {
    let spaces = line.len() - line.trim_start_matches(' ').len();
    &line[spaces.min(indent)..]
}

/// ```` ``` ```` or `~~~` (three or more) and the info string after it.
fn fence_open(line: &str) -> Option<(&str, &str)> {
    for fence_char in ['`', '~'] {
        let run = line.len() - line.trim_start_matches(fence_char).len();
        if run >= 3 {
            let (fence, info) = line.split_at(run);
            if fence_char == '`' && info.contains('`') {
                return None;
            }
            return Some((fence, info.trim()));
        }
    }
    None
}

fn heading(line: &str) -> Option<(u8, &str)> {
    let level = line.len() - line.trim_start_matches('#').len();
    let rest = &line[level..];
    if (1..=6).contains(&level) && (rest.is_empty() || rest.starts_with(' ')) {
        let title = rest.trim().trim_end_matches('#').trim_end();
        return Some((level as u8, title));
    }
    None
}

fn is_rule(line: &str) -> bool {
    let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    compact.len() >= 3 && ['-', '*', '_'].iter().any(|mark| compact.chars().all(|c| c == *mark))
}

/// What starts a list item: a bullet, or a number with `.` or `)`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Marker {
    Bullet(char),
    Number(u64),
}

/// The marker and the width it takes (with the space after it).
fn list_marker(line: &str) -> Option<(Marker, usize)> {
    let mut chars = line.chars();
    let first = chars.next()?;
    if matches!(first, '-' | '*' | '+') {
        return match chars.next() {
            Some(' ') => Some((Marker::Bullet(first), 2)),
            None => Some((Marker::Bullet(first), 1)),
            _ => None,
        };
    }
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 9 {
        return None;
    }
    let rest = &line[digits..];
    let number = line[..digits].parse().ok()?;
    let mut rest_chars = rest.chars();
    match (rest_chars.next(), rest_chars.next()) {
        (Some('.' | ')'), Some(' ')) => Some((Marker::Number(number), digits + 2)),
        (Some('.' | ')'), None) => Some((Marker::Number(number), digits + 1)),
        _ => None,
    }
}

/// A list starting at `lines[start]`: items while markers of the same kind follow at the
/// same indentation; more-indented lines belong to the item (nested lists, paragraphs).
fn list(lines: &[&str], start: usize, indent: usize, (first, _): (Marker, usize)) -> (Block, usize) {
    let same_kind = |marker: Marker| match (first, marker) {
        (Marker::Bullet(a), Marker::Bullet(b)) => a == b,
        (Marker::Number(_), Marker::Number(_)) => true,
        _ => false,
    };
    let mut items = Vec::new();
    let mut i = start;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let this_indent = lines[i].len() - trimmed.len();
        let Some((_, width)) = list_marker(trimmed).filter(|(m, _)| this_indent == indent && same_kind(*m)) else {
            break;
        };
        let content_indent = indent + width;
        let mut body = vec![&trimmed[width.min(trimmed.len())..]];
        i += 1;
        while i < lines.len() {
            let line = lines[i];
            let line_indent = line.len() - line.trim_start().len();
            if line.trim().is_empty() {
                // A blank line ends the item unless indented content follows it.
                let more = lines.get(i + 1).is_some_and(|next| {
                    !next.trim().is_empty() && next.len() - next.trim_start().len() >= content_indent
                });
                if !more {
                    break;
                }
                body.push("");
            } else if line_indent >= content_indent {
                body.push(strip_indent(line, content_indent));
            } else if line_indent > indent || (list_marker(line.trim_start()).is_none() && continues_paragraph(line)) {
                // A lazy continuation of the item's paragraph.
                body.push(line.trim_start());
            } else {
                break;
            }
            i += 1;
        }
        items.push(parse_lines(&body));
        // Blank lines between items of one list.
        while i < lines.len() && lines[i].trim().is_empty() {
            let next_is_item = lines.get(i + 1).is_some_and(|next| {
                let t = next.trim_start();
                next.len() - t.len() == indent && list_marker(t).is_some_and(|(m, _)| same_kind(m))
            });
            if !next_is_item {
                break;
            }
            i += 1;
        }
    }
    let start_number = match first {
        Marker::Number(n) => Some(n),
        Marker::Bullet(_) => None,
    };
    (Block::List { start: start_number, items }, i)
}

fn is_table_divider(line: &str) -> bool {
    let line = line.trim();
    line.contains('-')
        && line.contains('|') | line.starts_with('-')
        && line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

fn cells(line: &str) -> Vec<Vec<Inline>> {
    let line = line.trim();
    let line = line.strip_prefix('|').unwrap_or(line);
    let line = line.strip_suffix('|').unwrap_or(line);
    line.split('|').map(|cell| parse_inlines(cell.trim())).collect()
}

/// Text-level parsing: code spans, emphasis, strikethrough, links, images, breaks.
pub fn parse_inlines(text: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut i = 0;
    let flush = |plain: &mut String, out: &mut Vec<Inline>| {
        if !plain.is_empty() {
            push_text(out, &std::mem::take(plain));
        }
    };
    while i < text.len() {
        let rest = &text[i..];
        let c = rest.chars().next().unwrap_or(' ');
        // Backslash escapes of punctuation; a backslash at a line end is a hard break.
        if c == '\\' {
            match rest[1..].chars().next() {
                Some('\n') => {
                    flush(&mut plain, &mut out);
                    out.push(Inline::LineBreak);
                    i += 2;
                    continue;
                }
                Some(next) if next.is_ascii_punctuation() => {
                    plain.push(next);
                    i += 1 + next.len_utf8();
                    continue;
                }
                _ => {}
            }
        }
        if c == '\n' {
            // Two spaces before a line end are a hard break; otherwise a soft one.
            if plain.ends_with("  ") {
                let kept = plain.trim_end_matches(' ').len();
                plain.truncate(kept);
                flush(&mut plain, &mut out);
                out.push(Inline::LineBreak);
            } else {
                let kept = plain.trim_end_matches(' ').len();
                plain.truncate(kept);
                plain.push(' ');
            }
            i += 1;
            continue;
        }
        if c == '`' {
            let run = rest.len() - rest.trim_start_matches('`').len();
            let fence = &rest[..run];
            if let Some(end) = rest[run..].find(fence).filter(|end| !rest[run + end + run..].starts_with('`')) {
                let code = &rest[run..run + end];
                let code = if code.starts_with(' ') && code.ends_with(' ') && code.trim() != "" {
                    &code[1..code.len() - 1]
                } else {
                    code
                };
                flush(&mut plain, &mut out);
                out.push(Inline::Code(code.replace('\n', " ")));
                i += run + end + run;
                continue;
            }
            plain.push_str(fence);
            i += run;
            continue;
        }
        if let Some((delimiter, make)) = emphasis(rest) {
            let after = &rest[delimiter.len()..];
            let opens = after.chars().next().is_some_and(|n| !n.is_whitespace())
                && (delimiter.starts_with('*') || delimiter.starts_with('~') || word_boundary_before(&text[..i]));
            if opens {
                if let Some(end) = closing(after, delimiter) {
                    flush(&mut plain, &mut out);
                    out.push(make(parse_inlines(&after[..end])));
                    i += delimiter.len() + end + delimiter.len();
                    continue;
                }
            }
            plain.push_str(delimiter);
            i += delimiter.len();
            continue;
        }
        if c == '[' || (c == '!' && rest[1..].starts_with('[')) {
            let image = c == '!';
            let open = if image { 1 } else { 0 };
            if let Some((label, href, used)) = link(&rest[open..]) {
                flush(&mut plain, &mut out);
                let children = parse_inlines(label);
                if image {
                    let alt = plain_text(&children);
                    let label = if alt.is_empty() { "image".to_owned() } else { format!("image: {alt}") };
                    match safe_href(href) {
                        Some(href) => out.push(Inline::Link { href, children: vec![Inline::Text(label)] }),
                        None => push_text(&mut out, &format!("[{label}]")),
                    }
                } else {
                    match safe_href(href) {
                        Some(href) => out.push(Inline::Link { href, children }),
                        None => children.into_iter().for_each(|child| match child {
                            Inline::Text(text) => push_text(&mut out, &text),
                            other => out.push(other),
                        }),
                    }
                }
                i += open + used;
                continue;
            }
        }
        if c == '<' {
            // <https://…> autolinks.
            if let Some(end) = rest.find('>') {
                let target = &rest[1..end];
                if !target.contains(char::is_whitespace) {
                    if let Some(href) =
                        safe_href(target).filter(|_| target.contains("://") || target.starts_with("mailto:"))
                    {
                        flush(&mut plain, &mut out);
                        out.push(Inline::Link { href, children: vec![Inline::Text(target.to_owned())] });
                        i += end + 1;
                        continue;
                    }
                }
            }
        }
        if c == '&' {
            if let Some((decoded, used)) = entity(rest) {
                plain.push_str(decoded);
                i += used;
                continue;
            }
        }
        plain.push(c);
        i += c.len_utf8();
    }
    flush(&mut plain, &mut out);
    out
}

/// Append text, merging with a text run before it (one DOM node, not many).
fn push_text(out: &mut Vec<Inline>, text: &str) {
    match out.last_mut() {
        Some(Inline::Text(last)) => last.push_str(text),
        _ => out.push(Inline::Text(text.to_owned())),
    }
}

type Wrap = fn(Vec<Inline>) -> Inline;

/// The emphasis delimiter `text` starts with, longest first.
fn emphasis(text: &str) -> Option<(&'static str, Wrap)> {
    const DELIMITERS: [(&str, Wrap); 5] = [
        ("**", Inline::Strong),
        ("__", Inline::Strong),
        ("~~", Inline::Strike),
        ("*", Inline::Emphasis),
        ("_", Inline::Emphasis),
    ];
    DELIMITERS.into_iter().find(|(delimiter, _)| text.starts_with(delimiter))
}

/// Where `delimiter` closes in `text`: not after whitespace, not part of a longer run, and
/// for `_` at the end of a word.
fn closing(text: &str, delimiter: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(delimiter) {
        let at = from + found;
        let before_ok = at > 0 && !text[..at].ends_with(char::is_whitespace);
        let after = &text[at + delimiter.len()..];
        let single = delimiter.len() == 1;
        let longer_run = single && after.starts_with(delimiter);
        let word_ok = !delimiter.starts_with('_') || !after.starts_with(is_word_char);
        // Skip over code spans: delimiters inside them do not count.
        if let Some(tick) = text[from..at].find('`') {
            let tick = from + tick;
            if let Some(close) = text[tick + 1..].find('`') {
                from = tick + 1 + close + 1;
                continue;
            }
        }
        if before_ok && !longer_run && word_ok {
            return Some(at);
        }
        from = at + delimiter.len();
    }
    None
}

fn word_boundary_before(text: &str) -> bool {
    !text.ends_with(is_word_char)
}

/// `[label](target "title")`: the label, the target and how many bytes it took.
fn link(text: &str) -> Option<(&str, &str, usize)> {
    let close = matching(text, '[', ']', false)?;
    let after = &text[close + 1..];
    if !after.starts_with('(') {
        return None;
    }
    let end = matching(after, '(', ')', true)?;
    let inside = after[1..end].trim();
    let target = inside.split_whitespace().next().unwrap_or("");
    let target = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')).unwrap_or(target);
    Some((&text[1..close], target, close + 1 + end + 1))
}

/// Where the bracket `text` opens with closes (nested pairs counted): not across a blank
/// line, and not across any line break when `one_line`.
fn matching(text: &str, open: char, close: char, one_line: bool) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        } else if c == '\n' && (one_line || text[..i].ends_with('\n')) {
            return None;
        }
    }
    None
}

/// The entities models actually write.
fn entity(text: &str) -> Option<(&'static str, usize)> {
    const ENTITIES: [(&str, &str); 8] = [
        ("&amp;", "&"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&apos;", "'"),
        ("&nbsp;", "\u{a0}"),
        ("&mdash;", "—"),
    ];
    ENTITIES.iter().find(|(name, _)| text.starts_with(name)).map(|(name, value)| (*value, name.len()))
}

/// The text of inlines without formatting (image alt text, titles).
pub fn plain_text(inlines: &[Inline]) -> String {
    let mut out = String::new();
    for inline in inlines {
        match inline {
            Inline::Text(text) | Inline::Code(text) => out.push_str(text),
            Inline::Strong(children) | Inline::Emphasis(children) | Inline::Strike(children) => {
                out.push_str(&plain_text(children))
            }
            Inline::Link { children, .. } => out.push_str(&plain_text(children)),
            Inline::LineBreak => out.push(' '),
        }
    }
    out
}

#[cfg(test)]
fn block_text(block: &Block) -> String {
    match block {
        Block::Paragraph(inlines) | Block::Heading(_, inlines) => plain_text(inlines),
        Block::Code { text, .. } => text.clone(),
        Block::Quote(blocks) => blocks.iter().map(block_text).collect::<Vec<_>>().join(" "),
        Block::List { items, .. } => {
            items.iter().flat_map(|item| item.iter().map(block_text)).collect::<Vec<_>>().join(" ")
        }
        Block::Table { head, rows } => {
            head.iter().chain(rows.iter().flatten()).map(|cell| plain_text(cell)).collect::<Vec<_>>().join(" ")
        }
        Block::Rule => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Inline {
        Inline::Text(s.to_owned())
    }

    #[test]
    fn paragraphs_emphasis_and_code() {
        let blocks = parse("Hello **bold** and *it* with `x < y`.\n\nSecond.");
        assert_eq!(
            blocks,
            vec![
                Block::Paragraph(vec![
                    text("Hello "),
                    Inline::Strong(vec![text("bold")]),
                    text(" and "),
                    Inline::Emphasis(vec![text("it")]),
                    text(" with "),
                    Inline::Code("x < y".into()),
                    text("."),
                ]),
                Block::Paragraph(vec![text("Second.")]),
            ]
        );
    }

    #[test]
    fn raw_html_stays_text() {
        let blocks = parse("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(2)> there");
        let all: String = blocks.iter().map(block_text).collect();
        assert!(all.contains("<script>alert(1)</script>"), "{blocks:?}");
        assert!(all.contains("<img src=x onerror=alert(2)>"), "{blocks:?}");
    }

    #[test]
    fn only_web_and_mail_links_survive() {
        let blocks = parse("[ok](https://example.com) [bad](javascript:alert(1)) [data](data:text/html,x)");
        let Block::Paragraph(inlines) = &blocks[0] else { panic!("{blocks:?}") };
        let links: Vec<_> = inlines.iter().filter(|i| matches!(i, Inline::Link { .. })).collect();
        assert_eq!(links, vec![&Inline::Link { href: "https://example.com".into(), children: vec![text("ok")] }]);
        assert!(plain_text(inlines).contains("bad"), "the text of a refused link stays");
        assert_eq!(safe_href(" JavaScript:alert(1)"), None);
        assert_eq!(safe_href("mailto:a@b.c").as_deref(), Some("mailto:a@b.c"));
        assert_eq!(safe_href("/relative"), None);
    }

    #[test]
    fn link_labels_may_wrap_but_targets_may_not() {
        let wrapped = parse("[two\nlines](https://x.org)");
        let Block::Paragraph(inlines) = &wrapped[0] else { panic!("{wrapped:?}") };
        assert!(matches!(&inlines[0], Inline::Link { href, .. } if href == "https://x.org"), "{inlines:?}");
        let broken = parse("[a](https://x.org\nmore)");
        let Block::Paragraph(inlines) = &broken[0] else { panic!("{broken:?}") };
        assert!(inlines.iter().all(|i| !matches!(i, Inline::Link { .. })), "{inlines:?}");
    }

    #[test]
    fn images_become_links_and_load_nothing() {
        let blocks = parse("![a cat](https://example.com/cat.png) ![x](javascript:1)");
        let Block::Paragraph(inlines) = &blocks[0] else { panic!("{blocks:?}") };
        assert_eq!(
            inlines[0],
            Inline::Link { href: "https://example.com/cat.png".into(), children: vec![text("image: a cat")] }
        );
        assert!(plain_text(inlines).contains("[image: x]"));
    }

    #[test]
    fn fenced_code_keeps_its_language_and_text() {
        let blocks = parse("```rust title\nfn main() {}\n```\n");
        assert_eq!(blocks, vec![Block::Code { lang: Some("rust".into()), text: "fn main() {}\n".into() }]);
    }

    #[test]
    fn an_unfinished_stream_still_renders() {
        let blocks = parse("Look:\n\n```py\nprint('hi')");
        assert_eq!(blocks[1], Block::Code { lang: Some("py".into()), text: "print('hi')".into() });
        let blocks = parse("some **bold");
        assert_eq!(
            plain_text(match &blocks[0] {
                Block::Paragraph(i) => i,
                other => panic!("{other:?}"),
            }),
            "some **bold"
        );
    }

    #[test]
    fn what_models_write_in_practice() {
        // snake_case and arithmetic are not emphasis; code spans keep their stars.
        assert_eq!(
            parse("call my_func_name with 2 * 3 * 4 and `a*b*c`"),
            vec![Block::Paragraph(vec![text("call my_func_name with 2 * 3 * 4 and "), Inline::Code("a*b*c".into())])]
        );
        // Nested lists, a loose list, and a paragraph after the list.
        let blocks = parse("1. first\n   - inner a\n   - inner b\n2. second\n\n3. third\n\nAfter.");
        let Block::List { start: Some(1), items } = &blocks[0] else { panic!("{blocks:?}") };
        assert_eq!(items.len(), 3, "{items:?}");
        assert!(matches!(&items[0][1], Block::List { start: None, items } if items.len() == 2), "{items:?}");
        assert_eq!(blocks[1], Block::Paragraph(vec![text("After.")]));
        // Hard breaks, escapes, entities, autolinks, closing hashes, ~~~ fences.
        assert_eq!(
            parse("one  \ntwo\\\nthree \\*not em\\* &amp; <https://x.org>"),
            vec![Block::Paragraph(vec![
                text("one"),
                Inline::LineBreak,
                text("two"),
                Inline::LineBreak,
                text("three *not em* & "),
                Inline::Link { href: "https://x.org".into(), children: vec![text("https://x.org")] },
            ])]
        );
        assert_eq!(parse("## Title ##")[0], Block::Heading(2, vec![text("Title")]));
        assert_eq!(parse("~~~\nx\n~~~")[0], Block::Code { lang: None, text: "x\n".into() });
        assert_eq!(parse("~~gone~~")[0], Block::Paragraph(vec![Inline::Strike(vec![text("gone")])]));
        assert_eq!(parse("***")[0], Block::Rule);
    }

    #[test]
    fn lists_tables_quotes_and_headings() {
        let blocks = parse("# Title\n\n- one\n- two\n\n3. three\n\n> quoted\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert_eq!(blocks[0], Block::Heading(1, vec![text("Title")]));
        assert_eq!(
            blocks[1],
            Block::List {
                start: None,
                items: vec![vec![Block::Paragraph(vec![text("one")])], vec![Block::Paragraph(vec![text("two")])]]
            }
        );
        assert!(matches!(&blocks[2], Block::List { start: Some(3), .. }));
        assert_eq!(blocks[3], Block::Quote(vec![Block::Paragraph(vec![text("quoted")])]));
        assert_eq!(
            blocks[4],
            Block::Table {
                head: vec![vec![text("a")], vec![text("b")]],
                rows: vec![vec![vec![text("1")], vec![text("2")]]]
            }
        );
    }
}
