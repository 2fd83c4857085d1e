//! The root of the Control Center: the navigation rail, the notice banner, sign-in, the
//! approval modal, and the route that picks the screen.

use leptos::ev;
use leptos::prelude::*;
use leptos::task::spawn_local;
use pryx_api::{AgentState, PryxApiClient};

use crate::approvals::{ApprovalModal, ApprovalPage, ApprovalsPage};
use crate::chat::{ChatPage, SearchBox};
use crate::connections::ConnectionsPage;
use crate::page::{current_route, go, set_title};
use crate::route::Route;
use crate::settings::SettingsPage;
use crate::state::{self, Agent, Link};
use crate::tools::ToolsPage;
use crate::traces::TracesPage;

/// The screens of the app; a route is one of them with its details (which chat…).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Screen {
    Chat,
    Approval,
    Approvals,
    Tools,
    Traces,
    Connections,
    Settings,
}

impl Screen {
    fn of(route: &Route) -> Screen {
        match route {
            Route::NewChat { .. } | Route::Session(_) => Screen::Chat,
            Route::Approval(_) => Screen::Approval,
            Route::Approvals => Screen::Approvals,
            Route::Tools => Screen::Tools,
            Route::Traces => Screen::Traces,
            Route::Connections => Screen::Connections,
            Route::Settings => Screen::Settings,
        }
    }
}

#[component]
pub fn App() -> impl IntoView {
    let agent = Agent::new();
    provide_context(agent);
    let search = SearchBox(NodeRef::new());
    provide_context(search);
    let route = RwSignal::new(current_route());
    let _ = window_event_listener(ev::hashchange, move |_| route.set(current_route()));
    // Ctrl+K (Cmd+K): find a chat, from anywhere.
    let _ = window_event_listener(ev::keydown, move |ev| {
        if (ev.ctrl_key() || ev.meta_key()) && ev.key().eq_ignore_ascii_case("k") {
            ev.prevent_default();
            if !matches!(route.get_untracked(), Route::NewChat { .. } | Route::Session(_)) {
                go(&Route::NewChat { text: String::new() });
            }
            request_animation_frame(move || {
                if let Some(input) = search.0.get_untracked() {
                    let _ = input.focus();
                    input.select();
                }
            });
        }
    });
    // Chats started elsewhere (the CLI, another tab) show up when the user comes back.
    let _ = window_event_listener(ev::focus, move |_| {
        spawn_local(async move {
            agent.refresh_sessions().await;
            agent.refresh_pending().await;
        });
    });
    agent.start();
    on_first_paint();

    // Which screen shows; switching between chats keeps the chat screen (its sidebar,
    // search and composer) and only changes what the signals below say.
    let screen = Memo::new(move |_| Screen::of(&route.get()));
    // What the chat and approval screens show. They keep their last value while another
    // screen is up, so a screen being closed never reacts to the route that closes it.
    let chat = Memo::new(move |last: Option<&(Option<String>, String)>| match route.get() {
        Route::Session(id) => (Some(id), String::new()),
        Route::NewChat { text } => (None, text),
        _ => last.cloned().unwrap_or_default(),
    });
    let session = Signal::derive(move || chat.with(|(session, _)| session.clone()));
    let prefill = Signal::derive(move || chat.with(|(_, text)| text.clone()));
    let approval = Memo::new(move |last: Option<&String>| match route.get() {
        Route::Approval(id) => id,
        _ => last.cloned().unwrap_or_default(),
    });
    // Only signing in replaces the screen: a reconnect keeps it (and what the user typed).
    let sign_in = Memo::new(move |_| match agent.link.get() {
        Link::NeedsToken { refused } => Some(refused),
        _ => None,
    });
    let content = move || match sign_in.get() {
        Some(refused) => view! { <SignIn refused/> }.into_any(),
        None => match screen.get() {
            Screen::Chat => view! { <ChatPage session prefill/> }.into_any(),
            Screen::Approval => view! { <ApprovalPage id=approval/> }.into_any(),
            Screen::Approvals => view! { <ApprovalsPage/> }.into_any(),
            Screen::Tools => view! { <ToolsPage/> }.into_any(),
            Screen::Traces => view! { <TracesPage/> }.into_any(),
            Screen::Connections => view! { <ConnectionsPage/> }.into_any(),
            Screen::Settings => view! { <SettingsPage/> }.into_any(),
        },
    };
    let chat_current = move || screen.get() == Screen::Chat;
    let show_modal = !state::has_native_approvals();
    view! {
        <div class="app">
            <nav class="rail" aria-label="Sections">
                <a class="logo" href="#/" title="Pryx">
                    <img src="icon.svg" alt="" width="28" height="28"/>
                    <span>"Pryx"</span>
                </a>
                <a class="rail-item" class:current=chat_current href="#/">"Chat"</a>
                <a class="rail-item" class:current=move || matches!(route.get(), Route::Approvals | Route::Approval(_)) href="#/approvals">
                    "Approvals"
                    <Show when=move || agent.pending.with(|p| !p.is_empty())>
                        <span class="count" aria-label="waiting">{move || agent.pending.with(|p| p.len())}</span>
                    </Show>
                </a>
                <a class="rail-item" class:current=move || route.get() == Route::Connections href="#/connections">"Connections"</a>
                <a class="rail-item" class:current=move || route.get() == Route::Tools href="#/tools">"Tools"</a>
                <a class="rail-item" class:current=move || route.get() == Route::Traces href="#/traces">"Traces"</a>
                <a class="rail-item" class:current=move || route.get() == Route::Settings href="#/settings">"Settings"</a>
                <div class="rail-foot">
                    <Status/>
                </div>
            </nav>
            <main class="main">
                <Banner/>
                {content}
            </main>
            <Show when=move || show_modal && agent.link.with(|l| *l == Link::Connected)>
                <ApprovalModal route/>
            </Show>
        </div>
    }
}

