//! The turn engine: sessions' turns in order, each as its own task, with an event log that
//! late subscribers replay from the start, and what the owner sees of it all (activity,
//! pause).
//!
//! A turn answers one user message. Turns of one session run one after another in the
//! order their messages arrived (each waits for the previous one); turns of different
//! sessions run concurrently. Every event a turn produces is kept in the turn's in-memory
//! log, fanned out to live subscribers, and written to the store as it happens. How one
//! model request streams is in `step.rs`, how tool calls run in `tool_calls.rs`, what the
//! model is sent in `context.rs`.
//!
//! A panic inside a turn is caught here: it fails that turn only, is recorded as a crash,
//! and the client gets an `error` event.
//!
//! Memory: a running turn's log lives as long as the turn. A finished turn's log stays
//! for late subscribers only within the caps of [`FinishedLogs`] (count, bytes, age);
//! after that a subscriber gets the stored outcome. Nothing else of a turn outlives it.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use pryx_api::{
    from_wire_name, wire_name, Activity, ErrorKind, Role, TurnEvent, TurnEventEnvelope, TurnStarted, TurnStatus,
    MAX_MESSAGE_CHARS,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::context::{title_from, DEFAULT_TITLE};
use super::step::internal;
use super::tool_rules::ToolRules;
use super::{AgentError, Faults, PauseSwitch};
use crate::approvals::Broker;
use crate::config::Config;
use crate::llm::{Completion, LlmError, ProviderResolver};
use crate::runtime::panics;
use crate::store::Store;
use crate::telemetry::SPAN_TARGET;
use crate::tools::LiveTools;

/// How long a finished turn's event log stays in memory for late subscribers, at most.
const KEEP_FINISHED_TURN: Duration = Duration::from_secs(120);
/// At most this many finished turns keep their event logs in memory ...
const MAX_FINISHED_TURNS: usize = 256;
/// ... and their logs hold at most about this many bytes together.
const MAX_FINISHED_LOG_BYTES: usize = 4 << 20;

/// Everything a turn needs to know about itself, shared with subscribers.
pub(super) struct TurnHandle {
    pub(super) id: String,
    pub(super) session_id: String,
    pub(super) cancel: CancellationToken,
    /// The turn's events in order; an event's index is its `seq`. Envelopes are made when
    /// an event is sent, so the log does not hold the turn's ids once per event.
    log: Mutex<Vec<TurnEvent>>,
    /// Whether the turn has ended; every event also wakes the receivers, so followers
    /// wait on this one channel for both (each channel costs a few hundred bytes per turn).
    progress: watch::Sender<bool>,
    /// Test fault: panic at this turn's first delta (armed by `debug.fault turn_panic`).
    pub(super) panic_at_first_delta: AtomicBool,
}

impl TurnHandle {
    fn new(id: String, session_id: String, cancel: CancellationToken, panic_at_first_delta: bool) -> TurnHandle {
        TurnHandle {
            id,
            session_id,
            cancel,
            log: Mutex::new(Vec::new()),
            progress: watch::channel(false).0,
            panic_at_first_delta: AtomicBool::new(panic_at_first_delta),
        }
    }

    fn envelope(&self, seq: usize, event: TurnEvent) -> TurnEventEnvelope {
        TurnEventEnvelope { turn_id: self.id.clone(), session_id: self.session_id.clone(), seq: seq as u64, event }
    }

