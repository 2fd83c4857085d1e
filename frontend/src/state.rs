//! What the whole UI knows about the agent, kept current by subscriptions.
//!
//! One [`Agent`] is provided as context at the root. It owns the API connection and
//! reconnects by itself: the agent's runtime restarts after a panic (and the desktop
//! shell's agent stops and starts with the app), and the UI must survive that with nothing
//! but a banner. Views read its signals and call the API through [`Agent::client`]; they
//! never open connections of their own.

use std::collections::HashMap;
use std::sync::Arc;

use jsonrpsee::core::client::Client;
use leptos::prelude::*;
use leptos::task::spawn_local;
use pryx_api::{Activity, Approval, ApprovalStatus, PryxApiClient, Session, TurnEvent, TurnEventEnvelope};

use crate::rpc::{self, ConnectError};

/// Where the token is kept in a browser tab (the desktop window injects it instead).
const TOKEN_KEY: &str = "pryx.token";

/// The state of the connection, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Connected,
    /// Lost; trying again.
    Reconnecting,
    /// No token yet, or the agent refused the one we had.
    NeedsToken {
        refused: bool,
    },
}

/// A message for the user at the top of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
    /// Distinguishes notices with the same text, so each one gets its own timer.
    pub id: u64,
}

/// A tool call of a turn that is still running.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveTool {
    pub call: pryx_api::ToolCall,
    pub output: Option<(String, bool)>,
    pub progress: Option<String>,
}

/// A running turn as it streams in.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveTurn {
    pub turn_id: String,
    pub text: String,
    pub tools: Vec<LiveTool>,
}

/// The agent as the UI sees it. `Copy`: every field is a signal handle.
#[derive(Clone, Copy)]
pub struct Agent {
    client: RwSignal<Option<Arc<Client>>>,
    pub link: RwSignal<Link>,
    pub activity: RwSignal<Option<Activity>>,
    pub sessions: RwSignal<Vec<Session>>,
    /// Approval requests waiting for an answer, oldest first.
    pub pending: RwSignal<Vec<Approval>>,
    /// Running turns by session id.
    pub live: RwSignal<HashMap<String, LiveTurn>>,
    /// Bumped when a session's stored history changed (a turn ended): views re-read it.
    pub history_version: RwSignal<HashMap<String, u64>>,
    pub notice: RwSignal<Option<Notice>>,
    /// Bumped at every (re)connection, so views reload what they show.
    pub connection: RwSignal<u64>,
}

impl Agent {
    pub fn new() -> Agent {
        Agent {
            client: RwSignal::new(None),
            link: RwSignal::new(Link::Connecting),
            activity: RwSignal::new(None),
            sessions: RwSignal::new(Vec::new()),
            pending: RwSignal::new(Vec::new()),
            live: RwSignal::new(HashMap::new()),
            history_version: RwSignal::new(HashMap::new()),
            notice: RwSignal::new(None),
            connection: RwSignal::new(0),
        }
    }

    /// The connection, or an error to show when there is none right now.
    pub fn client(&self) -> Result<Arc<Client>, String> {
        self.client.get_untracked().ok_or_else(|| "Not connected to the agent; reconnecting…".to_owned())
    }

    /// Show a message at the top for a few seconds.
    pub fn notify(&self, text: impl Into<String>, error: bool) {
        let id = js_sys::Date::now() as u64;
        let notice = self.notice;
        notice.set(Some(Notice { text: text.into(), error, id }));
        let ms = if error { 9000 } else { 6000 };
        spawn_local(async move {
            rpc::sleep(ms).await;
            if notice.with_untracked(|n| n.as_ref().is_some_and(|n| n.id == id)) {
                notice.set(None);
            }
        });
    }

    /// Run an API call; a failure (or no connection) as a sentence, for a view that shows
    /// it in place.
    pub async fn try_call<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, jsonrpsee::core::ClientError>>,
    {
        call(self.client()?).await.map_err(|e| rpc::readable(&e))
    }

