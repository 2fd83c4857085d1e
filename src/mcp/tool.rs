//! An MCP server's tool as a Pryx [`Tool`]: what the model sees, how risky the policy
//! considers it, and the call itself (with progress, time-out and cancellation).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pryx_api::McpToolHints;
use rmcp::model::{CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientRequest, ServerResult};
use rmcp::service::{PeerRequestOptions, RoleClient, ServiceError};
use rmcp::Peer;
use serde_json::Value;
use tokio::sync::mpsc;

use super::connection::ServerSignals;
use super::content;
use crate::tools::{Risk, Tool, ToolContext, ToolError};

/// One tool of one connected server.
pub struct McpTool {
    pub server: String,
    /// The function name the model calls.
    pub exposed: String,
    /// The name on the server.
    pub tool: String,
    pub title: Option<String>,
    pub description: String,
    pub input_schema: Value,
    pub hints: McpToolHints,
    pub trusted: bool,
    pub(super) peer: Peer<RoleClient>,
    pub(super) signals: ServerSignals,
    pub(super) call_timeout: Duration,
    pub(super) max_output_bytes: usize,
}

impl McpTool {
    /// The same tool under another exposed name (after de-duplication).
    pub(super) fn renamed(&self, exposed: String) -> McpTool {
        McpTool {
            server: self.server.clone(),
            exposed,
            tool: self.tool.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            input_schema: self.input_schema.clone(),
            hints: self.hints.clone(),
            trusted: self.trusted,
            peer: self.peer.clone(),
            signals: self.signals.clone(),
            call_timeout: self.call_timeout,
            max_output_bytes: self.max_output_bytes,
        }
    }

    /// The description the model reads: the server's words, and which server it is.
    pub(super) fn model_description(server: &str, tool: &rmcp::model::Tool) -> String {
        let text = tool.description.as_deref().unwrap_or("").trim();
        let text = if text.is_empty() { tool.title.as_deref().unwrap_or(&tool.name) } else { text };
        format!("{text} (tool `{}` of the MCP server `{server}`)", tool.name)
    }

    pub(super) fn hints_of(tool: &rmcp::model::Tool) -> McpToolHints {
        let annotations = tool.annotations.as_ref();
        McpToolHints {
            read_only: annotations.and_then(|a| a.read_only_hint),
            destructive: annotations.and_then(|a| a.destructive_hint),
            idempotent: annotations.and_then(|a| a.idempotent_hint),
            open_world: annotations.and_then(|a| a.open_world_hint),
        }
    }

    /// A schema providers accept: an object schema, even when the server sent less.
    pub(super) fn schema_of(tool: &rmcp::model::Tool) -> Value {
        let mut schema = Value::Object((*tool.input_schema).clone());
        if let Some(object) = schema.as_object_mut() {
            object.entry("type").or_insert_with(|| "object".into());
            if object.get("type").and_then(Value::as_str) == Some("object") {
                object.entry("properties").or_insert_with(|| serde_json::json!({}));
            }
        }
        schema
    }
}

#[async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.exposed
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> Value {
        self.input_schema.clone()
    }
    /// Per the MCP spec, a tool is assumed destructive unless it says otherwise; only
    /// `readOnlyHint: true` makes it a read (which the default policy allows).
    fn risk(&self) -> Risk {
        match (self.hints.read_only, self.hints.destructive) {
            (Some(true), _) => Risk::Read,
            (_, Some(false)) => Risk::Write,
            _ => Risk::Destructive,
        }
    }
    fn summary(&self, arguments: &Value) -> String {
        let arguments = content::cap(arguments.to_string(), 300);
        format!("run `{}` on the MCP server `{}` with {arguments}", self.tool, self.server)
    }
    fn trusted_by_user(&self) -> bool {
        self.trusted
    }
    fn limits_its_own_time(&self) -> bool {
        true
    }

    async fn call(&self, arguments: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        use tracing::Instrument;
        // Nested in the agent's `execute_tool` span: this one is the MCP request itself.
        let span = tracing::info_span!(
            target: crate::telemetry::SPAN_TARGET,
            "mcp.tools_call",
            mcp.method.name = "tools/call",
            gen_ai.tool.name = %self.tool,
            pryx.mcp.server = %self.server,
            pryx.tool.outcome = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let result = self.call_server(arguments, ctx).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ToolError::Cancelled) => "cancelled",
            Err(_) => "error",
        };
        span.record("pryx.tool.outcome", outcome);
        if result.is_err() {
            span.record("error.type", outcome);
        }
        result
    }
}

