//! The chat screen: the sessions sidebar (search, rename, delete, channel badges) and one
//! conversation (stored history, the running turn as it streams, tool calls, the
//! composer with send, stop and retry).

use std::collections::HashMap;

use leptos::ev;
use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use pryx_api::{Message, MessageStatus, PryxApiClient, Role, Session, SessionDetail, Surface, ToolCall};

use crate::render::Markdown;
use crate::route::Route;
use crate::state::{Agent, LiveTool};
use crate::text::{clip, pretty_json};

/// The search box of the sidebar, focused by Ctrl+K anywhere in the app.
#[derive(Clone, Copy)]
pub struct SearchBox(pub NodeRef<html::Input>);

/// The chat screen for a new chat (`session` None) or a stored session.
#[component]
pub fn ChatPage(#[prop(into)] session: Signal<Option<String>>, #[prop(into)] prefill: Signal<String>) -> impl IntoView {
    view! {
        <div class="chat-page">
            <SessionList current=session/>
            <Conversation session prefill/>
        </div>
    }
}

#[component]
fn SessionList(current: Signal<Option<String>>) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let SearchBox(search_box) = expect_context::<SearchBox>();
    let query = RwSignal::new(String::new());
    let renaming = RwSignal::new(None::<String>);
    let confirming_delete = RwSignal::new(None::<String>);
    let shown = move || {
        let query = folded(&query.get());
        agent.sessions.get().into_iter().filter(move |s| query.is_empty() || folded(&s.title).contains(&query))
    };
    let rename = move |id: String, title: String| {
        renaming.set(None);
        spawn_local(async move {
            if agent.call("Could not rename", |c| async move { c.session_rename(id, title).await }).await.is_some() {
                agent.refresh_sessions().await;
            }
        });
    };
    let delete = move |id: String| {
        confirming_delete.set(None);
        spawn_local(async move {
            let was_current = current.get_untracked().as_deref() == Some(id.as_str());
            let gone = id.clone();
            if agent.call("Could not delete", |c| async move { c.session_delete(gone).await }).await.is_some() {
                agent.refresh_sessions().await;
                if was_current {
                    crate::page::go(&Route::NewChat { text: String::new() });
                }
            }
        });
    };
    view! {
        <aside class="sessions">
            <a class="button primary new-chat" href="#/">"+ New chat"</a>
            <input class="search" type="search" placeholder="Search chats (Ctrl+K)" aria-label="Search chats"
                node_ref=search_box
                prop:value=move || query.get()
                on:input=move |ev| query.set(event_target_value(&ev))
                on:keydown=move |ev: ev::KeyboardEvent| if ev.key() == "Escape" { query.set(String::new()) }/>
            <ul>
                <For each=shown key=|s| (s.id.clone(), s.title.clone(), s.updated_at) let:session>
                    <SessionRow session current renaming confirming_delete rename delete/>
                </For>
            </ul>
            <Show when=move || agent.sessions.with(|s| s.is_empty())>
                <p class="empty small">"No chats yet."</p>
            </Show>
        </aside>
    }
}

/// Whether `signal` names the session `id` (the current one, the one being renamed…).
fn names(
    signal: impl Get<Value = Option<String>> + Copy + Send + Sync + 'static,
    id: String,
) -> impl Fn() -> bool + Clone + Send + Sync {
    move || signal.get().as_deref() == Some(id.as_str())
}

