//! Tools the model can call: the [`Tool`] trait and the [`ToolRegistry`] the agent asks.
//!
//! A tool declares a name (letters, digits, `_` and `-` only, as every provider requires),
//! a description and a JSON schema for its arguments; the registry turns them into the
//! `tools` array of a request and runs calls by name. Later work plugs the fs/shell tools
//! and MCP servers in here; for now the one built-in is the harmless `time_now`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

/// Why a tool call failed; the message goes back to the model so it can recover.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool `{0}`")]
    Unknown(String),
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    #[error("{0}")]
    Failed(String),
}

/// Something the model can do.
#[async_trait]
pub trait Tool: Send + Sync {
    /// The function name the model sees: `[a-zA-Z0-9_-]{1,64}`.
    fn name(&self) -> &str;
    /// One or two sentences the model reads to decide when to call it.
    fn description(&self) -> &str;
    /// JSON schema of the arguments object.
    fn parameters(&self) -> Value;
    /// Run the call. The output is text the model will read.
    async fn call(&self, arguments: Value) -> Result<String, ToolError>;
}

/// The tools available to turns, by name.
#[derive(Default, Clone)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl ToolRegistry {
    /// The registry with Pryx's built-in tools.
    pub fn with_builtins() -> Self {
        let mut registry = ToolRegistry::default();
        registry.register(Arc::new(TimeNow)).expect("built-in tool names are valid");
        registry
    }

    /// Add a tool. Refuses names providers would reject and duplicates.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), String> {
        let name = tool.name().to_owned();
        if !is_valid_tool_name(&name) {
            return Err(format!("tool name `{name}` must match [a-zA-Z0-9_-]{{1,64}}"));
        }
        if self.tools.contains_key(&name) {
            return Err(format!("tool `{name}` is already registered"));
        }
        self.tools.insert(name, tool);
        Ok(())
    }

    /// The `tools` array for a Chat Completions request.
    pub fn specs(&self) -> Vec<Value> {
        self.tools
            .values()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name(), "description": t.description(), "parameters": t.parameters()
                }})
            })
            .collect()
    }

    /// Run one call by name. `arguments` is the JSON text the model produced.
    pub async fn call(&self, name: &str, arguments: &str) -> Result<String, ToolError> {
        let tool = self.tools.get(name).ok_or_else(|| ToolError::Unknown(name.to_owned()))?;
        let arguments = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments).map_err(|e| ToolError::InvalidArguments(format!("not JSON: {e}")))?
        };
        if !arguments.is_object() {
            return Err(ToolError::InvalidArguments("arguments must be a JSON object".into()));
        }
        tool.call(arguments).await
    }
}

/// Whether every provider accepts `name` as a function name.
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The current date and time, so the model need not guess.
struct TimeNow;

#[async_trait]
impl Tool for TimeNow {
    fn name(&self) -> &str {
        "time_now"
    }
    fn description(&self) -> &str {
        "Returns the current date and time in UTC (RFC 3339) and as Unix seconds."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    }
    async fn call(&self, _arguments: Value) -> Result<String, ToolError> {
        let now = time::OffsetDateTime::now_utc();
        let rfc3339 =
            now.format(&time::format_description::well_known::Rfc3339).map_err(|e| ToolError::Failed(e.to_string()))?;
        Ok(json!({"utc": rfc3339, "unix": now.unix_timestamp()}).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn time_now_answers_with_the_current_time() {
        let registry = ToolRegistry::with_builtins();
        let out: Value = serde_json::from_str(&registry.call("time_now", "{}").await.unwrap()).unwrap();
        let unix = out["unix"].as_i64().unwrap();
        assert!((unix - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 5);
        assert!(out["utc"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn bad_calls_are_explained_to_the_model() {
        let registry = ToolRegistry::with_builtins();
        assert!(matches!(registry.call("rm_rf", "{}").await, Err(ToolError::Unknown(_))));
        assert!(matches!(registry.call("time_now", "{not json").await, Err(ToolError::InvalidArguments(_))));
        assert!(matches!(registry.call("time_now", "[1]").await, Err(ToolError::InvalidArguments(_))));
        assert!(registry.call("time_now", "").await.is_ok());
    }

    #[test]
    fn names_follow_provider_rules() {
        assert!(is_valid_tool_name("fs_read"));
        assert!(is_valid_tool_name("server__tool-1"));
        assert!(!is_valid_tool_name("fs.read"));
        assert!(!is_valid_tool_name(""));
        assert!(!is_valid_tool_name(&"a".repeat(65)));
    }

    #[test]
    fn specs_have_the_function_shape() {
        let specs = ToolRegistry::with_builtins().specs();
        assert_eq!(specs[0]["type"], "function");
        assert_eq!(specs[0]["function"]["name"], "time_now");
    }
}
