//! Approvals: a tool call waiting for a person's yes or no, and how it was settled.

use serde::{Deserialize, Serialize};

use crate::{Risk, Surface};

/// A person's answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    /// Run this call.
    AllowOnce,
    /// Run this call and every later call of the same tool in this session.
    AllowForSession,
    /// Do not run it; the model is told (with the note, if any).
    Deny,
}

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Allowed,
    Denied,
    /// Nobody answered in time: denied.
    TimedOut,
    /// The agent stopped while it waited: denied, never silently allowed.
    Expired,
    /// The turn was cancelled while it waited.
    Cancelled,
}

/// A tool call waiting for (or settled by) a human decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub session_id: String,
    pub turn_id: String,
    pub call_id: String,
    pub tool: String,
    /// The call's arguments as JSON text.
    pub arguments: String,
    /// One line a person can read to decide.
    pub summary: String,
    pub risk: Risk,
    /// Where the turn's conversation happens.
    pub channel: Surface,
    pub status: ApprovalStatus,
    pub decision: Option<ApprovalDecision>,
    pub note: Option<String>,
    pub answered_by: Option<String>,
    pub created_at: i64,
    /// When an unanswered request becomes a deny.
    pub expires_at: i64,
    pub settled_at: Option<i64>,
}
