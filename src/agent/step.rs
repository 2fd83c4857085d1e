//! One step of a turn: ask the model once, stream its answer to subscribers and to disk,
//! and hand back what it said (text, tool calls, usage). The loop over steps is
//! [`TurnEngine::drive_turn`]: ask, run the tools it called, ask again, up to the step limit.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pryx_api::{wire_name, ErrorKind, MessageStatus, ToolCall, TurnEvent, TurnStatus};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::turns::{StepEnd, TurnEnd, TurnEngine, TurnHandle};
use crate::llm::{ChatRequest, LlmError, Provider};
use crate::store::Store;
use crate::telemetry::SPAN_TARGET;

/// How often a growing answer is written to disk while it streams.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

impl TurnEngine {
    pub(super) async fn drive_turn(&self, turn: &TurnHandle) -> TurnEnd {
        let provider = match self.llm.provider().await {
            Ok(p) => p,
            Err(e) => {
                // No model to ask: the answer is a failed message saying why, so the history
                // shows it (and the UI offers Retry) like any failure during an answer.
                let stored = match self.store.begin_assistant(&turn.session_id, &turn.id).await {
                    Ok(id) => {
                        self.store.finish_assistant(id, "", &[], MessageStatus::Failed, Some(&e.message), None).await
                    }
                    Err(error) => Err(error),
                };
                if let Err(error) = stored {
                    tracing::error!(turn = %turn.id, "cannot store the failed answer: {error}");
                }
                return TurnEnd::Failed(e);
            }
        };
        for _step in 0..self.config.agent.max_steps {
            let request = match self.build_request(turn).await {
                Ok(r) => r,
                Err(e) => return TurnEnd::Failed(internal(format!("cannot read the history: {e}"))),
            };
            let (message_id, completion) = match self.stream_step(turn, &provider, &request).await {
                StepEnd::Answered { message_id, completion } => (message_id, completion),
                StepEnd::Ended(end) => return end,
            };
            if let Some(usage) = completion.usage {
                self.emit(turn, TurnEvent::Usage { usage });
            }
            if completion.tool_calls.is_empty() {
                return TurnEnd::Completed { message_id };
            }
            if let Some(end) = self.run_tools(turn, &completion.tool_calls).await {
                return end;
            }
        }
        TurnEnd::Failed(LlmError {
            kind: ErrorKind::StepLimit,
            message: format!("the model was still calling tools after {} steps; stopped", self.config.agent.max_steps),
        })
    }

