//! What the approval policy does with each tool: the rules in force, shown per tool for the
//! Control Center and `pryx mcp tools`, and changed by `tools.set_rule` (written to the
//! config file, then swapped in whole).

use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use pryx_api::ToolPolicy;
use serde_json::Value;

use super::AgentError;
use crate::approvals::{Policy, Rule};
use crate::config::edit::EditError;
use crate::mcp::McpManager;
use crate::tools::{LiveTools, Tool};

/// The policy in force over the tools on offer.
pub struct ToolRules {
    /// Swapped whole when the user changes a rule.
    policy: RwLock<Policy>,
    tools: Arc<LiveTools>,
    mcp: Arc<McpManager>,
}

impl ToolRules {
    pub(super) fn new(policy: Policy, tools: Arc<LiveTools>, mcp: Arc<McpManager>) -> ToolRules {
        ToolRules { policy: RwLock::new(policy), tools, mcp }
    }

    /// The rule for one call of `tool` with these arguments, in a session where the tools
    /// in `allowed_for_session` were allowed for the rest of it.
    pub(super) fn decide(
        &self,
        tool: &dyn Tool,
        arguments: &Value,
        allowed_for_session: &std::collections::HashSet<String>,
    ) -> Rule {
        let widens = tool.widens(arguments);
        self.policy().decide(tool.name(), tool.risk(), tool.trusted_by_user(), arguments, widens, allowed_for_session)
    }

    /// What the policy does with a call of `tool` in a session nobody loosened (for showing
    /// rules in lists; a real call is decided with its arguments).
    pub fn rule_for(&self, tool: &str) -> Option<Rule> {
        let tool = self.tools.current().get(tool).cloned()?;
        Some(self.default_rule(tool.as_ref()))
    }

    fn default_rule(&self, tool: &dyn Tool) -> Rule {
        self.decide(tool, &serde_json::json!({}), &Default::default())
    }

    fn policy(&self) -> RwLockReadGuard<'_, Policy> {
        self.policy.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every tool offered now with what the policy does with it.
    pub fn tool_policies(&self) -> Vec<ToolPolicy> {
        let registry = self.tools.current();
        registry.all().map(|tool| self.tool_policy(tool.as_ref())).collect()
    }

    fn tool_policy(&self, tool: &dyn Tool) -> ToolPolicy {
        // MCP tool names are made unique (`SERVER__TOOL`, de-duplicated): ask the manager
        // which server a name belongs to rather than taking it apart.
        let source = if self.tools.is_builtin(tool.name()) {
            "builtin".to_owned()
        } else {
            self.mcp.server_of(tool.name()).unwrap_or_default()
        };
        ToolPolicy {
            name: tool.name().to_owned(),
            description: tool.description().to_owned(),
            risk: tool.risk(),
            source,
            rule: self.default_rule(tool),
            configured: self.policy().config().tools.get(tool.name()).copied(),
        }
    }

    /// Set (or, with `None`, clear) a tool's rule: written to `config_file`, then in force.
    pub fn set_tool_rule(
        &self,
        config_file: Result<&Path, EditError>,
        name: &str,
        rule: Option<Rule>,
    ) -> Result<ToolPolicy, AgentError> {
        let registry = self.tools.current();
        let tool = registry.get(name).ok_or_else(|| AgentError::NotFound(format!("tool `{name}`")))?;
        let config_file = config_file?;
        {
            // Held across the file and the swap, so two changes at once land in both alike.
            let mut policy = self.policy.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            crate::config::edit::set_tool_rule(config_file, name, rule)?;
            let mut config = policy.config().clone();
            match rule {
                Some(rule) => config.tools.insert(name.to_owned(), rule),
                None => config.tools.remove(name),
            };
            *policy = Policy::new(config);
        }
        Ok(self.tool_policy(tool.as_ref()))
    }
}
