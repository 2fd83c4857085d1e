//! The model's tool calls: each one through the approval policy (asking a person when the
//! rule says so), then run with a timeout and the turn's cancellation, and its result
//! stored, so the history never holds a call without its answer.

use std::sync::Arc;
use std::time::Duration;

use pryx_api::{wire_name, ApprovalStatus, Surface, ToolCall, TurnEvent};
use tracing::Instrument;

use super::step::internal;
use super::turns::{emit_to, TurnEnd, TurnEngine, TurnHandle};
use crate::approvals::{session_grant, NewApproval, Rule};
use crate::telemetry::SPAN_TARGET;
use crate::tools::{parse_arguments, ToolContext};

impl TurnEngine {
    /// Run the model's tool calls concurrently, each through the approval policy, and store
    /// their results. `Some` when the turn was stopped meanwhile.
    pub(super) async fn run_tools(&self, turn: &TurnHandle, calls: &[ToolCall]) -> Option<TurnEnd> {
        for call in calls {
            self.emit(turn, TurnEvent::ToolCall { call: call.clone() });
        }
        let channel = self.store.session(&turn.session_id).await.map(|s| s.channel).unwrap_or(Surface::Local);
        let results = futures::future::join_all(calls.iter().map(|call| self.run_one(turn, call, channel))).await;
        // Results are stored even when the turn was stopped, so every call in the history
        // has its answer.
        for (call, (output, is_error)) in calls.iter().zip(results) {
            if let Err(e) = self.store.add_tool_result(&turn.session_id, &turn.id, &call.id, &output).await {
                return Some(TurnEnd::Failed(internal(format!("cannot store a tool result: {e}"))));
            }
            self.emit(
                turn,
                TurnEvent::ToolResult { call_id: call.id.clone(), name: call.name.clone(), output, is_error },
            );
        }
        if turn.cancel.is_cancelled() {
            return Some(TurnEnd::Stopped { status: self.stop_status(), message_id: None });
        }
        None
    }

    /// One call: policy, approval if needed, then the tool. Returns the output for the model
    /// and whether it is an error.
    async fn run_one(&self, turn: &TurnHandle, call: &ToolCall, channel: Surface) -> (String, bool) {
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "execute_tool",
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = %call.name,
            gen_ai.tool.call.id = %call.id,
            gen_ai.tool.call.arguments = tracing::field::Empty,
            pryx.tool.outcome = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        if self.config.telemetry.capture_content {
            span.record("gen_ai.tool.call.arguments", call.arguments.as_str());
        }
        let (output, is_error, outcome) = self.run_one_inner(turn, call, channel).instrument(span.clone()).await;
        span.record("pryx.tool.outcome", outcome);
        if is_error {
            span.record("error.type", outcome);
        }
        (output, is_error)
    }

    /// The call itself; the third value names the outcome for telemetry
    /// (`ok`, `error`, `denied`, `unknown_tool`, `bad_arguments`, `timeout`).
    async fn run_one_inner(
        &self,
        turn: &TurnHandle,
        call: &ToolCall,
        channel: Surface,
    ) -> (String, bool, &'static str) {
        let Some(tool) = self.tools.current().get(&call.name).cloned() else {
            return (format!("error: unknown tool `{}`", call.name), true, "unknown_tool");
        };
        let arguments = match parse_arguments(&call.arguments) {
            Ok(a) => a,
            Err(e) => return (format!("error: {e}"), true, "bad_arguments"),
        };
        let allowed = self.approvals.allowed_for_session(&turn.session_id);
        let decision = self.rules.decide(tool.as_ref(), &arguments, &allowed);
        match decision {
            Rule::Deny => {
                return (
                    format!("error: not run: the user's policy does not allow `{}` here", call.name),
                    true,
                    "denied",
                );
            }
            Rule::Allow => {}
            Rule::Ask => {
                let request = NewApproval {
                    session_id: &turn.session_id,
                    turn_id: &turn.id,
                    call_id: &call.id,
                    tool: &call.name,
                    arguments: &call.arguments,
                    summary: tool.summary(&arguments),
                    risk: tool.risk(),
                    channel,
                    grant: session_grant(&call.name, tool.widens(&arguments)),
                };
                let wait = tracing::info_span!(
                    target: SPAN_TARGET,
                    "approval.wait",
                    gen_ai.tool.name = %call.name,
                    pryx.approval.outcome = tracing::field::Empty,
                );
                let asked = self.approvals.request(request, &turn.cancel, |approval| {
                    self.emit(turn, TurnEvent::ApprovalRequested { approval: approval.clone() });
                    self.refresh_activity();
                });
                let asked = asked.instrument(wait.clone()).await;
                self.refresh_activity();
                let outcome = match asked {
                    Ok(outcome) => outcome,
                    Err(e) => return (format!("error: not run: cannot ask for approval: {e}"), true, "error"),
                };
                wait.record("pryx.approval.outcome", wire_name(&outcome.approval.status).as_str());
                drop(wait);
                self.emit(turn, TurnEvent::ApprovalSettled { approval: outcome.approval.clone() });
                if !outcome.allowed() {
                    let why = match outcome.approval.status {
                        ApprovalStatus::TimedOut => "nobody approved it in time",
                        ApprovalStatus::Cancelled => "the turn was cancelled",
                        ApprovalStatus::Expired => "the agent stopped while it waited",
                        _ => "the user denied it",
                    };
                    let note = outcome.approval.note.map(|n| format!(" The user's note: {n}")).unwrap_or_default();
                    return (format!("error: not run: {why}.{note}"), true, "denied");
                }
            }
        }
        let timeout = Duration::from_secs(self.config.agent.tool_timeout_secs);
        let progress_turn = self.lock_turns().by_id.get(&turn.id).cloned();
        let call_id = call.id.clone();
        let events = self.events.clone();
        let ctx = ToolContext {
            cancel: turn.cancel.clone(),
            progress: progress_turn.map(|turn| -> crate::tools::ProgressSink {
                Arc::new(move |progress, total, message| {
                    let event = TurnEvent::ToolProgress { call_id: call_id.clone(), progress, total, message };
                    emit_to(&events, &turn, event);
                })
            }),
        };
        // MCP calls time out on silence themselves; a cancelled turn still stops them.
        let timeout = if tool.limits_its_own_time() { Duration::MAX } else { timeout };
        match tokio::time::timeout(timeout, tool.call(arguments, &ctx)).await {
            Ok(Ok(output)) => (output, false, "ok"),
            Ok(Err(e)) => (format!("error: {e}"), true, "error"),
            Err(_) => (format!("error: timed out after {}s", timeout.as_secs()), true, "timeout"),
        }
    }
}