impl McpTool {
    async fn call_server(&self, arguments: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        let Value::Object(arguments) = arguments else {
            return Err(ToolError::InvalidArguments("arguments must be a JSON object".into()));
        };
        let params = CallToolRequestParams::new(self.tool.clone()).with_arguments(arguments);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        // A call that reports progress is alive: only silence counts towards the time-out.
        let options = PeerRequestOptions::with_timeout(self.call_timeout).reset_timeout_on_progress();
        let handle = self.peer.send_request_with_option(request, options).await.map_err(|e| self.failure(e))?;
        let token = handle.progress_token.clone();
        // However this call ends early (turn cancelled, the agent's own time-out dropping
        // this future), the server hears `notifications/cancelled` and can stop the work.
        let mut cancel_guard = CancelOnDrop { peer: self.peer.clone(), id: Some(handle.id.clone()) };
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
        self.signals.watch_progress(token.clone(), progress_tx);
        let _unwatch = Unwatch { signals: &self.signals, token: &token };
        let response = handle.await_response();
        tokio::pin!(response);
        let result = loop {
            tokio::select! {
                result = &mut response => break result,
                Some(progress) = progress_rx.recv() => {
                    if let Some(sink) = &ctx.progress {
                        sink(progress.progress, progress.total, progress.message);
                    }
                }
                _ = ctx.cancel.cancelled() => return Err(ToolError::Cancelled),
            }
        };
        // Answered, or timed out (the SDK has told the server then).
        cancel_guard.id = None;
        match result.map_err(|e| self.failure(e))? {
            ServerResult::CallToolResult(result) => {
                let json = serde_json::to_value(&result).map_err(|e| ToolError::Failed(e.to_string()))?;
                let (text, is_error) = content::render(&json, self.max_output_bytes);
                if is_error {
                    Err(ToolError::Failed(format!("the tool reported an error: {text}")))
                } else {
                    Ok(text)
                }
            }
            // A result without `content` decodes as one of these; it means "done, nothing to say".
            ServerResult::EmptyResult(_) | ServerResult::CustomResult(_) => Ok("(the tool returned no content)".into()),
            _ => Err(ToolError::Failed(format!("the MCP server `{}` sent an unexpected kind of answer", self.server))),
        }
    }
}

impl McpTool {
    fn failure(&self, error: ServiceError) -> ToolError {
        let server = &self.server;
        if error.is_authorization_required() || error.auth_challenge().is_some() {
            self.signals.report_auth_lost(error.auth_challenge().map(str::to_owned));
            return ToolError::Failed(format!(
                "the MCP server `{server}` refused the call until the user signs in (again): \
                 they can run `pryx mcp login {server}`"
            ));
        }
        ToolError::Failed(match error {
            ServiceError::McpError(e) => format!("the MCP server `{server}` answered with an error: {}", e.message),
            ServiceError::Timeout { timeout } => format!(
                "the MCP server `{server}` did not answer or report progress within {}s; the call was cancelled",
                timeout.as_secs()
            ),
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                format!("the MCP server `{server}` is not connected (it exited or was stopped); try again shortly")
            }
            other => format!("the MCP server `{server}` failed: {other}"),
        })
    }
}

/// Stops progress delivery for a call however the call ends.
struct Unwatch<'a> {
    signals: &'a ServerSignals,
    token: &'a rmcp::model::ProgressToken,
}

impl Drop for Unwatch<'_> {
    fn drop(&mut self) {
        self.signals.stop_watching(self.token);
    }
}

/// Sends `notifications/cancelled` for a request abandoned before its answer.
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    id: Option<rmcp::model::RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let peer = self.peer.clone();
            let notice = CancelledNotificationParam::new(Some(id), Some("the call was cancelled by Pryx".into()));
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = peer.notify_cancelled(notice).await;
                });
            }
        }
    }
}

/// Keep the type in one place for the manager.
pub(super) type SharedTool = Arc<McpTool>;
