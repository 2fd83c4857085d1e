//! Configuration: one typed struct with defaults, read from TOML, overridden by the
//! environment and then by command-line flags.
//!
//! This file is the one place where every setting is documented. A broken config file is an
//! error that names the file, the line and the key; Pryx never falls back to defaults
//! silently. Unknown keys are errors too, so a typo cannot go unnoticed.
//!
//! Precedence, lowest first: built-in defaults, the config file, environment variables
//! (`PRYX_LLM_BASE_URL`, `PRYX_LLM_MODEL`, `PRYX_LLM_API_KEY`, `OPENAI_API_KEY`), flags.

pub mod edit;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::approvals::PolicyConfig;
pub use crate::auth::CloudConfig;
pub use crate::secrets::SecretsConfig;
pub use crate::telemetry::TelemetryConfig;

/// Everything Pryx can be configured with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub llm: LlmConfig,
    pub agent: AgentConfig,
    pub tools: ToolsConfig,
    pub policy: PolicyConfig,
    pub secrets: SecretsConfig,
    pub telemetry: TelemetryConfig,
    pub mcp: McpConfig,
    pub telegram: TelegramConfig,
    pub whatsapp: WhatsAppConfig,
    pub desktop: DesktopConfig,
    pub cloud: CloudConfig,
}

/// `[desktop]`: the window and tray of `pryx` without `--serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DesktopConfig {
    /// Closing the window hides it and Pryx keeps running in the tray (Quit from the tray
    /// or the File menu ends it). `false`: closing the window quits.
    pub close_to_tray: bool,
    /// Ask with a native dialog when a tool call needs approval (besides the page's own).
    pub approval_dialogs: bool,
    /// On Linux, register Pryx as the handler of `pryx://` links at start when no package
    /// did (writes `~/.local/share/applications/pryx.desktop` and runs `xdg-mime`).
    pub register_links: bool,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        Self { close_to_tray: true, approval_dialogs: true, register_links: true }
    }
}

/// `[whatsapp]`: talk to Pryx from WhatsApp through Meta's Cloud API. Off until
/// `access_token` is set. Meta posts to `https://YOUR-HOST/webhooks/whatsapp`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// The access token of the Meta app (system user token), as `secret:NAME`; a plain
    /// value is moved into the keychain at start (as `whatsapp/token`).
    pub access_token: Option<String>,
    /// The app secret, which signs every webhook delivery (`secret:NAME`).
    pub app_secret: Option<String>,
    /// The verify token you type into Meta's webhook settings (`secret:NAME`).
    pub verify_token: Option<String>,
    /// The id of the business phone number that sends the replies.
    pub phone_number_id: Option<String>,
    /// The Graph API base URL, version included (tests point it at a local stand-in).
    pub api_base: String,
    /// Phone numbers (international format, digits) that may talk without pairing.
    pub allowed_numbers: Vec<String>,
    /// The public host Meta posts to, if Pryx sits behind a reverse proxy under another
    /// name than its loopback address (added to the accepted `Host` names).
    pub public_url: Option<String>,
}

impl Default for WhatsAppConfig {
    fn default() -> Self {
        WhatsAppConfig {
            access_token: None,
            app_secret: None,
            verify_token: None,
            phone_number_id: None,
            api_base: "https://graph.facebook.com/v21.0".into(),
            allowed_numbers: Vec::new(),
            public_url: None,
        }
    }
}

impl std::fmt::Debug for WhatsAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppConfig")
            .field("access_token", &self.access_token.as_ref().map(|_| REDACTED))
            .field("phone_number_id", &self.phone_number_id)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