/// The agent's state and the pause switch, at the foot of the rail.
#[component]
fn Status() -> impl IntoView {
    let agent = expect_context::<Agent>();
    let text = move || match agent.link.get() {
        Link::Connecting => ("Connecting…", "wait"),
        Link::Reconnecting => ("Reconnecting…", "wait"),
        Link::NeedsToken { .. } => ("Not signed in", "error"),
        Link::Connected => match agent.activity.get().map(|a| a.state) {
            Some(AgentState::Idle) | None => ("Ready", "idle"),
            Some(AgentState::Thinking) => ("Thinking…", "busy"),
            Some(AgentState::WaitingForApproval) => ("Waiting for you", "ask"),
            Some(AgentState::Error) => ("Last turn failed", "error"),
            Some(AgentState::Paused) => ("Paused", "paused"),
        },
    };
    let paused = move || agent.activity.get().is_some_and(|a| a.paused);
    let toggle = move |_| {
        let pause = !paused();
        spawn_local(async move {
            if let Some(activity) =
                agent.call("Could not change the pause", |c| async move { c.agent_pause(pause).await }).await
            {
                agent.activity.set(Some(activity));
            }
        });
    };
    let error = move || agent.activity.get().and_then(|a| a.last_error);
    view! {
        <div class=move || format!("status {}", text().1) title=move || error().unwrap_or_default()>
            <span class="dot"></span>{move || text().0}
        </div>
        <button class="ghost small pause" on:click=toggle disabled=move || agent.link.get() != Link::Connected>
            {move || if paused() { "Resume agent" } else { "Pause agent" }}
        </button>
    }
}

/// Connection trouble and notices, above every screen.
#[component]
fn Banner() -> impl IntoView {
    let agent = expect_context::<Agent>();
    move || {
        if let Some(notice) = agent.notice.get() {
            let class = if notice.error { "banner error" } else { "banner" };
            return Some(view! { <div class=class role="status">{notice.text}</div> }.into_any());
        }
        match agent.link.get() {
            Link::Reconnecting => {
                Some(view! { <div class="banner" role="status">"Reconnecting to the agent…"</div> }.into_any())
            }
            _ => None,
        }
    }
}

/// A browser tab's sign-in: the token from `<data-dir>/token`.
#[component]
fn SignIn(refused: bool) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let token = RwSignal::new(String::new());
    set_title("Sign in");
    view! {
        <section class="page narrow sign-in">
            <h1>"Connect to your agent"</h1>
            <p>"Paste the token Pryx created at its first start. It is in the file " <code>"token"</code>
               " in Pryx's data directory (" <code>"~/.local/share/pryx/token"</code> " on Linux), or the value given to " <code>"--token"</code> "."</p>
            {refused.then(|| view! { <p class="error-box">"The agent refused that token. Check it and try again."</p> })}
            <form on:submit=move |ev: ev::SubmitEvent| {
                ev.prevent_default();
                let value = token.get_untracked();
                if !value.trim().is_empty() { agent.sign_in(&value) }
            }>
                <input type="password" autocomplete="off" placeholder="Token" aria-label="Token" autofocus
                    prop:value=move || token.get() on:input=move |ev| token.set(event_target_value(&ev))/>
                <button class="primary" type="submit">"Connect"</button>
            </form>
            <p class="muted small">"The token stays in this tab only and is forgotten when you close it."</p>
        </section>
    }
}

/// Tell the desktop shell (it measures when the app is ready; boot.js already reported the
/// first paint of the static frame) and the performance timeline that the app is on screen.
fn on_first_paint() {
    request_animation_frame(|| {
        request_animation_frame(|| {
            let Some(window) = web_sys::window() else { return };
            if let Some(performance) = window.performance() {
                let _ = performance.mark("pryx-first-render");
            }
            let ipc = js_sys::Reflect::get(&window, &"ipc".into()).ok().filter(|ipc| ipc.is_object());
            if let Some(ipc) = ipc {
                let post = js_sys::Reflect::get(&ipc, &"postMessage".into()).ok();
                if let Some(post) = post.and_then(|p| p.dyn_into::<js_sys::Function>().ok()) {
                    let _ = post.call1(&ipc, &"ready".into());
                }
            }
        })
    });
}

use wasm_bindgen::JsCast;