    /// One model request, streamed to subscribers and to disk. The assistant message row is
    /// created first; text is saved by a [`Draft`] writer off the streaming path, so a slow
    /// disk never delays a delta. Retries once when the stream breaks before any text.
    async fn stream_step(&self, turn: &TurnHandle, provider: &Provider, request: &ChatRequest) -> StepEnd {
        let message_id = match self.store.begin_assistant(&turn.session_id, &turn.id).await {
            Ok(id) => id,
            Err(e) => return StepEnd::Ended(TurnEnd::Failed(internal(format!("cannot store the answer: {e}")))),
        };
        let mut retried = false;
        loop {
            let draft = Draft::start(self.store.clone(), message_id);
            let (delta_tx, mut delta_rx) = mpsc::unbounded_channel::<String>();
            let llm_span = tracing::info_span!(
                target: SPAN_TARGET,
                "chat",
                gen_ai.operation.name = "chat",
                gen_ai.provider.name = %provider.info.source,
                gen_ai.request.model = provider.info.model.as_deref().unwrap_or(""),
                server.address = provider.info.base_url.as_deref().unwrap_or(""),
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                gen_ai.response.finish_reasons = tracing::field::Empty,
                pryx.time_to_first_token_ms = tracing::field::Empty,
                error.type = tracing::field::Empty,
            );
            let asked_at = std::time::Instant::now();
            let first_token = llm_span.clone();
            let mut seen_token = false;
            let call = provider
                .stream_chat(request, move |t| {
                    if !seen_token {
                        seen_token = true;
                        first_token.record("pryx.time_to_first_token_ms", asked_at.elapsed().as_millis() as u64);
                    }
                    let _ = delta_tx.send(t.to_owned());
                })
                .instrument(llm_span.clone());
            tokio::pin!(call);
            let result = loop {
                tokio::select! {
                    biased;
                    _ = turn.cancel.cancelled() => break None,
                    Some(delta) = delta_rx.recv() => self.append_delta(turn, &draft, delta),
                    result = &mut call => break Some(result),
                }
            };
            if matches!(result, Some(Ok(_))) {
                while let Ok(delta) = delta_rx.try_recv() {
                    self.append_delta(turn, &draft, delta);
                }
            }
            let text = draft.finish();
            match &result {
                Some(Ok(c)) => {
                    llm_span.record("gen_ai.response.finish_reasons", c.finish_reason.as_str());
                    if let Some(usage) = c.usage {
                        llm_span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
                        llm_span.record("gen_ai.usage.output_tokens", usage.completion_tokens);
                    }
                }
                Some(Err(e)) => {
                    llm_span.record("error.type", wire_name(&e.kind).as_str());
                }
                None => {
                    llm_span.record("error.type", "cancelled");
                }
            }
            drop(llm_span);
            match result {
                None => {
                    let status = self.stop_status();
                    let stored = if status == TurnStatus::Cancelled {
                        MessageStatus::Cancelled
                    } else {
                        MessageStatus::Interrupted
                    };
                    self.save_final(message_id, &text, &[], stored, None, None).await;
                    return StepEnd::Ended(TurnEnd::Stopped { status, message_id: Some(message_id) });
                }
                Some(Err(e)) if e.kind == ErrorKind::StreamBroken && text.is_empty() && !retried => {
                    tracing::warn!("stream broke before any output; retrying once: {e}");
                    retried = true;
                }
                Some(Err(e)) => {
                    self.save_final(message_id, &text, &[], MessageStatus::Failed, Some(&e.message), None).await;
                    return StepEnd::Ended(TurnEnd::Failed(e));
                }
                Some(Ok(completion)) => {
                    let (text, calls) = (&completion.text, &completion.tool_calls);
                    self.save_final(message_id, text, calls, MessageStatus::Complete, None, completion.usage).await;
                    return StepEnd::Answered { message_id, completion };
                }
            }
        }
    }

    fn append_delta(&self, turn: &TurnHandle, draft: &Draft, delta: String) {
        draft.push(&delta);
        self.emit(turn, TurnEvent::Delta { text: delta });
        if turn.panic_at_first_delta.swap(false, Ordering::SeqCst) {
            panic!("injected turn panic (debug.fault)");
        }
    }

    async fn save_final(
        &self,
        id: i64,
        text: &str,
        calls: &[ToolCall],
        status: MessageStatus,
        error: Option<&str>,
        usage: Option<pryx_api::Usage>,
    ) {
        if let Err(e) = self.store.finish_assistant(id, text, calls, status, error, usage).await {
            tracing::error!("cannot store the final answer: {e}");
        }
    }
}

/// The text of an answer as it streams, saved to its message row every [`FLUSH_EVERY`] by
/// a writer task of its own. The streaming loop only appends and signals; it never waits
/// on the disk.
struct Draft {
    text: Arc<Mutex<String>>,
    dirty: mpsc::Sender<()>,
    done: CancellationToken,
}

impl Draft {
    fn start(store: Store, message_id: i64) -> Draft {
        let text = Arc::new(Mutex::new(String::new()));
        let (dirty, mut signals) = mpsc::channel::<()>(1);
        let done = CancellationToken::new();
        let (shared, stop) = (text.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    signal = signals.recv() => if signal.is_none() { return },
                }
                let snapshot = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if let Err(e) = store.save_partial(message_id, &snapshot).await {
                    tracing::warn!("cannot save a partial answer: {e}");
                }
                // Coalesce: whatever arrives meanwhile is saved in one write.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(FLUSH_EVERY) => {}
                }
            }
        });
        Draft { text, dirty, done }
    }

    fn push(&self, delta: &str) {
        self.text.lock().unwrap_or_else(|p| p.into_inner()).push_str(delta);
        let _ = self.dirty.try_send(());
    }

    /// Stop the writer and return the whole text. The caller writes the final state; a save
    /// still in flight cannot overwrite it (see [`Store::save_partial`]).
    fn finish(&self) -> String {
        self.done.cancel();
        self.text.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        self.done.cancel();
    }
}

pub(super) fn internal(message: String) -> LlmError {
    LlmError { kind: ErrorKind::Internal, message }
}