/// `[telegram]`: talk to Pryx from Telegram. Off until `bot_token` is set.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot token from @BotFather, as `secret:NAME`; a plain value found here is moved
    /// into the keychain at start (as `telegram/bot`).
    pub bot_token: Option<String>,
    /// `polling`: Pryx asks Telegram for messages (works without a public address).
    /// `webhook`: Telegram posts them to `public_url` + `/webhooks/telegram`.
    pub mode: TelegramMode,
    /// The public `https` base URL that reaches this Pryx (webhook mode); Pryx registers the
    /// webhook there with `setWebhook` at start.
    pub public_url: Option<String>,
    /// The secret Telegram sends back in `X-Telegram-Bot-Api-Secret-Token` (webhook mode),
    /// as `secret:NAME`. Requests without it are refused.
    pub webhook_secret: Option<String>,
    /// The Bot API base URL (tests point it at a local stand-in).
    pub api_base: String,
    /// Chat ids that may talk to Pryx without pairing (the owner's own chat, say).
    pub allowed_chats: Vec<i64>,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            bot_token: None,
            mode: TelegramMode::Polling,
            public_url: None,
            webhook_secret: None,
            api_base: "https://api.telegram.org".into(),
            allowed_chats: Vec::new(),
        }
    }
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("bot_token", &self.bot_token.as_ref().map(|_| REDACTED))
            .field("mode", &self.mode)
            .field("public_url", &self.public_url)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

/// How Telegram messages reach Pryx: a type of the API contract, the one definition.
pub use pryx_api::TelegramMode;

/// `[mcp]`: MCP servers whose tools the agent offers the model. This section is reloaded
/// while Pryx runs: edit the file (or use `pryx mcp add|remove`, `mcp.add`…) and the
/// servers are started, stopped or restarted to match, with no restart of Pryx.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// `[mcp.servers.NAME]`, one per server (fields: see [`McpServerConfig`]). NAME is
    /// 1-32 letters, digits, `_` or `-`; the model sees its tools as `NAME__TOOL`.
    pub servers: std::collections::BTreeMap<String, McpServerConfig>,
    /// Largest tool result handed to the model, bytes (the rest is cut with a note).
    pub max_output_bytes: usize,
    /// Watch the config file and apply `[mcp]` changes at once.
    pub watch_config: bool,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig { servers: Default::default(), max_output_bytes: 64 * 1024, watch_config: true }
    }
}

pub use pryx_api::McpServerConfig;

/// The one loopback port that serves the UI, `/rpc`, webhooks and `/healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Keep it on loopback unless a reverse proxy fronts Pryx.
    pub bind: IpAddr,
    /// Port to listen on; 0 picks a free one (printed in the `pryx listening on` line).
    pub port: u16,
    /// Extra host names accepted in the `Host` header (loopback names are always accepted).
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins allowed to call the API (`scheme://host:port`).
    pub allowed_origins: Vec<String>,
    /// Largest HTTP body or WebSocket message accepted, in bytes.
    pub max_request_bytes: u32,
    /// Most connections open at once, HTTP and WebSocket alike. At the cap, new connections
    /// wait in the kernel's queue until one closes (a warning says so once).
    pub max_connections: u32,
    /// Seconds a connection may take to send a request's head, counted from when the server
    /// starts waiting for it: a new connection that sends nothing, and a kept-alive one that
    /// sits idle between requests, are closed after this long.
    pub header_timeout_secs: u64,
    /// Seconds a request may take to send its body once the head arrived; then `408`.
    pub body_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_request_bytes: 1024 * 1024,
            max_connections: 1024,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
        }
    }
}

