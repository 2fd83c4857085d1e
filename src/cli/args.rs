//! The command line's shape: flags and subcommands (clap). Parsing only; what each one
//! does is in the sibling modules. Kept apart so packaging can generate the man page and
//! shell completions from the same definition.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Pryx: your own AI agent, in one binary.
///
/// `pryx` opens the desktop app; `pryx --serve` runs headless; `pryx chat` talks to it from
/// the terminal.
#[derive(Debug, Parser)]
#[command(name = "pryx", version, about, long_about = None)]
pub struct Cli {
    /// A `pryx://` link to open in the desktop app (session/ID, new?text=…, approve/ID).
    #[arg(value_name = "LINK")]
    pub link: Option<String>,
    /// Run headless: serve the API and the Control Center on one port, no window.
    #[arg(long)]
    pub serve: bool,
    /// Address to listen on [default: 127.0.0.1, or server.bind in the config]
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Port to listen on; 0 picks a free one [default: 0, or server.port in the config]
    #[arg(long)]
    pub port: Option<u16>,
    /// Where history, the token and the database live [default: the platform data dir]
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Config file [default: the platform config dir's pryx/config.toml]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// API token to require (or use, for `chat`) instead of <data-dir>/token
    #[arg(long, global = true, env = "PRYX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show where the config file is, or what Pryx makes of it.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Chat in the terminal: one message as an argument, or interactively.
    Chat {
        /// The message to send; without it, read messages line by line.
        message: Option<String>,
        /// Continue this session instead of starting a new one.
        #[arg(long)]
        session: Option<String>,
    },
    /// List and answer the approvals a running Pryx is waiting for.
    Approvals {
        #[command(subcommand)]
        action: Option<ApprovalsAction>,
    },
    /// Check the setup: data dir, config, provider, workspace, sandbox and keychain.
    Doctor,
    /// Log in to GitHub or Google with a short code typed on any device (no key to paste).
    /// A GitHub login makes GitHub Models the model when none is configured.
    Login {
        /// github or google
        provider: String,
    },
    /// Forget a login's tokens (all logins when no provider is named).
    Logout {
        /// github or google
        provider: Option<String>,
    },
    /// Keep secrets (API keys, tokens) in the OS keychain; refer to them as `secret:NAME`.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// For the MCP conformance suite: connect to one streamable-HTTP server with Pryx's MCP
    /// client, list its tools, call each once, exit.
    #[command(name = "__mcp-probe", hide = true)]
    McpProbe { url: String },
    /// MCP servers: list them and their tools, add, remove, import from other apps.
    Mcp {
        #[command(subcommand)]
        action: McpAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum McpAction {
    /// Servers and their status.
    List,
    /// The tools the model can call, with the approval rule of each.
    Tools { server: Option<String> },
    /// Add a server: `pryx mcp add NAME -- COMMAND ARGS…` or `pryx mcp add NAME --url URL`.
    Add {
        name: String,
        /// A streamable-HTTP server instead of a command.
        #[arg(long)]
        url: Option<String>,
        /// Environment for the command, `KEY=VALUE` (VALUE may be `secret:NAME`).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// HTTP header, `NAME=VALUE` (VALUE may be `secret:NAME`).
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// Run every tool of this server without asking.
        #[arg(long)]
        trusted: bool,
        /// Overwrite a server with the same name.
        #[arg(long)]
        replace: bool,
        /// The program and its arguments.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Remove a server.
    Remove { name: String },
    /// Sign in to an HTTP server that asks for OAuth: opens the browser (or prints the link)
    /// and waits until the server is connected.
    Login { name: String },
    /// Forget a server's OAuth tokens.
    Logout { name: String },
    /// Add the servers of an `mcpServers` JSON file (Claude Desktop, Cursor, OpenClaw).
    Import {
        file: PathBuf,
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretAction {
    /// Store a secret; the value is read from a hidden prompt or stdin, never from argv.
    Set { name: String },
    /// List the names of stored secrets (never values).
    List,
    /// Delete a stored secret.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsAction {
    /// List pending approvals (the default).
    List {
        /// Also show settled ones (the latest 200).
        #[arg(long)]
        all: bool,
    },
    /// Allow a pending call.
    Allow {
        id: String,
        /// Allow every call of this tool for the rest of the session.
        #[arg(long)]
        session: bool,
        /// A note passed to the model.
        #[arg(long)]
        note: Option<String>,
    },
    /// Deny a pending call.
    Deny {
        id: String,
        /// A note passed to the model (why, or what to do instead).
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the config file's path.
    Path,
    /// Print the effective configuration (file, environment and flags), secrets redacted.
    Show,
}
