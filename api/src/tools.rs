//! Tools on offer, how much harm a call could do, and the approval rule each has.

use serde::{Deserialize, Serialize};

/// How much harm a call could do; the default approval policy follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Only reads (allowed by default).
    Read,
    /// Creates or changes files (asks by default).
    Write,
    /// Deletes (asks by default).
    Destructive,
    /// Runs programs (asks by default).
    Execute,
}

impl Risk {
    /// The wire name (`read`, `write`, `destructive`, `execute`).
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Read => "read",
            Risk::Write => "write",
            Risk::Destructive => "destructive",
            Risk::Execute => "execute",
        }
    }
}

/// What the approval policy does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Allow,
    Ask,
    Deny,
}

impl Rule {
    /// The wire name (`allow`, `ask`, `deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Allow => "allow",
            Rule::Ask => "ask",
            Rule::Deny => "deny",
        }
    }
}

/// A tool and what the approval policy does with its calls (`tools.list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolPolicy {
    /// The function name the model calls.
    pub name: String,
    pub description: String,
    pub risk: Risk,
    /// `builtin`, or the MCP server that offers it.
    pub source: String,
    /// What a call gets now (before "allow for this chat" answers and the shell's prefix
    /// rules, which look at each call).
    pub rule: Rule,
    /// The rule the user set in `[policy.tools]`; `None` means the default for its risk
    /// (reads allowed, everything else asks; trusted MCP servers allowed).
    pub configured: Option<Rule>,
}