    /// Run an API call; a failure becomes a notice at the top and `None`.
    pub async fn call<T, F, Fut>(&self, what: &str, call: F) -> Option<T>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, jsonrpsee::core::ClientError>>,
    {
        match self.try_call(call).await {
            Ok(value) => Some(value),
            Err(e) => {
                self.notify(format!("{what}: {e}"), true);
                None
            }
        }
    }

    /// Connect with the stored or injected token and keep reconnecting until the page closes
    /// or the token is refused.
    pub fn start(self) {
        spawn_local(async move { self.stay_connected().await });
    }

    /// Use `token` from now on (the sign-in form) and connect with it.
    pub fn sign_in(self, token: &str) {
        if let Some(storage) = session_storage() {
            let _ = storage.set_item(TOKEN_KEY, token.trim());
        }
        self.link.set(Link::Connecting);
        self.start();
    }

    async fn stay_connected(self) {
        let mut last_start: Option<(i64, u64)> = None;
        let mut delay = 250;
        loop {
            let Some(token) = token() else {
                self.link.set(Link::NeedsToken { refused: false });
                return;
            };
            match rpc::connect(&token).await {
                Ok((client, info)) => {
                    delay = 250;
                    let client = Arc::new(client);
                    let started = (info.started_at, info.runtime_restarts);
                    if let Some(before) = last_start {
                        let text = if before != started {
                            "Reconnected to the agent (it restarted)."
                        } else {
                            "Reconnected to the agent."
                        };
                        self.notify(text, false);
                    }
                    last_start = Some(started);
                    self.client.set(Some(client.clone()));
                    self.link.set(Link::Connected);
                    // For the first-render benchmark (benches/ui.rs): connected and live.
                    if let Some(performance) = web_sys::window().and_then(|w| w.performance()) {
                        let _ = performance.mark("pryx-connected");
                    }
                    self.connection.update(|n| *n += 1);
                    self.follow(client.clone());
                    client.on_disconnect().await;
                    self.client.set(None);
                    self.live.set(HashMap::new());
                    self.link.set(Link::Reconnecting);
                }
                Err(ConnectError::TokenRefused) => {
                    if let Some(storage) = session_storage() {
                        let _ = storage.remove_item(TOKEN_KEY);
                    }
                    self.link.set(Link::NeedsToken { refused: true });
                    return;
                }
                Err(ConnectError::Unreachable(_)) => {
                    if self.link.get_untracked() == Link::Connected {
                        self.link.set(Link::Reconnecting);
                    }
                    rpc::sleep(delay).await;
                    delay = (delay * 2).min(3000);
                }
            }
        }
    }

    /// Load the lists and subscribe to everything the UI shows live.
    fn follow(self, client: Arc<Client>) {
        let agent = self;
        let c = client.clone();
        spawn_local(async move {
            // The subscription sends the current activity first.
            let Ok(mut stream) = c.activity_subscribe().await else { return };
            while let Some(Ok(activity)) = stream.next().await {
                agent.activity.set(Some(activity));
            }
        });
        let c = client.clone();
        spawn_local(async move {
            let Ok(mut stream) = c.approvals_subscribe().await else { return };
            agent.refresh_pending().await;
            while let Some(Ok(approval)) = stream.next().await {
                agent.pending.update(|pending| {
                    pending.retain(|a| a.id != approval.id);
                    if approval.status == ApprovalStatus::Pending {
                        pending.push(approval);
                        pending.sort_unstable_by_key(|a| a.created_at);
                    }
                });
            }
        });
        let c = client;
        spawn_local(async move {
            let Ok(mut stream) = c.events_subscribe(None).await else { return };
            agent.refresh_sessions().await;
            while let Some(Ok(envelope)) = stream.next().await {
                agent.on_turn_event(envelope);
            }
        });
    }

    pub async fn refresh_sessions(&self) {
        if let Ok(sessions) = self.try_call(|c| async move { c.session_list().await }).await {
            self.sessions.set(sessions);
        }
    }