/// One chat in the sidebar: its link, or its rename box, and its actions.
#[component]
fn SessionRow(
    session: Session,
    current: Signal<Option<String>>,
    renaming: RwSignal<Option<String>>,
    confirming_delete: RwSignal<Option<String>>,
    rename: impl Fn(String, String) + Copy + Send + Sync + 'static,
    delete: impl Fn(String) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let Session { id, title, channel, .. } = session;
    let channel = (channel != Surface::Local).then_some(channel.as_str());
    let href = Route::Session(id.clone()).hash();
    let link = {
        let (id, title, href) = (id.clone(), title.clone(), href.clone());
        let confirming = names(confirming_delete, id.clone());
        move || {
            let for_delete = id.clone();
            let actions = if confirming() {
                view! {
                    <span class="row-actions confirm">
                        <button class="danger small" on:click=move |_| delete(for_delete.clone())>"Delete chat"</button>
                        <button class="ghost small" on:click=move |_| confirming_delete.set(None)>"Keep"</button>
                    </span>
                }
                .into_any()
            } else {
                let (for_rename, for_delete) = (id.clone(), id.clone());
                view! {
                    <span class="row-actions">
                        <button class="ghost icon" title="Rename" aria-label="Rename" on:click=move |_| renaming.set(Some(for_rename.clone()))>"✎"</button>
                        <button class="ghost icon" title="Delete" aria-label="Delete" on:click=move |_| confirming_delete.set(Some(for_delete.clone()))>"✕"</button>
                    </span>
                }
                .into_any()
            };
            view! {
                <a href=href.clone() class="session-link" data-id=id.clone()>
                    <span class="session-title">{title.clone()}</span>
                    {channel.map(|c| view! { <span class=format!("badge channel {c}")>{c}</span> })}
                </a>
                {actions}
            }
        }
    };
    let (is_current, is_renaming) = (names(current, id.clone()), names(renaming, id.clone()));
    view! {
        <li class:current=is_current>
            <Show when=is_renaming fallback=link>
                <RenameBox id=id.clone() title=title.clone() on_done=rename on_cancel=move || renaming.set(None)/>
            </Show>
        </li>
    }
}

#[component]
fn RenameBox(
    id: String,
    title: String,
    on_done: impl Fn(String, String) + Copy + 'static,
    on_cancel: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let input = NodeRef::<html::Input>::new();
    Effect::new(move |_| {
        if let Some(input) = input.get() {
            let _ = input.focus();
            input.select();
        }
    });
    view! {
        <input class="rename" node_ref=input value=title aria-label="New title"
            on:keydown=move |ev: ev::KeyboardEvent| match ev.key().as_str() {
                "Enter" => {
                    let title = event_target_value(&ev);
                    if title.trim().is_empty() { on_cancel() } else { on_done(id.clone(), title.trim().to_owned()) }
                }
                "Escape" => on_cancel(),
                _ => {}
            }
            on:blur=move |_| on_cancel()/>
    }
}

#[component]
fn Conversation(session: Signal<Option<String>>, prefill: Signal<String>) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let detail = RwSignal::new(None::<Result<SessionDetail, String>>);
    let live = move || session.get().and_then(|id| agent.live.with(|live| live.get(&id).cloned()));
    // Which turn of this chat is running: the history and the composer depend on this, not
    // on every streamed word.
    let running = Memo::new(move |_| {
        session.get().and_then(|id| agent.live.with(|live| live.get(&id).map(|t| t.turn_id.clone())))
    });
    // The tab's title: the chat's title as the sidebar knows it, else as loaded (a chat
    // created elsewhere, not in the sidebar yet: then the sidebar is refreshed too).
    let refreshed_for = StoredValue::new(None::<String>);
    Effect::new(move |_| {
        let Some(id) = session.get() else {
            crate::page::set_title("New chat");
            return;
        };
        let listed = agent.sessions.with(|s| s.iter().find(|s| s.id == id).map(|s| s.title.clone()));
        let loaded = detail.with(|d| match d {
            Some(Ok(detail)) if detail.session.id == id => Some(detail.session.title.clone()),
            _ => None,
        });
        if listed.is_none() && loaded.is_some() && refreshed_for.get_value().as_ref() != Some(&id) {
            refreshed_for.set_value(Some(id.clone()));
            spawn_local(async move { agent.refresh_sessions().await });
        }
        crate::page::set_title(listed.or(loaded).as_deref().unwrap_or("Chat"));
    });
    // Reload the history when the session, the connection or the stored history changes.
    Effect::new(move |_| {
        agent.connection.track();
        let Some(id) = session.get() else {
            detail.set(None);
            return;
        };
        agent.history_version.with(|versions| versions.get(&id).copied());
        spawn_local(async move {
            let target = id.clone();
            let result = agent.try_call(|c| async move { c.session_get(target).await }).await;
            // Only if the user is still looking at this session.
            if session.get_untracked().as_deref() == Some(id.as_str()) {
                detail.set(Some(result));
            }
        });
    });
    let messages = NodeRef::<html::Div>::new();
    // Follow the stream to the bottom, unless the user scrolled up to read.
    Effect::new(move |_| {
        detail.track();
        agent.live.track();
        if let Some(list) = messages.get() {
            let near_bottom = list.scroll_height() - list.scroll_top() - list.client_height() < 160;
            if near_bottom || list.scroll_top() == 0 {
                list.set_scroll_top(list.scroll_height());
            }
        }
    });
    let history = move || {
        match detail.get() {
        None if session.get().is_none() => view! {
            <div class="welcome">
                <h2>"What can I do for you?"</h2>
                <p class="muted">"Your agent answers with the model you connected, uses its tools, and asks before anything risky. Everything stays on this machine."</p>
            </div>
        }
        .into_any(),
        None => view! { <p class="muted loading">"Loading…"</p> }.into_any(),
        Some(Err(e)) => view! { <p class="error-box">{format!("This conversation cannot be shown: {e}")}</p> }.into_any(),
        Some(Ok(detail)) => {
            // While a turn runs, its stored messages (the assistant's, the tools') show in
            // the live view instead; the user's question stays where it is.
            let running = running.get();
            let messages = detail
                .messages
                .into_iter()
                .filter(|m| m.role == Role::User || running.is_none() || m.turn_id != running)
                .collect();
            message_list(messages).into_any()
        }
    }
    };
    view! {
        <section class="conversation">
            <div class="messages" node_ref=messages>
                {history}
                {move || live().map(|turn| view! {
                    <div class="msg assistant live">
                        {turn.tools.into_iter().map(live_tool).collect_view()}
                        <Markdown text=Signal::derive({ let text = turn.text.clone(); move || text.clone() })/>
                        <div class="thinking"><span class="dot"></span><span class="dot"></span><span class="dot"></span></div>
                    </div>
                })}
            </div>
            <Composer session prefill detail running/>
        </section>
    }
}