/// The OpenAI-compatible Chat Completions provider.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Base URL ending before `/chat/completions`, e.g. `https://api.openai.com/v1`.
    /// Unset: `https://api.openai.com/v1` when an API key is set, otherwise a local Ollama
    /// or LM Studio if one answers.
    pub base_url: Option<String>,
    /// Model name. Unset: `gpt-4o-mini` for OpenAI, the first model a local server lists.
    pub model: Option<String>,
    /// API key: `secret:NAME` (from the keychain, see `pryx secret set`). A plain value found
    /// here is moved into the keychain at start and the file rewritten. The environment
    /// (`PRYX_LLM_API_KEY`, `OPENAI_API_KEY`) also works.
    pub api_key: Option<String>,
    /// The model's context window in tokens; older turns are dropped to fit.
    pub context_window_tokens: u32,
    /// Most tokens the model may write in one request (unset: the provider's default).
    pub max_output_tokens: Option<u32>,
    /// Whole-request timeout, seconds (a stream that stalls this long is broken).
    pub request_timeout_secs: u64,
    /// Connection timeout, seconds.
    pub connect_timeout_secs: u64,
    /// Retries for 429, 5xx and refused connections (with `Retry-After` honoured).
    pub max_retries: u32,
    /// Look for Ollama (127.0.0.1:11434) and LM Studio (127.0.0.1:1234) when nothing is set.
    pub autodetect_local: bool,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            model: None,
            api_key: None,
            context_window_tokens: 32_768,
            max_output_tokens: None,
            request_timeout_secs: 300,
            connect_timeout_secs: 10,
            max_retries: 3,
            autodetect_local: true,
        }
    }
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| REDACTED))
            .field("context_window_tokens", &self.context_window_tokens)
            .finish_non_exhaustive()
    }
}

/// How the agent runs turns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The system prompt sent first in every request.
    pub system_prompt: String,
    /// Most model requests in one turn (each tool round is one more).
    pub max_steps: u32,
    /// Longest a single built-in tool call may run, seconds. MCP calls instead time out on
    /// silence (`call_timeout_secs` of their server), so long operations that report
    /// progress can finish.
    pub tool_timeout_secs: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            system_prompt: "You are Pryx, a helpful personal assistant running on the user's own \
                            computer. Be concise. Use tools when they help."
                .into(),
            max_steps: 10,
            tool_timeout_secs: 60,
        }
    }
}

/// Where the file and shell tools act, and how shell commands run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// The workspace directory. Unset: `workspace` under the data dir.
    pub workspace: Option<PathBuf>,
    /// More directories the tools may use, addressed by absolute path.
    pub extra_roots: Vec<PathBuf>,
    /// Default timeout of a shell command, seconds (the model may ask for up to the max).
    pub shell_timeout_secs: u64,
    pub shell_max_timeout_secs: u64,
    /// Bytes of a command's stdout and of its stderr kept (head and tail).
    pub shell_output_bytes: usize,
    /// Environment variables a command may see; everything else (API keys!) is cleared.
    pub shell_env: Vec<String>,
    /// Give every shell command network. Off: a command has none (on Linux, its own network
    /// namespace) unless it asks for it and a person allows that ("with network").
    pub shell_network: bool,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            workspace: None,
            extra_roots: Vec::new(),
            shell_timeout_secs: 60,
            shell_max_timeout_secs: 600,
            shell_output_bytes: 64 * 1024,
            shell_env: crate::tools::shell::DEFAULT_ENV_ALLOWLIST.iter().map(|s| s.to_string()).collect(),
            shell_network: false,
        }
    }
}

/// What replaces a secret in anything shown to a person.
pub const REDACTED: &str = "<redacted>";

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config file {path}, line {line}, column {column}{}: {message}", key.as_ref().map(|k| format!(", key `{k}`")).unwrap_or_default())]
    Invalid { path: PathBuf, line: usize, column: usize, key: Option<String>, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
}