    fn events_from(&self, next: usize) -> Vec<TurnEventEnvelope> {
        let log = self.lock_log();
        let events = log.get(next..).unwrap_or_default();
        events.iter().enumerate().map(|(i, event)| self.envelope(next + i, event.clone())).collect()
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, Vec<TurnEvent>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_finished(&self) -> bool {
        *self.progress.borrow()
    }

    async fn wait_finished(&self) {
        let mut rx = self.progress.subscribe();
        let _ = rx.wait_for(|finished| *finished).await;
    }

    /// Mark the turn ended; returns about how many bytes its log holds (for the caps).
    fn finish(&self) -> usize {
        let bytes = {
            let mut log = self.lock_log();
            log.shrink_to_fit();
            log.iter().map(event_bytes).sum::<usize>() + self.id.len() + self.session_id.len()
        };
        self.progress.send_replace(true);
        bytes
    }
}

/// About how many bytes `event` takes in a log: the value and the text it owns.
fn event_bytes(event: &TurnEvent) -> usize {
    let text = match event {
        TurnEvent::Delta { text } => text.len(),
        TurnEvent::ToolCall { call } => call.id.len() + call.name.len() + call.arguments.len(),
        TurnEvent::ToolResult { call_id, name, output, .. } => call_id.len() + name.len() + output.len(),
        TurnEvent::ToolProgress { call_id, message, .. } => call_id.len() + message.as_ref().map_or(0, String::len),
        TurnEvent::ApprovalRequested { approval } | TurnEvent::ApprovalSettled { approval } => {
            serde_json::to_string(approval).map_or(0, |s| s.len())
        }
        TurnEvent::Error { message, .. } => message.len(),
        TurnEvent::Usage { .. } | TurnEvent::Done { .. } => 0,
    };
    std::mem::size_of::<TurnEvent>() + text
}

/// Which finished turns still keep their event logs: the newest ones, within a count, a
/// byte and an age cap. Pure bookkeeping; [`Turns`] drops the logs it names.
#[derive(Default)]
pub(super) struct FinishedLogs {
    /// Oldest first: (turn id, when it finished, bytes of its log).
    order: VecDeque<(String, Instant, usize)>,
    bytes: usize,
}

impl FinishedLogs {
    /// Keep a log that just finished; returns the turns whose logs must go to stay in caps.
    pub(super) fn keep(&mut self, turn_id: String, bytes: usize, now: Instant) -> Vec<String> {
        self.order.push_back((turn_id, now, bytes));
        self.bytes += bytes;
        let mut forget = self.expire(now);
        while self.order.len() > MAX_FINISHED_TURNS || (self.bytes > MAX_FINISHED_LOG_BYTES && self.order.len() > 1) {
            forget.extend(self.pop_oldest());
        }
        forget
    }

    /// The turns whose logs are older than [`KEEP_FINISHED_TURN`].
    pub(super) fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut forget = Vec::new();
        while self.order.front().is_some_and(|(_, at, _)| now.duration_since(*at) >= KEEP_FINISHED_TURN) {
            forget.extend(self.pop_oldest());
        }
        forget
    }

