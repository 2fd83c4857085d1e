//! Markdown trees ([`crate::markdown`]) as DOM: every string becomes a text node, so
//! nothing the model writes can become markup. Code blocks get highlighting and a copy
//! button; links open outside the app.

use leptos::prelude::*;

use crate::highlight::{highlight, Kind};
use crate::markdown::{self, Block, Inline};

/// The model's (or anyone's) Markdown, rendered safely.
#[component]
pub fn Markdown(#[prop(into)] text: Signal<String>) -> impl IntoView {
    move || text.with(|text| blocks(markdown::parse(text)))
}

fn blocks(blocks: Vec<Block>) -> Vec<AnyView> {
    blocks.into_iter().map(block).collect()
}

fn block(block: Block) -> AnyView {
    match block {
        Block::Paragraph(content) => view! { <p>{inlines(content)}</p> }.into_any(),
        Block::Heading(level, content) => match level {
            1 => view! { <h3>{inlines(content)}</h3> }.into_any(),
            2 => view! { <h4>{inlines(content)}</h4> }.into_any(),
            _ => view! { <h5>{inlines(content)}</h5> }.into_any(),
        },
        Block::Code { lang, text } => view! { <CodeBlock lang text/> }.into_any(),
        Block::Quote(content) => view! { <blockquote>{blocks(content)}</blockquote> }.into_any(),
        Block::List { start: None, items } => view! { <ul>{list_items(items)}</ul> }.into_any(),
        Block::List { start: Some(start), items } => {
            view! { <ol start=start.to_string()>{list_items(items)}</ol> }.into_any()
        }
        Block::Table { head, rows } => view! {
            <div class="table-wrap">
                <table>
                    <thead><tr>{head.into_iter().map(|cell| view! { <th>{inlines(cell)}</th> }).collect_view()}</tr></thead>
                    <tbody>
                        {rows.into_iter().map(|row| view! {
                            <tr>{row.into_iter().map(|cell| view! { <td>{inlines(cell)}</td> }).collect_view()}</tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        }
        .into_any(),
        Block::Rule => view! { <hr/> }.into_any(),
    }
}

fn list_items(items: Vec<Vec<Block>>) -> Vec<AnyView> {
    items.into_iter().map(|item| view! { <li>{blocks(item)}</li> }.into_any()).collect()
}

fn inlines(inlines: Vec<Inline>) -> Vec<AnyView> {
    inlines.into_iter().map(inline).collect()
}

fn inline(inline: Inline) -> AnyView {
    match inline {
        Inline::Text(text) => text.into_any(),
        Inline::Code(code) => view! { <code>{code}</code> }.into_any(),
        Inline::Strong(content) => view! { <strong>{inlines(content)}</strong> }.into_any(),
        Inline::Emphasis(content) => view! { <em>{inlines(content)}</em> }.into_any(),
        Inline::Strike(content) => view! { <del>{inlines(content)}</del> }.into_any(),
        Inline::Link { href, children } => {
            let title = href.clone();
            view! { <a href=href title=title target="_blank" rel="noopener noreferrer">{inlines(children)}</a> }
                .into_any()
        }
        Inline::LineBreak => view! { <br/> }.into_any(),
    }
}

/// A highlighted code block with its language and a copy button.
#[component]
pub fn CodeBlock(lang: Option<String>, text: String) -> impl IntoView {
    let copied = RwSignal::new(false);
    let runs = highlight(lang.as_deref(), &text);
    let copy = move |_| {
        let text = text.clone();
        if let Some(clipboard) = web_sys::window().map(|w| w.navigator().clipboard()) {
            let _ = clipboard.write_text(&text);
            copied.set(true);
            set_timeout(move || copied.set(false), std::time::Duration::from_millis(1500));
        }
    };
    view! {
        <div class="code">
            <div class="code-bar">
                <span>{lang.unwrap_or_default()}</span>
                <button class="ghost small" on:click=copy title="Copy the code">
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
            </div>
            <pre><code>
                {runs.into_iter().map(|(kind, text)| match kind {
                    Kind::Plain => text.into_any(),
                    kind => view! { <span class=kind.class()>{text}</span> }.into_any(),
                }).collect_view()}
            </code></pre>
        </div>
    }
}
