//! What the agent is doing, in one small value every surface shows (title, tray, badge).

use serde::{Deserialize, Serialize};

/// What the agent is doing, in one word, for status displays (window title, tray icon).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Idle,
    /// At least one turn is running.
    Thinking,
    /// A tool call waits for a person's decision.
    WaitingForApproval,
    /// The last turn failed (until the next one starts).
    Error,
    /// The owner paused the agent: no new turns start (channel messages wait in the inbox).
    Paused,
}

/// The agent's activity, pushed by `activity.subscribe` whenever it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub state: AgentState,
    pub running_turns: u32,
    pub pending_approvals: u32,
    pub paused: bool,
    /// Why the last turn failed, until the next turn starts.
    pub last_error: Option<String>,
}

impl Activity {
    /// The one-word state these counts add up to: a waiting approval matters most, then
    /// running turns, then a failure, then the pause.
    pub fn new(running_turns: u32, pending_approvals: u32, paused: bool, last_error: Option<String>) -> Self {
        let state = if pending_approvals > 0 {
            AgentState::WaitingForApproval
        } else if running_turns > 0 {
            AgentState::Thinking
        } else if last_error.is_some() {
            AgentState::Error
        } else if paused {
            AgentState::Paused
        } else {
            AgentState::Idle
        };
        Activity { state, running_turns, pending_approvals, paused, last_error }
    }
}