    fn pop_oldest(&mut self) -> Option<String> {
        let (id, _, bytes) = self.order.pop_front()?;
        self.bytes -= bytes;
        Some(id)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// How a turn ended.
pub(super) enum TurnEnd {
    Completed { message_id: i64 },
    Stopped { status: TurnStatus, message_id: Option<i64> },
    Failed(LlmError),
}

/// How one model request ended.
pub(super) enum StepEnd {
    Answered { message_id: i64, completion: Completion },
    Ended(TurnEnd),
}

/// The turns in memory: every running or queued turn, and finished ones within the caps
/// of [`FinishedLogs`].
#[derive(Default)]
pub(super) struct Turns {
    pub(super) by_id: HashMap<String, Arc<TurnHandle>>,
    /// The newest unfinished turn of each session; the next turn waits for it.
    pub(super) tail: HashMap<String, Arc<TurnHandle>>,
    finished: FinishedLogs,
}

impl Turns {
    fn forget(&mut self, turn_ids: Vec<String>) {
        for id in turn_ids {
            self.by_id.remove(&id);
        }
        if self.by_id.capacity() > 4 * self.by_id.len().max(64) {
            self.by_id.shrink_to_fit();
        }
    }
}

/// Runs turns. Shared (`Arc`) by the agent's API, the channels and every turn task.
pub struct TurnEngine {
    pub(super) store: Store,
    pub(super) config: Arc<Config>,
    pub(super) llm: Arc<ProviderResolver>,
    /// Built-ins plus the tools of ready MCP servers.
    pub(super) tools: Arc<LiveTools>,
    pub(super) rules: Arc<ToolRules>,
    pub(super) approvals: Arc<Broker>,
    turns: Arc<Mutex<Turns>>,
    pub(super) events: broadcast::Sender<TurnEventEnvelope>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    faults: Arc<Faults>,
    pause: PauseSwitch,
    /// Why the last turn failed; cleared when the next one starts.
    last_error: Mutex<Option<String>>,
    activity: watch::Sender<Activity>,
}

/// What the engine is built from (see [`super::Agent::assemble`]).
pub(super) struct EngineParts {
    pub store: Store,
    pub config: Arc<Config>,
    pub llm: Arc<ProviderResolver>,
    pub tools: Arc<LiveTools>,
    pub rules: Arc<ToolRules>,
    pub approvals: Arc<Broker>,
    pub faults: Arc<Faults>,
    pub pause: PauseSwitch,
}

impl TurnEngine {
    pub(super) fn new(parts: EngineParts) -> TurnEngine {
        let EngineParts { store, config, llm, tools, rules, approvals, faults, pause } = parts;
        TurnEngine {
            store,
            config,
            llm,
            tools,
            rules,
            approvals,
            turns: Arc::new(Mutex::new(Turns::default())),
            events: broadcast::channel(4096).0,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            faults,
            activity: watch::channel(Activity::new(0, 0, pause.is_paused(), None)).0,
            pause,
            last_error: Mutex::new(None),
        }
    }

    /// Commit the user's message, then start (or queue) the turn that answers it.
    pub async fn send(self: &Arc<Self>, session_id: &str, text: String) -> Result<TurnStarted, AgentError> {
        if self.shutdown.is_cancelled() {
            return Err(AgentError::ShuttingDown);
        }
        if self.pause.is_paused() {
            return Err(AgentError::Paused);
        }
        if text.trim().is_empty() {
            return Err(AgentError::InvalidInput("the message is empty".into()));
        }
        if text.chars().count() > MAX_MESSAGE_CHARS {
            return Err(AgentError::InvalidInput(format!("the message is longer than {MAX_MESSAGE_CHARS} characters")));
        }
        let session = self.store.session(session_id).await?;
        let turn_id = uuid::Uuid::new_v4().to_string();
        let user = self.store.start_turn(session_id, &turn_id, &text).await?;
        if session.title == DEFAULT_TITLE && session.message_count == 0 {
            let _ = self.store.rename_session(session_id, &title_from(&text)).await;
        }

        let turn = Arc::new(TurnHandle::new(
            turn_id.clone(),
            session_id.to_owned(),
            self.shutdown.child_token(),
            self.faults.turn_panic.swap(false, Ordering::SeqCst),
        ));
        let previous = {
            let mut turns = self.lock_turns();
            turns.by_id.insert(turn_id.clone(), turn.clone());
            turns.tail.insert(session_id.to_owned(), turn.clone())
        };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.refresh_activity();
        let agent = self.clone();
        self.tasks.spawn(async move { agent.run_turn(turn, previous).await });
        Ok(TurnStarted { turn_id, session_id: session_id.to_owned(), user_message_id: user.id })
    }

    /// Cancel a turn. `false` when it had already ended.
    pub async fn cancel(&self, turn_id: &str) -> Result<bool, AgentError> {
        let turn = self.lock_turns().by_id.get(turn_id).cloned();
        match turn {
            Some(turn) if !turn.is_finished() => {
                turn.cancel.cancel();
                turn.wait_finished().await;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => {
                self.store.turn(turn_id).await?;
                Ok(false)
            }
        }
    }

    /// `Ok` when the turn exists (running, or stored).
    pub async fn check_turn(&self, turn_id: &str) -> Result<(), AgentError> {
        if self.lock_turns().by_id.contains_key(turn_id) {
            return Ok(());
        }
        self.store.turn(turn_id).await?;
        Ok(())
    }

    /// Send a turn's events from the first one to `out`, ending after the terminal event.
    /// Returns early (Ok) when `out` is closed by the subscriber.
    pub async fn follow_turn(&self, turn_id: &str, out: mpsc::Sender<TurnEventEnvelope>) -> Result<(), AgentError> {
        let turn = self.lock_turns().by_id.get(turn_id).cloned();
        let Some(turn) = turn else {
            // Long finished: answer with its stored outcome.
            let record = self.store.turn(turn_id).await?;
            let event = match (record.status, record.error_kind) {
                (TurnStatus::Failed, kind) => TurnEvent::Error {
                    kind: kind.and_then(|k| from_wire_name(&k)).unwrap_or(ErrorKind::Internal),
                    message: record.error.unwrap_or_default(),
                },
                (status, _) => {
                    let message_id = self.final_assistant_message(&record.session_id, turn_id).await;
                    TurnEvent::Done { status, message_id }
                }
            };
            let _ =
                out.send(TurnEventEnvelope { turn_id: record.id, session_id: record.session_id, seq: 0, event }).await;
            return Ok(());
        };
        let mut progress = turn.progress.subscribe();
        let mut next = 0;
        loop {
            for envelope in turn.events_from(next) {
                next += 1;
                let terminal = envelope.event.is_terminal();
                if out.send(envelope).await.is_err() || terminal {
                    return Ok(());
                }
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { return Ok(()) },
                _ = out.closed() => return Ok(()),
            }
        }
    }

    /// Live events of all turns (optionally of one session).
    pub fn subscribe_events(&self) -> broadcast::Receiver<TurnEventEnvelope> {
        self.events.subscribe()
    }

    /// Cancel the session's turns and wait (a while) for them to settle.
    pub(super) async fn stop_session(&self, session_id: &str) {
        let running: Vec<_> =
            self.lock_turns().by_id.values().filter(|t| t.session_id == session_id).cloned().collect();
        for turn in &running {
            turn.cancel.cancel();
        }
        for turn in running {
            let _ = tokio::time::timeout(Duration::from_secs(5), turn.wait_finished()).await;
        }
    }

    // ---- activity ----

    /// What the agent is doing now; the receiver sees every change.
    pub fn activity(&self) -> watch::Receiver<Activity> {
        self.activity.subscribe()
    }

    /// Pause or resume: while paused no new turn starts.
    pub fn set_paused(&self, paused: bool) -> Activity {
        self.pause.set(paused);
        tracing::info!(paused, "the owner {} the agent", if paused { "paused" } else { "resumed" });
        self.refresh_activity();
        self.activity.borrow().clone()
    }

    /// Recount running turns and waiting approvals; subscribers hear of a change.
    pub(super) fn refresh_activity(&self) {
        let running = self.lock_turns().by_id.values().filter(|t| !t.is_finished()).count() as u32;
        let last_error = self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let now = Activity::new(running, self.approvals.pending_count() as u32, self.pause.is_paused(), last_error);
        self.activity.send_if_modified(|current| {
            let changed = *current != now;
            *current = now;
            changed
        });
    }

    /// Stop every turn (they are stored as interrupted) and wait for them, up to `grace`.
    pub(super) async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!("some turns did not stop within {grace:?}");
        }
    }

    // ---- the turn itself ----

    async fn run_turn(self: Arc<Self>, turn: Arc<TurnHandle>, previous: Option<Arc<TurnHandle>>) {
        if let Some(previous) = previous {
            tokio::select! {
                _ = previous.wait_finished() => {}
                _ = turn.cancel.cancelled() => {}
            }
        }
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "turn",
            gen_ai.operation.name = "invoke_agent",
            gen_ai.agent.name = "pryx",
            gen_ai.conversation.id = %turn.session_id,
            pryx.session.id = %turn.session_id,
            pryx.turn.id = %turn.id,
            pryx.turn.status = tracing::field::Empty,
            pryx.user_message = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        if self.config.telemetry.capture_content {
            if let Some(text) = self.user_message_of(&turn).await {
                span.record("pryx.user_message", text.as_str());
            }
        }
        let run = async {
            let end = if turn.cancel.is_cancelled() {
                TurnEnd::Stopped { status: self.stop_status(), message_id: None }
            } else {
                match AssertUnwindSafe(self.drive_turn(&turn)).catch_unwind().await {
                    Ok(end) => end,
                    Err(payload) => self.recover_turn_panic(&turn, payload).await,
                }
            };
            let (status, error) = match &end {
                TurnEnd::Completed { .. } => ("completed", None),
                TurnEnd::Stopped { status: TurnStatus::Cancelled, .. } => ("cancelled", None),
                TurnEnd::Stopped { .. } => ("interrupted", None),
                TurnEnd::Failed(e) => ("failed", Some(wire_name(&e.kind))),
            };
            tracing::Span::current().record("pryx.turn.status", status);
            if let Some(kind) = error {
                tracing::Span::current().record("error.type", kind.as_str());
            }
            self.finish_turn(&turn, end).await;
        };
        run.instrument(span).await;
    }

    async fn user_message_of(&self, turn: &TurnHandle) -> Option<String> {
        let messages = self.store.messages(&turn.session_id).await.ok()?;
        messages
            .into_iter()
            .find(|m| m.turn_id.as_deref() == Some(turn.id.as_str()) && m.role == Role::User)
            .map(|m| m.content)
    }

    async fn recover_turn_panic(&self, turn: &TurnHandle, payload: Box<dyn std::any::Any + Send>) -> TurnEnd {
        let (message, backtrace) = panics::describe(payload);
        tracing::error!(turn = %turn.id, "a turn panicked: {message}");
        if let Err(e) = self.store.record_crash("turn", Some(&turn.id), &message, &backtrace).await {
            tracing::error!("cannot record the crash: {e}");
        }
        let _ = self.store.fail_streaming(&turn.id, "Pryx hit an internal error in this turn").await;
        TurnEnd::Failed(internal(
            "Pryx hit an internal error in this turn and stopped it; it was recorded, and other chats are unaffected"
                .into(),
        ))
    }

    async fn finish_turn(&self, turn: &TurnHandle, end: TurnEnd) {
        let (status, event, error) = match end {
            TurnEnd::Completed { message_id } => (
                TurnStatus::Completed,
                TurnEvent::Done { status: TurnStatus::Completed, message_id: Some(message_id) },
                None,
            ),
            TurnEnd::Stopped { status, message_id } => (status, TurnEvent::Done { status, message_id }, None),
            TurnEnd::Failed(e) => {
                let kind = wire_name(&e.kind);
                (
                    TurnStatus::Failed,
                    TurnEvent::Error { kind: e.kind, message: e.message.clone() },
                    Some((kind, e.message)),
                )
            }
        };
        if let Err(e) =
            self.store.finish_turn(&turn.id, status, error.as_ref().map(|(k, m)| (k.as_str(), m.as_str()))).await
        {
            tracing::error!(turn = %turn.id, "cannot record the end of a turn: {e}");
        }
        if let TurnEvent::Error { message, .. } = &event {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.clone());
        }
        self.emit(turn, event);
        let bytes = turn.finish();
        {
            // Keep the log a while for late subscribers, within the caps (the store has the rest).
            let mut turns = self.lock_turns();
            if turns.tail.get(&turn.session_id).is_some_and(|t| t.id == turn.id) {
                turns.tail.remove(&turn.session_id);
            }
            let forget = turns.finished.keep(turn.id.clone(), bytes, Instant::now());
            turns.forget(forget);
        }
        self.refresh_activity();
    }

