//! The `pryx` command line: flags, logging, and one function per subcommand.
//!
//! `src/main.rs` only calls [`main`]. The desktop app and `--serve` start the agent through
//! [`crate::runtime`]; every other subcommand is a client of a running agent, or of the
//! config file and the keychain.

mod args;
pub mod chat;
pub mod commands;
mod logging;
mod login;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::config::Config;
use crate::datadir::{default_config_path, DataDir};
use crate::runtime;
use crate::server::Token;
use args::{ApprovalsAction, Cli, Command, ConfigAction, McpAction, SecretAction};

/// The whole program: `src/main.rs` calls this and nothing else.
pub fn main() -> ExitCode {
    let started = std::time::Instant::now();
    logging::limit_malloc_arenas();
    crate::install_tls_provider();
    let cli = Cli::parse();
    if let Err(e) = logging::init_logging(&cli) {
        eprintln!("pryx: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = run(cli, started);
    crate::telemetry::export::shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pryx: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, started: std::time::Instant) -> anyhow::Result<ExitCode> {
    let config_path = match &cli.config {
        Some(path) => path.clone(),
        None => default_config_path()?,
    };
    match cli.command {
        Some(Command::Config { action: ConfigAction::Path }) => {
            println!("{}", config_path.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Config { action: ConfigAction::Show }) => {
            print!("{}", load_config(&cli, &config_path)?.to_redacted_toml());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Chat { ref message, ref session }) => {
            let config = config_without_plain_secrets(&cli, &config_path)?;
            let data = DataDir::resolve(cli.data_dir.clone())?;
            chat::run(config, data, cli.token.clone(), message.clone(), session.clone())
        }
        Some(Command::Approvals { ref action }) => {
            let data = DataDir::resolve(cli.data_dir.clone())?;
            let action = match action {
                None | Some(ApprovalsAction::List { all: false }) => commands::ApprovalCommand::List { all: false },
                Some(ApprovalsAction::List { all: true }) => commands::ApprovalCommand::List { all: true },
                Some(ApprovalsAction::Allow { id, session, note }) => commands::ApprovalCommand::Answer {
                    id: id.clone(),
                    allow: true,
                    session: *session,
                    note: note.clone(),
                },
                Some(ApprovalsAction::Deny { id, note }) => commands::ApprovalCommand::Answer {
                    id: id.clone(),
                    allow: false,
                    session: false,
                    note: note.clone(),
                },
            };
            commands::approvals(&data, cli.token.clone(), action)
        }
        Some(Command::Secret { ref action }) => {
            let config = load_config(&cli, &config_path)?;
            let command = match action {
                SecretAction::Set { name } => commands::SecretCommand::Set { name: name.clone() },
                SecretAction::List => commands::SecretCommand::List,
                SecretAction::Delete { name } => commands::SecretCommand::Delete { name: name.clone() },
            };
            commands::secret(&config, command)
        }
        Some(Command::McpProbe { ref url }) => commands::mcp_probe(url),
        Some(Command::Mcp { ref action }) => {
            let data = DataDir::resolve(cli.data_dir.clone())?;
            commands::mcp(&data, &config_path, cli.token.clone(), mcp_command(action)?)
        }
        Some(Command::Login { ref provider }) => login::login(&load_config(&cli, &config_path)?, provider),
        Some(Command::Logout { ref provider }) => login::logout(&load_config(&cli, &config_path)?, provider.as_deref()),
        Some(Command::Doctor) => {
            let config = load_config(&cli, &config_path)?;
            let data = DataDir::resolve(cli.data_dir.clone())?;
            commands::doctor(config, &config_path, data)
        }
        None if cli.serve => {
            if cli.link.is_some() {
                anyhow::bail!("a pryx:// link opens in the desktop app, not with --serve");
            }
            serve(&cli, &config_path)
        }
        None => desktop(&cli, &config_path, started),
    }
}

fn mcp_command(action: &McpAction) -> anyhow::Result<commands::McpCommand> {
    use commands::McpCommand;
    Ok(match action {
        McpAction::List => McpCommand::List,
        McpAction::Tools { server } => McpCommand::Tools { server: server.clone() },
        McpAction::Remove { name } => McpCommand::Remove { name: name.clone() },
        McpAction::Login { name } => McpCommand::Login { name: name.clone() },
        McpAction::Logout { name } => McpCommand::Logout { name: name.clone() },
        McpAction::Import { file, replace } => McpCommand::Import { file: file.clone(), replace: *replace },
        McpAction::Add { name, url, env, headers, trusted, replace, command } => {
            let pairs = |items: &[String], what: &str| -> anyhow::Result<std::collections::BTreeMap<String, String>> {
                items
                    .iter()
                    .map(|item| match item.split_once('=') {
                        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                        _ => anyhow::bail!("--{what} `{item}` must look like KEY=VALUE"),
                    })
                    .collect()
            };
            let (program, args) = match command.split_first() {
                Some((program, args)) => (Some(program.clone()), args.to_vec()),
                None => (None, Vec::new()),
            };
            let server = pryx_api::McpServerConfig {
                command: program,
                args,
                env: pairs(env, "env")?,
                url: url.clone(),
                headers: pairs(headers, "header")?,
                trusted: *trusted,
                ..Default::default()
            };
            McpCommand::Add { name: name.clone(), server: Box::new(server), replace: *replace }
        }
    })
}

/// The config file (a missing default file is fine, a missing named one is not), then the
/// environment, then the flags.
fn load_config(cli: &Cli, path: &std::path::Path) -> anyhow::Result<Config> {
    let mut config = Config::load(path, cli.config.is_some())?;
    config.apply_env(|name| std::env::var(name).ok())?;
    if let Some(bind) = cli.bind {
        config.server.bind = bind;
    }
    if let Some(port) = cli.port {
        config.server.port = port;
    }
    Ok(config)
}

/// Plain-text secrets in the config file go into the keychain before anything uses them.
/// Returns the config as it is after that (read again only when the file changed).
fn config_without_plain_secrets(cli: &Cli, config_path: &std::path::Path) -> anyhow::Result<Config> {
    let config = load_config(cli, config_path)?;
    let secrets = crate::secrets::SecretsHandle::new(config.secrets.backend);
    let moved = crate::secrets::migrate_config_file(config_path, &secrets)?;
    if moved.is_empty() {
        return Ok(config);
    }
    for key in moved {
        tracing::warn!(
            "moved the plain-text `{key}` from {} into the {}; the file now refers to it as secret:…",
            config_path.display(),
            secrets.get().describe()
        );
    }
    load_config(cli, config_path)
}

/// What running the agent needs: the config (plain secrets moved out), the data dir and
/// the API token.
fn agent_setup(cli: &Cli, config_path: &std::path::Path) -> anyhow::Result<(Config, DataDir, Token)> {
    let config = config_without_plain_secrets(cli, config_path)?;
    let data = DataDir::resolve(cli.data_dir.clone())?;
    data.ensure()?;
    let token = match &cli.token {
        Some(t) if t.trim().len() >= 16 => t.trim().to_owned(),
        Some(_) => anyhow::bail!("--token must be at least 16 characters"),
        None => data.load_or_create_token()?,
    };
    Ok((config, data, Token::new(token)))
}

fn serve(cli: &Cli, config_path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (config, data, token) = agent_setup(cli, config_path)?;
    let agent =
        runtime::start(config, Some(config_path.to_owned()), data, token, true).context("cannot start the agent")?;
    runtime::stop_on_signals(agent.stop_token());
    agent.wait()?;
    Ok(ExitCode::SUCCESS)
}

/// The desktop app: window, tray and the agent in one process.
#[cfg(feature = "desktop")]
fn desktop(cli: &Cli, config_path: &std::path::Path, started: std::time::Instant) -> anyhow::Result<ExitCode> {
    let (config, data, token) = agent_setup(cli, config_path)?;
    crate::desktop::run(crate::desktop::DesktopOptions {
        config,
        config_path: config_path.to_owned(),
        data,
        token,
        link: cli.link.clone(),
        started,
    })
}

#[cfg(not(feature = "desktop"))]
fn desktop(_cli: &Cli, _config_path: &std::path::Path, _started: std::time::Instant) -> anyhow::Result<ExitCode> {
    eprintln!(
        "This build of Pryx has no desktop window (built without the `desktop` feature).\n\
         Run the agent headless with:\n\n    pryx --serve\n\n\
         then talk to it with `pryx chat`, or any JSON-RPC WebSocket client (see docs/api.md)."
    );
    Ok(ExitCode::from(2))
}
