//! What the model is sent: the system prompt, then the conversation as whole units
//! (a message, or a tool call with all its results), oldest dropped first until it fits the
//! context window; and the session titles derived from a first message.

use std::collections::{HashMap, HashSet};

use pryx_api::{Message, Role, ToolCall, MAX_TITLE_CHARS};

use super::turns::{TurnEngine, TurnHandle};
use super::AgentError;
use crate::llm::{ChatRequest, WireMessage};
use crate::store::StoreError;

/// Tokens kept free for the answer when the configured output limit is unknown.
const DEFAULT_ANSWER_RESERVE: usize = 2048;
pub(super) const DEFAULT_TITLE: &str = "New chat";

impl TurnEngine {
    /// The request for the next step of `turn`: system prompt, then history trimmed to fit.
    pub(super) async fn build_request(&self, turn: &TurnHandle) -> Result<ChatRequest, StoreError> {
        let messages = self.store.messages(&turn.session_id).await?;
        let queued: HashSet<String> = self
            .lock_turns()
            .by_id
            .values()
            .filter(|t| t.session_id == turn.session_id && t.id != turn.id && !t.is_finished())
            .map(|t| t.id.clone())
            .collect();
        let units = conversation_units(&messages, &turn.id, &queued);
        let tools = self.tools.current().specs();
        let tools_tokens: usize = tools.iter().map(|t| t.to_string().len() / 4).sum();
        let reserve = self.config.llm.max_output_tokens.map_or(DEFAULT_ANSWER_RESERVE, |m| m as usize);
        let budget = (self.config.llm.context_window_tokens as usize).saturating_sub(reserve + tools_tokens);
        let system = WireMessage::system(&self.config.agent.system_prompt);
        Ok(ChatRequest { messages: fit_context(system, units, budget), tools })
    }
}

pub(super) fn validate_title(title: &str) -> Result<String, AgentError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(AgentError::InvalidInput("the title is empty".into()));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(AgentError::InvalidInput(format!("the title is longer than {MAX_TITLE_CHARS} characters")));
    }
    if title.chars().any(char::is_control) {
        return Err(AgentError::InvalidInput("the title contains control characters".into()));
    }
    Ok(title.to_owned())
}

/// A title from the first message: its first line, at most 60 characters.
pub(super) fn title_from(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or(DEFAULT_TITLE).trim();
    let mut title: String = line.chars().filter(|c| !c.is_control()).take(60).collect();
    if line.chars().count() > 60 {
        title.push('…');
    }
    if title.is_empty() {
        DEFAULT_TITLE.into()
    } else {
        title
    }
}

/// A piece of history that is kept or dropped whole: one message, or an assistant message
/// with tool calls together with all their results.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub messages: Vec<WireMessage>,
    /// Part of the turn being answered: never dropped.
    pub current: bool,
}

/// Turn stored messages into units in conversation order: messages grouped by turn, turns in
/// the order their user messages were sent. Turns still queued behind `current_turn` are
/// left out; tool calls without a stored result (a turn stopped mid-call) are left out too,
/// because providers reject a call that has no answer.
pub fn conversation_units(messages: &[Message], current_turn: &str, queued: &HashSet<String>) -> Vec<Unit> {
    let answered: HashSet<&str> = messages.iter().filter_map(|m| m.tool_call_id.as_deref()).collect();
    let mut order: Vec<Option<&str>> = Vec::new();
    let mut by_turn: HashMap<Option<&str>, Vec<&Message>> = HashMap::new();
    for m in messages {
        let key = m.turn_id.as_deref();
        if key.is_some_and(|t| queued.contains(t)) {
            continue;
        }
        let group = by_turn.entry(key).or_default();
        if group.is_empty() {
            order.push(key);
        }
        group.push(m);
    }
    let mut units: Vec<Unit> = Vec::new();
    for key in order {
        let current = key == Some(current_turn);
        let mut open_calls: HashSet<String> = HashSet::new();
        for m in by_turn.remove(&key).unwrap_or_default() {
            match m.role {
                Role::User => {
                    open_calls.clear();
                    units.push(Unit { messages: vec![WireMessage::user(&m.content)], current });
                }
                Role::Assistant => {
                    let calls: Vec<ToolCall> =
                        m.tool_calls.iter().filter(|c| answered.contains(c.id.as_str())).cloned().collect();
                    open_calls = calls.iter().map(|c| c.id.clone()).collect();
                    if calls.is_empty() && m.content.is_empty() {
                        continue;
                    }
                    units.push(Unit { messages: vec![WireMessage::assistant(&m.content, &calls)], current });
                }
                Role::Tool => {
                    let Some(call_id) = m.tool_call_id.as_deref() else {
                        continue;
                    };
                    if open_calls.remove(call_id) {
                        if let Some(unit) = units.last_mut() {
                            unit.messages.push(WireMessage::tool(call_id, &m.content));
                        }
                    }
                }
            }
        }
    }
    units
}