/// Stored messages; tool results are shown inside the call they answer.
fn message_list(messages: Vec<Message>) -> impl IntoView {
    let results: HashMap<String, Message> = messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .filter_map(|m| Some((m.tool_call_id.clone()?, m.clone())))
        .collect();
    messages
        .into_iter()
        .filter(|m| m.role != Role::Tool)
        .map(|message| match message.role {
            Role::User => view! {
                <div class="msg user" data-id=message.id><div class="bubble">{message.content}</div></div>
            }
            .into_any(),
            _ => {
                let calls = message
                    .tool_calls
                    .iter()
                    .map(|call| {
                        let result = results
                            .get(&call.id)
                            .map(|m| (m.content.clone(), m.status == MessageStatus::Failed || m.error.is_some()));
                        tool_call(call.clone(), result, Unfinished::Stored)
                    })
                    .collect_view();
                let status = status_line(&message);
                let content = message.content.clone();
                view! {
                    <div class="msg assistant" data-id=message.id>
                        <Markdown text=Signal::derive(move || content.clone())/>
                        {calls}
                        {status}
                    </div>
                }
                .into_any()
            }
        })
        .collect_view()
}

fn status_line(message: &Message) -> Option<impl IntoView> {
    let text = match message.status {
        MessageStatus::Complete | MessageStatus::Streaming => return None,
        MessageStatus::Cancelled => "Stopped.".to_owned(),
        MessageStatus::Interrupted => "Interrupted: the agent stopped while writing this.".to_owned(),
        MessageStatus::Failed => format!("Failed: {}", message.error.clone().unwrap_or_else(|| "unknown error".into())),
    };
    let class = if message.status == MessageStatus::Failed { "msg-status error" } else { "msg-status" };
    Some(view! { <div class=class>{text}</div> })
}

fn live_tool(tool: LiveTool) -> impl IntoView {
    tool_call(tool.call, tool.output, Unfinished::Running(tool.progress))
}

/// What a call without a result is doing.
enum Unfinished {
    /// Still running (with the server's latest progress report, if any).
    Running(Option<String>),
    /// From the stored history: it never ran to the end (stopped, the agent crashed).
    Stored,
}