    /// Forget finished turns' logs older than [`KEEP_FINISHED_TURN`] (finishing a turn does
    /// it too; this is for when none finishes).
    pub fn forget_expired_turns(&self) {
        let mut turns = self.lock_turns();
        let forget = turns.finished.expire(Instant::now());
        turns.forget(forget);
    }

    // ---- helpers ----

    pub(super) fn emit(&self, turn: &TurnHandle, event: TurnEvent) {
        emit_to(&self.events, turn, event);
    }

    pub(super) fn stop_status(&self) -> TurnStatus {
        if self.shutdown.is_cancelled() {
            TurnStatus::Interrupted
        } else {
            TurnStatus::Cancelled
        }
    }

    async fn final_assistant_message(&self, session_id: &str, turn_id: &str) -> Option<i64> {
        let messages = self.store.messages(session_id).await.ok()?;
        messages.iter().rev().find(|m| m.turn_id.as_deref() == Some(turn_id) && m.role == Role::Assistant).map(|m| m.id)
    }

    pub(super) fn lock_turns(&self) -> std::sync::MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Append `event` to the turn's log (for replay) and pass it to live listeners.
pub(super) fn emit_to(events: &broadcast::Sender<TurnEventEnvelope>, turn: &TurnHandle, event: TurnEvent) {
    let mut log = turn.lock_log();
    // Every delta passes here: copy it for `events.subscribe` only when someone listens.
    if events.receiver_count() > 0 {
        let _ = events.send(turn.envelope(log.len(), event.clone()));
    }
    log.push(event);
    // Wake followers (the value, whether the turn ended, stays as it is).
    turn.progress.send_modify(|_| ());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_logs_keep_at_most_the_newest_turns() {
        let mut logs = FinishedLogs::default();
        let now = Instant::now();
        let mut forgotten = Vec::new();
        for i in 0..MAX_FINISHED_TURNS + 44 {
            forgotten.extend(logs.keep(format!("turn-{i}"), 100, now));
        }
        assert_eq!(logs.len(), MAX_FINISHED_TURNS);
        assert_eq!(forgotten, (0..44).map(|i| format!("turn-{i}")).collect::<Vec<_>>(), "oldest first");
        assert_eq!(logs.bytes(), MAX_FINISHED_TURNS * 100);
    }

    #[test]
    fn finished_logs_stay_within_their_bytes() {
        let mut logs = FinishedLogs::default();
        let now = Instant::now();
        let big = MAX_FINISHED_LOG_BYTES / 3;
        assert!(logs.keep("a".into(), big, now).is_empty());
        assert!(logs.keep("b".into(), big, now).is_empty());
        assert!(logs.keep("c".into(), big, now).is_empty());
        assert_eq!(logs.keep("d".into(), big, now), vec!["a".to_owned()]);
        assert!(logs.bytes() <= MAX_FINISHED_LOG_BYTES);
        // One log larger than the cap is still kept on its own, until the next one comes.
        assert_eq!(logs.keep("huge".into(), 2 * MAX_FINISHED_LOG_BYTES, now), vec!["b", "c", "d"]);
        assert_eq!(logs.len(), 1);
        assert_eq!(logs.keep("e".into(), 10, now), vec!["huge".to_owned()]);
    }

    #[test]
    fn finished_logs_expire() {
        let mut logs = FinishedLogs::default();
        let start = Instant::now();
        logs.keep("old".into(), 10, start);
        logs.keep("new".into(), 10, start + KEEP_FINISHED_TURN / 2);
        assert!(logs.expire(start + KEEP_FINISHED_TURN / 2).is_empty());
        assert_eq!(logs.expire(start + KEEP_FINISHED_TURN), vec!["old".to_owned()]);
        assert_eq!(logs.expire(start + KEEP_FINISHED_TURN * 2), vec!["new".to_owned()]);
        assert_eq!((logs.len(), logs.bytes()), (0, 0));
    }

    #[test]
    fn a_log_is_measured_by_the_text_it_holds() {
        let small = event_bytes(&TurnEvent::Delta { text: "hi".into() });
        let large = event_bytes(&TurnEvent::Delta { text: "x".repeat(10_000) });
        assert_eq!(large - small, 9_998);
    }
}
