//! Model output as a tree of safe Markdown blocks.
//!
//! The model's text is untrusted: it may contain `<script>`, `<img onerror=…>` or
//! `javascript:` links, on purpose (prompt injection) or not. The UI never hands it to
//! `innerHTML`; it parses it here into [`Block`]s and [`Inline`]s that the view turns into
//! DOM nodes one by one. Raw HTML in the input stays visible as text, images become links
//! (nothing is fetched), and only `http`, `https` and `mailto` links survive.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// A block of rendered Markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Paragraph(Vec<Inline>),
    Heading(u8, Vec<Inline>),
    /// A fenced or indented code block; `lang` is the fence's first word, if any.
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

/// Parse `text` into blocks. Never fails: anything unusual ends up as text.
pub fn parse(text: &str) -> Vec<Block> {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let mut builder = Builder::default();
    for event in Parser::new_ext(text, options) {
        builder.event(event);
    }
    builder.finish()
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

/// An open container while the event stream is walked.
#[derive(Debug)]
enum Frame {
    Blocks(Vec<Block>),
    Quote(Vec<Block>),
    List {
        start: Option<u64>,
        items: Vec<Vec<Block>>,
    },
    /// A list item: its blocks, and the inlines of a tight item not yet put in a block.
    Item(Vec<Block>, Vec<Inline>),
    Paragraph(Vec<Inline>),
    Heading(u8, Vec<Inline>),
    Code {
        lang: Option<String>,
        text: String,
    },
    Table {
        head: Vec<Vec<Inline>>,
        rows: Vec<Vec<Vec<Inline>>>,
        in_head: bool,
    },
    Row(Vec<Vec<Inline>>),
    Cell(Vec<Inline>),
    Strong(Vec<Inline>),
    Emphasis(Vec<Inline>),
    Strike(Vec<Inline>),
    Link(Option<String>, Vec<Inline>),
    Image(Option<String>, Vec<Inline>),
}

#[derive(Debug)]
struct Builder {
    stack: Vec<Frame>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder { stack: vec![Frame::Blocks(Vec::new())] }
    }
}