impl Config {
    /// Read `path`. A missing file is fine only when `required` is false (the default
    /// location); a file named on the command line must exist.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Config::default()),
            Err(error) => Err(ConfigError::Read { path: path.to_owned(), error }),
        }
    }

    /// Parse TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |span: Option<std::ops::Range<usize>>, key: Option<String>, message: String| {
            let (line, column) = line_and_column(text, span.map_or(0, |s| s.start));
            ConfigError::Invalid { path: path.to_owned(), line, column, key, message }
        };
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| invalid(e.span(), None, e.message().to_owned()))?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            invalid(inner.span(), (key != ".").then_some(key), inner.message().to_owned())
        })?;
        config.validate().map_err(|(key, message)| invalid(None, Some(key), message).with_key_line(text))?;
        Ok(config)
    }

    /// Apply the documented environment variables. `lookup` is `std::env::var` in the binary
    /// and a map in tests.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(url) = non_empty("PRYX_LLM_BASE_URL") {
            check_url(&url).map_err(|message| ConfigError::Env { name: "PRYX_LLM_BASE_URL", message })?;
            self.llm.base_url = Some(url);
        }
        if let Some(model) = non_empty("PRYX_LLM_MODEL") {
            self.llm.model = Some(model);
        }
        if let Some(key) = non_empty("PRYX_LLM_API_KEY").or_else(|| non_empty("OPENAI_API_KEY")) {
            self.llm.api_key = Some(key);
        }
        Ok(())
    }

    /// The config as TOML with every secret replaced by [`REDACTED`] (for `pryx config show`).
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        // A `secret:NAME` reference is not a secret and is worth seeing; a plain value is.
        let redact = |value: &mut String| {
            if !value.starts_with(crate::secrets::REFERENCE_PREFIX) {
                *value = REDACTED.into();
            }
        };
        shown.llm.api_key.iter_mut().for_each(redact);
        shown.telemetry.otlp.headers.values_mut().for_each(redact);
        shown.telegram.bot_token.iter_mut().for_each(redact);
        shown.telegram.webhook_secret.iter_mut().for_each(redact);
        for value in
            [&mut shown.whatsapp.access_token, &mut shown.whatsapp.app_secret, &mut shown.whatsapp.verify_token]
        {
            value.iter_mut().for_each(redact);
        }
        for server in shown.mcp.servers.values_mut() {
            server.headers.values_mut().for_each(redact);
            server.env.values_mut().for_each(redact);
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Checks serde cannot express. Returns the offending key and why.
    fn validate(&self) -> Result<(), (String, String)> {
        if let Some(url) = &self.llm.base_url {
            check_url(url).map_err(|m| ("llm.base_url".to_owned(), m))?;
        }
        if let Some(Err(e)) = self.llm.api_key.as_deref().and_then(crate::secrets::reference) {
            return Err(("llm.api_key".into(), e.to_string()));
        }
        if self.llm.context_window_tokens < 1024 {
            return Err(("llm.context_window_tokens".into(), "must be at least 1024".into()));
        }
        if self.agent.max_steps == 0 {
            return Err(("agent.max_steps".into(), "must be at least 1".into()));
        }
        if self.tools.shell_timeout_secs == 0 || self.tools.shell_max_timeout_secs < self.tools.shell_timeout_secs {
            return Err((
                "tools.shell_max_timeout_secs".into(),
                "must be at least tools.shell_timeout_secs (> 0)".into(),
            ));
        }
        for (key, value) in [
            ("server.max_connections", u64::from(self.server.max_connections)),
            ("server.header_timeout_secs", self.server.header_timeout_secs),
            ("server.body_timeout_secs", self.server.body_timeout_secs),
        ] {
            if value == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if self.policy.approval_timeout_secs == 0 {
            return Err(("policy.approval_timeout_secs".into(), "must be at least 1".into()));
        }
        for (name, server) in &self.mcp.servers {
            if !is_valid_server_name(name) {
                return Err((format!("mcp.servers.{name}"), "use 1-32 letters, digits, `_` or `-` in names".into()));
            }
            check_mcp_server(server).map_err(|m| (format!("mcp.servers.{name}"), m))?;
        }
        check_url(&self.telegram.api_base).map_err(|m| ("telegram.api_base".to_owned(), m))?;
        for (key, value) in [("bot_token", &self.telegram.bot_token), ("webhook_secret", &self.telegram.webhook_secret)]
        {
            if let Some(Err(e)) = value.as_deref().and_then(crate::secrets::reference) {
                return Err((format!("telegram.{key}"), e.to_string()));
            }
        }
        if self.telegram.mode == TelegramMode::Webhook && self.telegram.bot_token.is_some() {
            let url = self.telegram.public_url.as_deref().ok_or_else(|| {
                ("telegram.public_url".to_owned(), "webhook mode needs the public https URL of this Pryx".to_owned())
            })?;
            check_url(url).map_err(|m| ("telegram.public_url".to_owned(), m))?;
            if self.telegram.webhook_secret.is_none() {
                return Err((
                    "telegram.webhook_secret".into(),
                    "webhook mode needs a secret (e.g. `pryx secret set telegram/webhook`, then \
                     webhook_secret = \"secret:telegram/webhook\")"
                        .into(),
                ));
            }
        }
        check_url(&self.whatsapp.api_base).map_err(|m| ("whatsapp.api_base".to_owned(), m))?;
        let whatsapp = &self.whatsapp;
        for (key, value) in [
            ("access_token", &whatsapp.access_token),
            ("app_secret", &whatsapp.app_secret),
            ("verify_token", &whatsapp.verify_token),
        ] {
            if let Some(Err(e)) = value.as_deref().and_then(crate::secrets::reference) {
                return Err((format!("whatsapp.{key}"), e.to_string()));
            }
            if whatsapp.access_token.is_some() && value.is_none() {
                return Err((
                    format!("whatsapp.{key}"),
                    "WhatsApp needs access_token, app_secret and verify_token".into(),
                ));
            }
        }
        if whatsapp.access_token.is_some() && whatsapp.phone_number_id.as_deref().is_none_or(str::is_empty) {
            return Err((
                "whatsapp.phone_number_id".into(),
                "WhatsApp needs the id of the business phone number".into(),
            ));
        }
        if let Some(url) = &whatsapp.public_url {
            check_url(url).map_err(|m| ("whatsapp.public_url".to_owned(), m))?;
        }
        if self.mcp.max_output_bytes < 1024 {
            return Err(("mcp.max_output_bytes".into(), "must be at least 1024".into()));
        }
        if self.server.max_request_bytes < 1024 {
            return Err(("server.max_request_bytes".into(), "must be at least 1024".into()));
        }
        Ok(())
    }
}

impl ConfigError {
    /// For errors found after parsing: point at the line where the key is written.
    fn with_key_line(self, text: &str) -> ConfigError {
        match self {
            ConfigError::Invalid { path, key: Some(key), message, .. } => {
                let leaf = key.rsplit('.').next().unwrap_or(&key);
                let line =
                    text.lines().position(|l| l.trim_start().starts_with(leaf) && l.contains('=')).map_or(1, |i| i + 1);
                ConfigError::Invalid { path, line, column: 1, key: Some(key), message }
            }
            other => other,
        }
    }
}

/// What one MCP server entry must satisfy (also used before `mcp.add` writes the file).
/// MCP server names in the config: 1-32 letters, digits, `_` or `-` (the model sees a
/// server's tools as `NAME__TOOL`).
pub fn is_valid_server_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn check_mcp_server(server: &McpServerConfig) -> Result<(), String> {
    match (&server.command, &server.url) {
        (Some(command), None) if !command.trim().is_empty() => {}
        (None, Some(url)) => check_url(url)?,
        _ => return Err("set exactly one of `command` (a local program) and `url` (a streamable-HTTP server)".into()),
    }
    if server.call_timeout_secs == 0 || server.startup_timeout_secs == 0 {
        return Err("`call_timeout_secs` and `startup_timeout_secs` must be at least 1".into());
    }
    if server.command.is_some()
        && (server.oauth_client_id.is_some()
            || server.oauth_client_secret.is_some()
            || server.oauth_client_metadata_url.is_some()
            || !server.oauth_scopes.is_empty())
    {
        return Err("`oauth_*` settings apply to `url` servers only".into());
    }
    if let Some(secret) = &server.oauth_client_secret {
        match crate::secrets::reference(secret) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => {
                return Err("`oauth_client_secret` must be a `secret:NAME` reference (see `pryx secret set`)".into())
            }
        }
    }
    for value in server.env.values().chain(server.headers.values()) {
        if let Some(Err(e)) = crate::secrets::reference(value) {
            return Err(e.to_string());
        }
    }
    Ok(())
}

