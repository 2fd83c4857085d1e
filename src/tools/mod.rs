//! Tools the model can call: the [`Tool`] trait and the [`ToolRegistry`] the agent asks.
//!
//! A tool declares a name (letters, digits, `_` and `-` only, as every provider requires),
//! a description, a JSON schema for its arguments, how risky it is, and a one-line human
//! summary of a call (shown when a person must approve it). The registry turns them into the
//! `tools` array of a request and runs calls by name. Whether a call may run at all is not
//! decided here but by the approval policy (`approvals.rs`), before the call.
//!
//! Built-ins: `time_now`, the file tools in [`fs`] and `shell_execute` in [`shell`].

pub mod fs;
pub mod shell;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::sandbox::workspace::Workspace;

/// Why a tool call failed; the message goes back to the model so it can recover.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool `{0}`")]
    Unknown(String),
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    #[error("{0}")]
    Failed(String),
    /// The turn was cancelled while the call ran.
    #[error("cancelled")]
    Cancelled,
}

/// How much harm a call could do: a type of the API contract, the one definition.
pub use pryx_api::Risk;

/// Receives progress reports of a running call: progress, total (if known), message.
pub type ProgressSink = Arc<dyn Fn(f64, Option<f64>, Option<String>) + Send + Sync>;

/// What a running call may need from its turn.
#[derive(Clone, Default)]
pub struct ToolContext {
    /// Fires when the turn is cancelled or the agent stops; long tools must stop then.
    pub cancel: CancellationToken,
    /// Where to report progress, if anyone listens.
    pub progress: Option<ProgressSink>,
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
    /// How risky its calls are.
    fn risk(&self) -> Risk;
    /// One line a person can read to decide whether to allow a call.
    fn summary(&self, arguments: &Value) -> String;
    /// What this call asks for beyond the tool's usual reach, in a word people read in the
    /// approval (`network`). Such a call asks a person whatever the rules loosen, unless
    /// the session allowed this tool with that same word.
    fn widens(&self, _arguments: &Value) -> Option<&'static str> {
        None
    }
    /// Whether the user's configuration trusts this tool to run without asking (MCP tools
    /// of a server marked `trusted`). Never set from anything a tool says about itself.
    fn trusted_by_user(&self) -> bool {
        false
    }
    /// Whether the tool enforces its own time limit (an MCP call: silence-based, so a long
    /// operation that keeps reporting progress may run past `agent.tool_timeout_secs`).
    fn limits_its_own_time(&self) -> bool {
        false
    }
    /// Run the call. The output is text the model will read.
    async fn call(&self, arguments: Value, ctx: &ToolContext) -> Result<String, ToolError>;
}

/// `text` cut to at most `max_chars` characters, with "…" when something was cut (for
/// lines shown to people or logged, not for output the model needs whole).
pub fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Parse a call's arguments into the tool's argument struct.
pub fn parse_args<T: DeserializeOwned>(arguments: Value) -> Result<T, ToolError> {
    serde_json::from_value(arguments).map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

/// The JSON schema of an argument struct, in the plain shape providers accept.
pub fn schema<T: schemars::JsonSchema>() -> Value {
    let mut value = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_else(|_| json!({"type": "object"}));
    if let Some(object) = value.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
    }
    value
}

/// The tools available to turns, by name.
#[derive(Default, Clone)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    /// The `tools` array of a request, built once per change (schemas are not free).
    specs: Arc<Vec<Value>>,
}

impl ToolRegistry {
    /// The registry with Pryx's built-in tools, file and shell tools acting in `workspace`.
    pub fn with_builtins(workspace: Arc<Workspace>, shell: shell::ShellConfig) -> Self {
        let mut registry = ToolRegistry::default();
        let mut builtins: Vec<Arc<dyn Tool>> = vec![Arc::new(TimeNow)];
        builtins.extend(fs::tools(workspace.clone()));
        builtins.push(Arc::new(shell::ShellExecute::new(workspace, shell)));
        for tool in builtins {
            registry.register(tool).expect("built-in tool names are valid and unique");
        }
        registry
    }

    /// A tool by name.
    /// Every tool, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.values()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// Add a tool. Refuses names providers would reject and duplicates.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), String> {
        self.insert(tool)?;
        self.rebuild_specs();
        Ok(())
    }

    /// Add several tools, building the request's `tools` array once. Returns why each
    /// refused tool was refused.
    pub fn register_many(&mut self, tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Vec<String> {
        let refused = tools.into_iter().filter_map(|tool| self.insert(tool).err()).collect();
        self.rebuild_specs();
        refused
    }

    fn insert(&mut self, tool: Arc<dyn Tool>) -> Result<(), String> {
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

    fn rebuild_specs(&mut self) {
        self.specs = Arc::new(
            self.tools
                .values()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name(), "description": t.description(), "parameters": t.parameters()
                    }})
                })
                .collect(),
        );
    }

    /// The `tools` array for a Chat Completions request.
    pub fn specs(&self) -> Arc<Vec<Value>> {
        self.specs.clone()
    }

    /// Run one call by name with already parsed arguments (see [`parse_arguments`]).
    pub async fn call(&self, name: &str, arguments: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        let tool = self.tools.get(name).ok_or_else(|| ToolError::Unknown(name.to_owned()))?;
        tool.call(arguments, ctx).await
    }
}