/// One tool call, collapsed to its name and outcome; open it to see arguments and result.
fn tool_call(call: ToolCall, result: Option<(String, bool)>, unfinished: Unfinished) -> impl IntoView {
    let arguments = pretty_json(&call.arguments);
    let (state, class) = match (&result, unfinished) {
        (None, Unfinished::Running(progress)) => (progress.unwrap_or_else(|| "running…".into()), "tool running"),
        (None, Unfinished::Stored) => ("no result".into(), "tool"),
        (Some((_, true)), _) => ("failed".into(), "tool failed"),
        (Some((_, false)), _) => ("done".into(), "tool done"),
    };
    view! {
        <details class=class>
            <summary><span class="tool-icon">"⚙"</span><span class="tool-name">{call.name}</span><span class="tool-state">{state}</span></summary>
            <div class="tool-body">
                <div class="label">"Arguments"</div>
                <pre>{arguments}</pre>
                {result.map(|(output, _)| view! { <div class="label">"Result"</div><pre>{clip(output, 20_000)}</pre> })}
            </div>
        </details>
    }
}

#[component]
fn Composer(
    session: Signal<Option<String>>,
    prefill: Signal<String>,
    detail: RwSignal<Option<Result<SessionDetail, String>>>,
    /// The turn of this chat that is running, if any.
    running: Memo<Option<String>>,
) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let draft = RwSignal::new(String::new());
    let sending = RwSignal::new(false);
    let textarea = NodeRef::<html::Textarea>::new();
    // A new route: take its prefilled text (a `pryx://new?text=` link) and focus.
    Effect::new(move |_| {
        session.track();
        draft.set(prefill.get());
        if let Some(textarea) = textarea.get() {
            let _ = textarea.focus();
        }
    });
    // The last user message, when the answer to it failed or stopped: what Retry sends.
    let retryable = move || {
        if running.with(Option::is_some) {
            return None;
        }
        detail.with(|d| {
            let messages = &d.as_ref()?.as_ref().ok()?.messages;
            let last = messages.iter().rev().find(|m| m.role != Role::Tool)?;
            let unfinished = last.role == Role::Assistant
                && matches!(last.status, MessageStatus::Failed | MessageStatus::Interrupted | MessageStatus::Cancelled);
            unfinished.then(|| messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.clone()))?
        })
    };
    let send_text = move |text: String, from_draft: bool| {
        if text.trim().is_empty() || sending.get_untracked() {
            return;
        }
        sending.set(true);
        spawn_local(async move {
            let existing = session.get_untracked();
            let id = match existing.clone() {
                Some(id) => Some(id),
                None => agent
                    .call("Could not start a chat", |c| async move { c.session_create(None).await })
                    .await
                    .map(|s| s.id),
            };
            if let Some(id) = id {
                let target = id.clone();
                let sent = agent.call("Not sent", |c| async move { c.message_send(target, text).await }).await;
                if sent.is_some() {
                    if from_draft {
                        draft.set(String::new());
                    }
                    agent.history_changed(&id);
                    agent.refresh_sessions().await;
                    if existing.is_none() {
                        crate::page::go(&Route::Session(id));
                    }
                }
            }
            sending.set(false);
        });
    };
    let send = move || send_text(draft.get_untracked(), true);
    let stop = move |_| {
        if let Some(turn_id) = running.get_untracked() {
            spawn_local(async move {
                agent.call("Could not stop", |c| async move { c.turn_cancel(turn_id).await }).await;
            });
        }
    };
    view! {
        <form class="composer" on:submit=move |ev: ev::SubmitEvent| { ev.prevent_default(); send(); }>
            <Show when=move || retryable().is_some()>
                <div class="retry-row">
                    <span class="muted">"The last answer did not finish."</span>
                    <button type="button" class="small" on:click=move |_| if let Some(text) = retryable() { send_text(text, false) }>"Retry"</button>
                </div>
            </Show>
            <div class="composer-box">
                <textarea node_ref=textarea rows="1" aria-label="Message"
                    placeholder="Message Pryx (Enter to send, Shift+Enter for a new line)"
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                    on:keydown=move |ev: ev::KeyboardEvent| {
                        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                            ev.prevent_default();
                            send();
                        }
                    }></textarea>
                <Show when=move || running.with(Option::is_some) fallback=move || view! {
                    <button type="submit" class="primary send" disabled=move || sending.get() || draft.with(|d| d.trim().is_empty())>"Send"</button>
                }>
                    <button type="button" class="stop" on:click=stop>"Stop"</button>
                </Show>
            </div>
        </form>
    }
}

/// `text` in lower case, for searching. The browser folds the case: Rust's own would bring
/// Unicode's case tables into the page.
fn folded(text: &str) -> String {
    js_sys::JsString::from(text).to_lower_case().into()
}
