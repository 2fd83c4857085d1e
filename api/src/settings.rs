//! The model provider, the workspace and telemetry settings, and what `system.info` tells.

use serde::{Deserialize, Serialize};

use crate::ExportStatus;

/// How well shell commands and MCP servers are contained on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// The directory file and shell tools act in.
    pub workspace: String,
    /// `full`, `partial` or `none`: how much of Landlock the kernel enforces.
    pub landlock: String,
    pub pid_namespace: bool,
    /// How commands and MCP servers are kept from Pryx's own files and sockets.
    pub hiding: Hiding,
    /// What network a shell command has unless it asked for more.
    pub network: CommandNetwork,
    /// One line for people.
    pub summary: String,
}

/// How programs Pryx starts are kept from its data dir, config and (for shell commands)
/// the user's session bus and keychain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hiding {
    /// A private mount namespace: the directories are empty there, shell commands also get
    /// their own `/tmp` and no per-user runtime dir (session bus, keyring).
    MountNamespace,
    /// The kernel allows no mount namespace here: Landlock read rules leave the files
    /// unreadable, and shell commands may open no Unix sockets (so no session bus), while
    /// MCP servers keep theirs.
    LandlockRules,
    /// Nothing hides them: only approvals protect Pryx's token and secrets.
    None,
}

impl Hiding {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Hiding::MountNamespace => "mount_namespace",
            Hiding::LandlockRules => "landlock_rules",
            Hiding::None => "none",
        }
    }
}

/// A shell command's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandNetwork {
    /// None: its own network namespace with only a loopback of its own (or, where the
    /// kernel refuses namespaces, no Internet sockets at all): no internet, no Pryx port.
    Off,
    /// On for every command: `[tools] shell_network = true`.
    On,
    /// This machine offers no way to cut it.
    Open,
}

impl CommandNetwork {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandNetwork::Off => "off",
            CommandNetwork::On => "on",
            CommandNetwork::Open => "open",
        }
    }
}

/// Where the LLM provider setting came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// `config`, `env`, `ollama`, `lmstudio` or `none`.
    pub source: String,
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// Whether an API key is set (never the key itself).
    pub has_api_key: bool,
}

/// The LLM provider as the user configured it (`provider.get`); `system.info` shows the
/// one in use (which may have been found on this machine instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSettings {
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// Whether an API key is set (never the key itself).
    pub has_api_key: bool,
    /// Environment variables set for Pryx that win over the config file at the next start
    /// (`PRYX_LLM_BASE_URL`, `PRYX_LLM_MODEL`, `PRYX_LLM_API_KEY`, `OPENAI_API_KEY`).
    pub overridden_by_env: Vec<String>,
    /// The GitHub login, which gives GitHub Models when nothing else is set (`auth.status`
    /// has every provider's).
    pub github: Option<crate::LoginStatus>,
}

/// What `provider.test` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderTest {
    pub ok: bool,
    /// The provider's error in words, or which model answered.
    pub message: String,
    pub model: Option<String>,
    pub latency_ms: u64,
}

/// What `system.info` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub version: String,
    pub data_dir: String,
    pub provider: ProviderInfo,
    /// Times the agent runtime was restarted after a panic since the process started.
    pub runtime_restarts: u64,
    /// Unix ms when this runtime incarnation started.
    pub started_at: i64,
    pub sandbox: SandboxInfo,
    /// Where secrets are kept here, in one line (never a value).
    pub secrets: String,
    /// Telemetry spans dropped because the store fell behind (since the process started).
    pub spans_dropped: u64,
    /// OTLP export, when the user turned it on.
    pub export: Option<ExportStatus>,
}

/// The agent's settings the Settings screen edits (`settings.get`, `settings.set`). Never
/// holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSettings {
    /// `[tools] workspace` as configured; `None`: the default, `workspace` in the data
    /// directory.
    pub workspace: Option<String>,
    /// The workspace in use now.
    pub workspace_in_use: String,
    /// `[telemetry] capture_content`: message text and tool arguments in spans.
    pub capture_content: bool,
    /// `[telemetry.otlp] endpoint`: where spans are exported; `None`: nothing leaves this
    /// computer.
    pub export_endpoint: Option<String>,
    /// An `authorization` header for the export is kept in the keychain.
    pub export_authorization: bool,
}

/// A change of the model provider (`provider.set`), or settings to try (`provider.test`).
/// A field left out keeps its current value; an `api_key` of `""` removes the key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderChange {
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
}

/// A change of the settings applied by a runtime restart (`settings.set`). A field left out
/// stays; `""` resets the workspace to the default, turns export off, or removes the header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettingsChange {
    pub workspace: Option<String>,
    pub capture_content: Option<bool>,
    pub export_endpoint: Option<String>,
    /// The OTLP `authorization` header's value (kept in the keychain).
    pub export_authorization: Option<String>,
}