    pub async fn refresh_pending(&self) {
        if let Ok(mut pending) = self.try_call(|c| async move { c.approval_list(Some(false)).await }).await {
            pending.retain(|a| a.status == ApprovalStatus::Pending);
            pending.sort_unstable_by_key(|a| a.created_at);
            self.pending.set(pending);
        }
    }

    /// Mark `session_id`'s history as changed so its view reloads it.
    pub fn history_changed(&self, session_id: &str) {
        self.history_version.update(|versions| *versions.entry(session_id.to_owned()).or_default() += 1);
    }

    fn on_turn_event(self, envelope: TurnEventEnvelope) {
        let TurnEventEnvelope { turn_id, session_id, seq, event } = envelope;
        let ended = event.is_terminal();
        // A chat started elsewhere (Telegram, WhatsApp, another window) shows at once.
        if seq == 0 && !self.sessions.with_untracked(|all| all.iter().any(|s| s.id == session_id)) {
            spawn_local(async move { self.refresh_sessions().await });
        }
        self.live.update(|live| {
            let turn = live.entry(session_id.clone()).or_insert_with(|| LiveTurn {
                turn_id: turn_id.clone(),
                text: String::new(),
                tools: Vec::new(),
            });
            if turn.turn_id != turn_id {
                *turn = LiveTurn { turn_id: turn_id.clone(), text: String::new(), tools: Vec::new() };
            }
            match event {
                TurnEvent::Delta { text } => turn.text.push_str(&text),
                TurnEvent::ToolCall { call } => turn.tools.push(LiveTool { call, output: None, progress: None }),
                TurnEvent::ToolResult { call_id, output, is_error, .. } => {
                    if let Some(tool) = turn.tools.iter_mut().find(|t| t.call.id == call_id) {
                        tool.output = Some((output, is_error));
                    }
                }
                TurnEvent::ToolProgress { call_id, progress, total, message } => {
                    if let Some(tool) = turn.tools.iter_mut().find(|t| t.call.id == call_id) {
                        // Whole numbers: formatting floats would add about 40 KB to the page.
                        let amount = match total {
                            Some(total) if total > 0.0 => format!("{} %", (progress / total * 100.0).round() as i64),
                            _ => format!("{}", progress.round() as i64),
                        };
                        tool.progress = Some(match message {
                            Some(message) => format!("{amount} · {message}"),
                            None => amount,
                        });
                    }
                }
                _ => {}
            }
            if ended {
                live.remove(&session_id);
            }
        });
        if ended {
            self.history_changed(&session_id);
            spawn_local(async move { self.refresh_sessions().await });
        }
    }
}

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.session_storage().ok().flatten())
}

/// What the desktop shell's initialization script handed the page (`window.__PRYX__.KEY`);
/// nothing in a browser.
fn from_shell(key: &str) -> Option<wasm_bindgen::JsValue> {
    let window: wasm_bindgen::JsValue = web_sys::window()?.into();
    let handed = js_sys::Reflect::get(&window, &"__PRYX__".into()).ok().filter(|v| v.is_object())?;
    js_sys::Reflect::get(&handed, &key.into()).ok()
}

/// The desktop window's token (never in a URL), else what this tab signed in with.
fn token() -> Option<String> {
    let injected = from_shell("token").and_then(|token| token.as_string());
    injected.or_else(|| session_storage()?.get_item(TOKEN_KEY).ok().flatten()).filter(|t| !t.is_empty())
}

/// Whether the desktop shell asks about approvals in native dialogs (then the page does
/// not pop up a second prompt; the badge and the Approvals screen remain).
pub fn has_native_approvals() -> bool {
    from_shell("native_approvals").and_then(|flag| flag.as_bool()).unwrap_or(false)
}

/// Run `task` until the component (or effect run) that started it is cleaned up: a
/// screen's subscription ends when the user leaves the screen, not at the next item.
pub fn while_shown(task: impl std::future::Future<Output = ()> + 'static) {
    let (stop, stopped) = futures::channel::oneshot::channel::<()>();
    on_cleanup(move || drop(stop));
    spawn_local(async move {
        futures::future::select(std::pin::pin!(task), stopped).await;
    });
}