/// Drop the oldest units until the estimate fits `budget` tokens; units of the current turn
/// always stay, and a unit is never split, so a tool call keeps its results.
pub fn fit_context(system: WireMessage, units: Vec<Unit>, budget: usize) -> Vec<WireMessage> {
    let cost = |u: &Unit| u.messages.iter().map(WireMessage::estimated_tokens).sum::<usize>();
    let mut total: usize = system.estimated_tokens() + units.iter().map(cost).sum::<usize>();
    let mut keep = vec![true; units.len()];
    for (i, unit) in units.iter().enumerate() {
        if total <= budget {
            break;
        }
        if !unit.current {
            keep[i] = false;
            total -= cost(unit);
        }
    }
    // A history must not start with tool results or an assistant reply whose question was
    // dropped; skipping leading assistant units keeps the request well formed.
    let mut out = vec![system];
    let mut started = false;
    for (unit, kept) in units.into_iter().zip(keep) {
        if !kept {
            continue;
        }
        if !started && unit.messages.first().is_some_and(|m| m.role != "user") {
            continue;
        }
        started = true;
        out.extend(unit.messages);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pryx_api::MessageStatus;
    use pryx_api::Usage;

    fn message(id: i64, turn: &str, role: Role, content: &str) -> Message {
        Message {
            id,
            session_id: "s".into(),
            turn_id: Some(turn.into()),
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            status: MessageStatus::Complete,
            error: None,
            usage: None::<Usage>,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn call(id: &str) -> ToolCall {
        ToolCall { id: id.into(), name: "time_now".into(), arguments: "{}".into() }
    }

    fn roles(messages: &[WireMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.role).collect()
    }

    #[test]
    fn units_follow_turn_order_and_skip_queued_turns() {
        // Two turns sent back to back: ids interleave, the conversation must not.
        let messages = vec![
            message(1, "t1", Role::User, "one"),
            message(2, "t2", Role::User, "two"),
            message(3, "t1", Role::Assistant, "answer one"),
            message(4, "t2", Role::Assistant, "answer two"),
            message(5, "t3", Role::User, "three (queued)"),
        ];
        let queued = HashSet::from(["t3".to_owned()]);
        let units = conversation_units(&messages, "t2", &queued);
        let texts: Vec<&str> = units.iter().map(|u| u.messages[0].content.as_str()).collect();
        assert_eq!(texts, ["one", "answer one", "two", "answer two"]);
        assert_eq!(units.iter().map(|u| u.current).collect::<Vec<_>>(), [false, false, true, true]);
    }

    #[test]
    fn a_tool_call_travels_with_its_results_and_unanswered_calls_are_dropped() {
        let mut ask = message(2, "t1", Role::Assistant, "");
        ask.tool_calls = vec![call("a"), call("b"), call("lost")];
        let mut result_a = message(3, "t1", Role::Tool, "A");
        result_a.tool_call_id = Some("a".into());
        let mut result_b = message(4, "t1", Role::Tool, "B");
        result_b.tool_call_id = Some("b".into());
        let mut empty_failed = message(5, "t1", Role::Assistant, "");
        empty_failed.status = MessageStatus::Failed;
        let messages = vec![message(1, "t1", Role::User, "q"), ask, result_a, result_b, empty_failed];

        let units = conversation_units(&messages, "t1", &HashSet::new());
        assert_eq!(units.len(), 2, "{units:?}");
        assert_eq!(roles(&units[1].messages), ["assistant", "tool", "tool"]);
        let ids: Vec<&str> = units[1].messages[0].tool_calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b"], "the call without a result is not sent");
    }

    #[test]
    fn trimming_drops_oldest_whole_units_and_keeps_the_current_turn() {
        let old_text = "x".repeat(4000); // about 1000 tokens each
        let mut units = Vec::new();
        for i in 0..5 {
            units.push(Unit { messages: vec![WireMessage::user(&format!("{i} {old_text}"))], current: false });
            units.push(Unit {
                messages: vec![
                    WireMessage::assistant("", &[call(&format!("c{i}"))]),
                    WireMessage::tool(&format!("c{i}"), &old_text),
                ],
                current: false,
            });
        }
        units.push(Unit { messages: vec![WireMessage::user("now")], current: true });

        let fitted = fit_context(WireMessage::system("sys"), units.clone(), 4500);
        assert_eq!(fitted[0].role, "system");
        assert_eq!(fitted.last().unwrap().content, "now");
        assert_eq!(fitted[1].role, "user", "history starts at a user message");
        let total: usize = fitted.iter().map(WireMessage::estimated_tokens).sum();
        assert!(total <= 4500, "{total}");
        // Every tool result still follows its call.
        for (i, m) in fitted.iter().enumerate() {
            if m.role == "tool" {
                let prev = &fitted[i - 1];
                assert!(prev.role == "tool" || !prev.tool_calls.is_empty(), "orphaned tool result at {i}");
            }
        }
        // The newest history survives, the oldest goes.
        assert!(fitted.iter().any(|m| m.content.starts_with("4 ")));
        assert!(!fitted.iter().any(|m| m.content.starts_with("0 ")));

        // Enough room: nothing is dropped.
        assert_eq!(fit_context(WireMessage::system("sys"), units.clone(), 1_000_000).len(), 1 + 15 + 1);
        // No room at all: the current turn is still sent.
        let tiny = fit_context(WireMessage::system("sys"), units, 10);
        assert_eq!(roles(&tiny), ["system", "user"]);
    }

    #[test]
    fn titles_are_validated_and_derived_from_the_first_line() {
        assert_eq!(validate_title("  Trip  ").unwrap(), "Trip");
        assert!(validate_title("").is_err());
        assert!(validate_title("a\u{7}b").is_err());
        assert!(validate_title(&"x".repeat(MAX_TITLE_CHARS + 1)).is_err());
        assert_eq!(title_from("  Plan a trip\nwith details"), "Plan a trip");
        assert_eq!(title_from(&"y".repeat(80)).chars().count(), 61);
    }
}
