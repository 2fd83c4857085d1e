//! MCP servers: how the user configures one, and how each is doing.

use serde::{Deserialize, Serialize};

use crate::Rule;

/// One MCP server as the user configures it: `[mcp.servers.NAME]` in the config file,
/// `mcp.add` in the API. Exactly one of `command` (a local stdio server) or `url` (a
/// streamable-HTTP server) is set. Values in `env` and `headers` may be `secret:NAME`
/// references to the keychain instead of the secret itself.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpServerConfig {
    /// Program to start (stdio transport), found on `PATH` unless it is a path.
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Extra environment for the program (it otherwise gets only `PATH`, `HOME`, locale and
    /// temp-dir variables, never Pryx's own secrets).
    pub env: std::collections::BTreeMap<String, String>,
    /// Working directory of the program (default: Pryx's data directory).
    pub cwd: Option<String>,
    /// Endpoint of a streamable-HTTP server, e.g. `https://example.com/mcp`.
    pub url: Option<String>,
    /// HTTP headers sent with every request (e.g. `Authorization = "secret:github/token"`).
    pub headers: std::collections::BTreeMap<String, String>,
    /// OAuth (HTTP servers that answer 401, signed in with `pryx mcp login`): a client id
    /// registered with the authorization server beforehand. Unset: Pryx registers itself.
    pub oauth_client_id: Option<String>,
    /// The secret of that client, as a `secret:NAME` reference.
    pub oauth_client_secret: Option<String>,
    /// Scopes to ask for. Unset: what the server's challenge or metadata says.
    pub oauth_scopes: Vec<String>,
    /// An `https` URL where a Client ID Metadata Document for Pryx is published, used as the
    /// client id with authorization servers that support them.
    pub oauth_client_metadata_url: Option<String>,
    /// Offer Pryx's workspace to the server as its MCP root. Servers that honour roots (such
    /// as server-filesystem) then work in the workspace instead of the directories in their
    /// arguments, which is why this is off unless asked for.
    pub workspace_root: bool,
    /// `false` keeps the entry but does not start the server.
    pub enabled: bool,
    /// Every tool of this server runs without asking (deny rules in `[policy]` still win).
    pub trusted: bool,
    /// Tools (their names on the server, e.g. `read_file`) that run without asking.
    pub trusted_tools: Vec<String>,
    /// A call without an answer or progress for this long is cancelled, seconds.
    pub call_timeout_secs: u64,
    /// How long start-up (spawn or connect, then the MCP handshake) may take, seconds.
    pub startup_timeout_secs: u64,
}

/// `env` and `headers` may hold secrets written in plain text: `Debug` shows their names only.
impl std::fmt::Debug for McpServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServerConfig")
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("oauth_client_id", &self.oauth_client_id)
            .field("enabled", &self.enabled)
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

impl Default for McpServerConfig {
    fn default() -> Self {
        McpServerConfig {
            command: None,
            args: Vec::new(),
            env: Default::default(),
            cwd: None,
            url: None,
            headers: Default::default(),
            oauth_client_id: None,
            oauth_client_secret: None,
            oauth_scopes: Vec::new(),
            oauth_client_metadata_url: None,
            workspace_root: false,
            enabled: true,
            trusted: false,
            trusted_tools: Vec::new(),
            call_timeout_secs: 120,
            startup_timeout_secs: 30,
        }
    }
}

/// Where an MCP server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpServerState {
    /// Being spawned or connected, or handshaking.
    Starting,
    /// Connected; its tools are offered to the model.
    Ready,
    /// Not connected; `reason` says why. Pryx retries with back-off.
    Failed,
    /// The server wants an OAuth sign-in (`mcp.login`); nothing is retried until then.
    NeedsAuth,
    /// `enabled = false` in the config.
    Disabled,
}

/// The live status of one configured MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerStatus {
    pub name: String,
    pub state: McpServerState,
    /// Why it failed, in words a person can act on.
    pub reason: Option<String>,
    /// `stdio` or `http`.
    pub transport: String,
    /// Process id of a running stdio server.
    pub pid: Option<u32>,
    /// The server's own name and version, from the handshake.
    pub server_info: Option<String>,
    pub protocol_version: Option<String>,
    /// How many tools it offers now.
    pub tools: usize,
    /// Times it was started again after it failed or exited.
    pub restarts: u64,
}

/// What the server says about a tool's behaviour (hints, trusted only as far as the
/// policy allows: `read_only` loosens "ask" to "allow", nothing else loosens anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct McpToolHints {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

/// One tool an MCP server offers, as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolInfo {
    pub server: String,
    /// The function name the model calls (`SERVER__TOOL`, sanitised and de-duplicated).
    pub name: String,
    /// The tool's name on its server.
    pub tool: String,
    pub title: Option<String>,
    pub description: String,
    pub input_schema: serde_json::Value,
    pub hints: McpToolHints,
    /// What the approval policy does with a call.
    pub rule: Rule,
}

/// What `mcp.list` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpOverview {
    pub servers: Vec<McpServerStatus>,
    /// Set when the config file was edited into something that does not load; the servers
    /// keep running as they were until it is fixed.
    pub config_error: Option<String>,
    /// The file `mcp.add`/`mcp.remove` write to.
    pub config_path: Option<String>,
}