impl Builder {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => self.text(&text),
            Event::Code(code) => self.inline(Inline::Code(code.into_string())),
            // Raw HTML is shown as what it is: text.
            Event::Html(html) | Event::InlineHtml(html) => self.text(&html),
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => self.inline(Inline::LineBreak),
            Event::Rule => self.block(Block::Rule),
            Event::FootnoteReference(name) => self.text(&format!("[^{name}]")),
            Event::TaskListMarker(done) => self.text(if done { "☑ " } else { "☐ " }),
            Event::InlineMath(math) | Event::DisplayMath(math) => self.inline(Inline::Code(math.into_string())),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        let frame = match tag {
            Tag::Paragraph => Frame::Paragraph(Vec::new()),
            Tag::Heading { level, .. } => Frame::Heading(heading_level(level), Vec::new()),
            Tag::BlockQuote(_) => Frame::Quote(Vec::new()),
            Tag::CodeBlock(kind) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => info.split_whitespace().next().map(str::to_owned),
                    CodeBlockKind::Indented => None,
                };
                Frame::Code { lang, text: String::new() }
            }
            Tag::List(start) => Frame::List { start, items: Vec::new() },
            Tag::Item => Frame::Item(Vec::new(), Vec::new()),
            Tag::Table(_) => Frame::Table { head: Vec::new(), rows: Vec::new(), in_head: false },
            Tag::TableHead => {
                if let Some(Frame::Table { in_head, .. }) = self.stack.last_mut() {
                    *in_head = true;
                }
                Frame::Row(Vec::new())
            }
            Tag::TableRow => Frame::Row(Vec::new()),
            Tag::TableCell => Frame::Cell(Vec::new()),
            Tag::Emphasis => Frame::Emphasis(Vec::new()),
            Tag::Strong => Frame::Strong(Vec::new()),
            Tag::Strikethrough => Frame::Strike(Vec::new()),
            Tag::Link { dest_url, .. } => Frame::Link(safe_href(&dest_url), Vec::new()),
            Tag::Image { dest_url, .. } => Frame::Image(safe_href(&dest_url), Vec::new()),
            // Everything else (footnote definitions, metadata, HTML blocks…) is a plain
            // container whose contents still show.
            _ => Frame::Blocks(Vec::new()),
        };
        self.stack.push(frame);
    }

    fn end(&mut self, _tag: TagEnd) {
        if self.stack.len() <= 1 {
            return;
        }
        let Some(frame) = self.stack.pop() else { return };
        match frame {
            Frame::Paragraph(inlines) => self.block(Block::Paragraph(inlines)),
            Frame::Heading(level, inlines) => self.block(Block::Heading(level, inlines)),
            Frame::Quote(blocks) => self.block(Block::Quote(blocks)),
            Frame::Code { lang, text } => self.block(Block::Code { lang, text }),
            Frame::List { start, items } => self.block(Block::List { start, items }),
            Frame::Item(mut blocks, inlines) => {
                // Tight list items hold inlines directly, without a paragraph.
                if !inlines.is_empty() {
                    blocks.push(Block::Paragraph(inlines));
                }
                if let Some(Frame::List { items, .. }) = self.stack.last_mut() {
                    items.push(blocks);
                }
            }
            Frame::Table { head, rows, .. } => self.block(Block::Table { head, rows }),
            Frame::Row(cells) => {
                if let Some(Frame::Table { head, rows, in_head }) = self.stack.last_mut() {
                    if *in_head {
                        *head = cells;
                        *in_head = false;
                    } else {
                        rows.push(cells);
                    }
                }
            }
            Frame::Cell(inlines) => {
                if let Some(Frame::Row(cells)) = self.stack.last_mut() {
                    cells.push(inlines);
                }
            }
            Frame::Strong(inlines) => self.inline(Inline::Strong(inlines)),
            Frame::Emphasis(inlines) => self.inline(Inline::Emphasis(inlines)),
            Frame::Strike(inlines) => self.inline(Inline::Strike(inlines)),
            Frame::Link(Some(href), children) => self.inline(Inline::Link { href, children }),
            Frame::Link(None, children) => children.into_iter().for_each(|child| self.inline(child)),
            Frame::Image(href, alt) => {
                let alt = plain_text(&alt);
                let label = if alt.is_empty() { "image".to_owned() } else { format!("image: {alt}") };
                match href {
                    Some(href) => self.inline(Inline::Link { href, children: vec![Inline::Text(label)] }),
                    None => self.text(&format!("[{label}]")),
                }
            }
            Frame::Blocks(blocks) => blocks.into_iter().for_each(|block| self.block(block)),
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(Frame::Code { text: code, .. }) = self.stack.last_mut() {
            code.push_str(text);
            return;
        }
        // Merge with the previous text run so the view makes one node, not many.
        if let Some(Inline::Text(last)) = self.inlines().and_then(|inlines| inlines.last_mut()) {
            last.push_str(text);
            return;
        }
        self.inline(Inline::Text(text.to_owned()));
    }

    fn inline(&mut self, inline: Inline) {
        if let Some(inlines) = self.inlines() {
            inlines.push(inline);
        } else {
            // Inline content outside any paragraph (e.g. after raw HTML): give it one.
            self.block(Block::Paragraph(vec![inline]));
        }
    }

    /// The inline list text goes into now, if the innermost frame takes inlines.
    fn inlines(&mut self) -> Option<&mut Vec<Inline>> {
        match self.stack.last_mut()? {
            Frame::Paragraph(inlines)
            | Frame::Heading(_, inlines)
            | Frame::Item(_, inlines)
            | Frame::Cell(inlines)
            | Frame::Strong(inlines)
            | Frame::Emphasis(inlines)
            | Frame::Strike(inlines)
            | Frame::Link(_, inlines)
            | Frame::Image(_, inlines) => Some(inlines),
            _ => None,
        }
    }

    fn block(&mut self, block: Block) {
        match self.stack.last_mut() {
            Some(Frame::Blocks(blocks) | Frame::Quote(blocks)) => blocks.push(block),
            Some(Frame::Item(blocks, inlines)) => {
                if !inlines.is_empty() {
                    blocks.push(Block::Paragraph(std::mem::take(inlines)));
                }
                blocks.push(block);
            }
            _ => {
                // A block inside inline content cannot happen in valid CommonMark; keep its
                // text rather than lose it.
                let text = block_text(&block);
                if let Some(inlines) = self.inlines() {
                    inlines.push(Inline::Text(text));
                }
            }
        }
    }

    fn finish(mut self) -> Vec<Block> {
        // Close whatever an unfinished (still streaming) text left open.
        while self.stack.len() > 1 {
            self.end(TagEnd::Paragraph);
        }
        match self.stack.pop() {
            Some(Frame::Blocks(blocks)) => blocks,
            _ => Vec::new(),
        }
    }
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
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