/// The tools offered right now: the built-ins plus whatever MCP servers add, swapped as a
/// whole when servers come and go, so a turn step always sees one consistent set.
pub struct LiveTools {
    builtins: ToolRegistry,
    current: std::sync::RwLock<Arc<ToolRegistry>>,
}

impl LiveTools {
    pub fn new(builtins: ToolRegistry) -> Self {
        let current = std::sync::RwLock::new(Arc::new(builtins.clone()));
        LiveTools { builtins, current }
    }

    /// Whether `name` is one of Pryx's own tools (not an MCP server's).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtins.get(name).is_some()
    }

    /// The set to use for the next model request.
    pub fn current(&self) -> Arc<ToolRegistry> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Offer the built-ins plus `extra`. Extra tools whose names clash with a built-in or
    /// with each other are left out (and logged); callers give them unique names.
    pub fn replace_extra(&self, extra: Vec<Arc<dyn Tool>>) {
        let mut registry = self.builtins.clone();
        for refused in registry.register_many(extra) {
            tracing::warn!("{refused}; not offered");
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(registry);
    }
}

/// Parse the JSON text a model produced as a call's arguments (empty means `{}`).
pub fn parse_arguments(text: &str) -> Result<Value, ToolError> {
    let arguments = if text.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(text).map_err(|e| ToolError::InvalidArguments(format!("not JSON: {e}")))?
    };
    if !arguments.is_object() {
        return Err(ToolError::InvalidArguments("arguments must be a JSON object".into()));
    }
    Ok(arguments)
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
    fn risk(&self) -> Risk {
        Risk::Read
    }
    fn summary(&self, _arguments: &Value) -> String {
        "read the clock".into()
    }
    async fn call(&self, _arguments: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        let now = time::OffsetDateTime::now_utc();
        let rfc3339 =
            now.format(&time::format_description::well_known::Rfc3339).map_err(|e| ToolError::Failed(e.to_string()))?;
        Ok(json!({"utc": rfc3339, "unix": now.unix_timestamp()}).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, ToolRegistry) {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Arc::new(Workspace::open(&dir.path().join("ws"), &[]).unwrap());
        (dir, ToolRegistry::with_builtins(workspace, shell::ShellConfig::default()))
    }

    async fn call(registry: &ToolRegistry, name: &str, arguments: &str) -> Result<String, ToolError> {
        registry.call(name, parse_arguments(arguments)?, &ToolContext::default()).await
    }

    #[tokio::test]
    async fn time_now_answers_with_the_current_time() {
        let (_dir, registry) = registry();
        let out: Value = serde_json::from_str(&call(&registry, "time_now", "{}").await.unwrap()).unwrap();
        let unix = out["unix"].as_i64().unwrap();
        assert!((unix - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 5);
        assert!(out["utc"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn bad_calls_are_explained_to_the_model() {
        let (_dir, registry) = registry();
        assert!(matches!(call(&registry, "rm_rf", "{}").await, Err(ToolError::Unknown(_))));
        assert!(matches!(call(&registry, "time_now", "{not json").await, Err(ToolError::InvalidArguments(_))));
        assert!(matches!(call(&registry, "time_now", "[1]").await, Err(ToolError::InvalidArguments(_))));
        assert!(matches!(call(&registry, "fs_read", r#"{"path": 3}"#).await, Err(ToolError::InvalidArguments(_))));
        assert!(matches!(
            call(&registry, "fs_read", r#"{"path": "a", "x": 1}"#).await,
            Err(ToolError::InvalidArguments(_))
        ));
        assert!(call(&registry, "time_now", "").await.is_ok());
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
    fn specs_have_the_function_shape_and_valid_names() {
        let (_dir, registry) = registry();
        let specs = registry.specs();
        let names: Vec<&str> = specs.iter().map(|s| s["function"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["fs_delete", "fs_list", "fs_read", "fs_search", "fs_write", "shell_execute", "time_now"]);
        for spec in specs.iter() {
            assert_eq!(spec["type"], "function");
            assert!(is_valid_tool_name(spec["function"]["name"].as_str().unwrap()));
            assert_eq!(spec["function"]["parameters"]["type"], "object", "{spec}");
            assert!(spec["function"]["parameters"].get("$schema").is_none());
        }
        let read = &specs[2]["function"]["parameters"];
        assert_eq!(read["required"], json!(["path"]));
    }
}