/// An http(s) URL (provider, MCP server, Bot API...).
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => Err(format!("`{url}` must be http or https, not {other}")),
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_checked() {
        assert!(is_valid_server_name("github-2"));
        assert!(!is_valid_server_name(""));
        assert!(!is_valid_server_name("has space"));
        assert!(!is_valid_server_name(&"a".repeat(33)));
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/tmp/pryx.toml"))
    }

    #[test]
    fn an_empty_file_means_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn values_override_defaults() {
        let config = parse("[server]\nport = 8080\n[llm]\nmodel = \"llama3\"\n").unwrap();
        assert_eq!(config.server.port, 8080);
        assert_eq!(config.llm.model.as_deref(), Some("llama3"));
        assert_eq!(config.agent, AgentConfig::default());
    }

    #[test]
    fn a_wrong_type_names_file_line_and_key() {
        let err = parse("[server]\nbind = \"127.0.0.1\"\nport = \"eighty\"\n").unwrap_err().to_string();
        assert!(err.contains("/tmp/pryx.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("server.port"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_an_error_not_ignored() {
        let err = parse("[llm]\nmodle = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("modle"), "{err}");
    }

    #[test]
    fn broken_toml_syntax_names_the_line() {
        let err = parse("[llm]\nmodel = \n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_bad_url_names_its_key_and_line() {
        let err = parse("[llm]\n\nbase_url = \"ftp://x\"\n").unwrap_err().to_string();
        assert!(err.contains("llm.base_url") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn environment_overrides_file_and_openai_key_is_honoured() {
        let mut config = parse("[llm]\nmodel = \"from-file\"\n").unwrap();
        config
            .apply_env(|name| match name {
                "PRYX_LLM_MODEL" => Some("from-env".into()),
                "OPENAI_API_KEY" => Some("sk-test".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.llm.model.as_deref(), Some("from-env"));
        assert_eq!(config.llm.api_key.as_deref(), Some("sk-test"));
    }

    #[test]
    fn pryx_key_wins_over_openai_key() {
        let mut config = Config::default();
        config
            .apply_env(|name| match name {
                "PRYX_LLM_API_KEY" => Some("pryx".into()),
                "OPENAI_API_KEY" => Some("openai".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.llm.api_key.as_deref(), Some("pryx"));
    }

    #[test]
    fn policy_and_tools_sections_parse_and_bad_rules_are_named() {
        let config = parse("[policy]\nshell_allow = [\"git status\"]\n[policy.tools]\nfs_write = \"allow\"\n[tools]\nextra_roots = [\"/data\"]\n").unwrap();
        assert_eq!(config.policy.tools.get("fs_write"), Some(&crate::approvals::Rule::Allow));
        assert_eq!(config.tools.extra_roots, [PathBuf::from("/data")]);
        let err = parse("[policy.tools]\nfs_delete = \"maybe\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("policy.tools.fs_delete"), "{err}");
        let err = parse("[tools]\nshell_timeout_secs = 100\nshell_max_timeout_secs = 10\n").unwrap_err().to_string();
        assert!(err.contains("tools.shell_max_timeout_secs"), "{err}");
    }

    #[test]
    fn secrets_never_show() {
        let mut config = Config::default();
        config.llm.api_key = Some("sk-very-secret".into());
        config.telemetry.otlp.headers.insert("authorization".into(), "Bearer otlp-very-secret".into());
        config.telemetry.otlp.headers.insert("x-ref".into(), "secret:otlp/x".into());
        let shown = config.to_redacted_toml();
        assert!(!shown.contains("sk-very-secret") && !shown.contains("otlp-very-secret"), "{shown}");
        assert!(shown.contains("secret:otlp/x"), "references stay visible: {shown}");
        assert!(!format!("{config:?}").contains("sk-very-secret"));
        assert!(!format!("{config:?}").contains("otlp-very-secret"));
    }
}
