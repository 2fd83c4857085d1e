//! The `pryx` command line. Everything of substance lives in the library; this file parses
//! flags, sets up logging (stderr, `RUST_LOG`) and dispatches.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pryx::config::Config;
use pryx::datadir::{default_config_path, DataDir};
use pryx::server::Token;
use pryx::{app, chat, cli_tools};

/// Pryx: your own AI agent, in one binary.
///
/// `pryx` opens the desktop app; `pryx --serve` runs headless; `pryx chat` talks to it from
/// the terminal.
#[derive(Debug, Parser)]
#[command(name = "pryx", version, about, long_about = None)]
struct Cli {
    /// A `pryx://` link to open in the desktop app (session/ID, new?text=…, approve/ID).
    #[arg(value_name = "LINK")]
    link: Option<String>,
    /// Run headless: serve the API (and later the UI) on a loopback port, no window.
    #[arg(long)]
    serve: bool,
    /// Address to listen on [default: 127.0.0.1, or server.bind in the config]
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Port to listen on; 0 picks a free one [default: 0, or server.port in the config]
    #[arg(long)]
    port: Option<u16>,
    /// Where history, the token and the database live [default: the platform data dir]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Config file [default: the platform config dir's pryx/config.toml]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// API token to require (or use, for `chat`) instead of <data-dir>/token
    #[arg(long, global = true, env = "PRYX_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
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
enum McpAction {
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
enum SecretAction {
    /// Store a secret; the value is read from a hidden prompt or stdin, never from argv.
    Set { name: String },
    /// List the names of stored secrets (never values).
    List,
    /// Delete a stored secret.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
enum ApprovalsAction {
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
enum ConfigAction {
    /// Print the config file's path.
    Path,
    /// Print the effective configuration (file, environment and flags), secrets redacted.
    Show,
}

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    // The shell sandbox helper must run before anything starts a thread (see sandbox.rs).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == pryx::sandbox::HELPER_SUBCOMMAND) {
        pryx::sandbox::helper_main(&args[2..]);
    }
    limit_malloc_arenas();
    pryx::install_tls_provider();
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("pryx: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = run(cli, started);
    pryx::telemetry::export::shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pryx: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives every thread that allocates its own arena (up to 8 per core), and each keeps
/// freed memory: for an agent of a dozen threads that is megabytes of idle RSS for nothing.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Logs to stderr (`RUST_LOG`), telemetry spans to the recorder, and, where the agent runs
/// and the user turned it on, to the OTLP exporter (flushed at exit). The export layer can
/// be swapped later (`telemetry::export::apply`), when the settings change.
fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let log_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into())
        // These log whole requests (secrets and message text included) at debug and trace;
        // never let RUST_LOG turn that on. Telemetry spans go to the recorder, not the log.
        .add_directive("jsonrpsee=info".parse()?)
        .add_directive("jsonrpsee_server=info".parse()?)
        .add_directive("jsonrpsee_core=info".parse()?)
        .add_directive("soketto=info".parse()?)
        .add_directive("async_openai=info".parse()?)
        .add_directive("reqwest=info".parse()?)
        .add_directive("hyper=info".parse()?)
        .add_directive("zbus=info".parse()?)
        // The MCP SDK logs every handshake and notification at info.
        .add_directive("rmcp=warn".parse()?)
        .add_directive("opentelemetry=warn".parse()?)
        .add_directive("opentelemetry_sdk=warn".parse()?)
        .add_directive("opentelemetry_otlp=warn".parse()?)
        .add_directive("pryx::span=off".parse()?);
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(log_filter);
    let only_spans = || tracing_subscriber::filter::filter_fn(|m| m.target() == pryx::telemetry::SPAN_TARGET);

    // Export is set up only where the agent runs (--serve, the desktop app), when configured.
    let server_config = match &cli.command {
        None => {
            let path = match &cli.config {
                Some(path) => path.clone(),
                None => default_config_path()?,
            };
            // A config that does not load is reported by `run` with the full message.
            load_config(cli, &path).ok()
        }
        _ => None,
    };
    let recording = server_config.as_ref().is_none_or(|c| c.telemetry.enabled);
    let recorder = recording.then(|| pryx::telemetry::SpanRecorder.with_filter(only_spans()));
    let registry = tracing_subscriber::registry().with(log).with(recorder);
    // The export layer starts empty; each agent runtime fills it to match its config
    // (`telemetry::export::apply`), the first one before it serves.
    let (export, handle) = tracing_subscriber::reload::Layer::new(None::<pryx::telemetry::export::ExportLayer<_>>);
    registry.with(export.with_filter(only_spans())).init();
    if server_config.is_some() {
        pryx::telemetry::export::install_switch(Box::new(move |otlp, secrets| {
            let built = match otlp {
                Some(otlp) => pryx::telemetry::export::build(otlp, secrets)?,
                None => None,
            };
            let (layer, exporter) = built.map_or((None, None), |(exporter, layer)| (Some(layer), Some(exporter)));
            handle.reload(layer).map_err(|e| {
                pryx::telemetry::export::ExportError::Build(format!("cannot swap the export layer: {e}"))
            })?;
            pryx::telemetry::export::keep(exporter);
            Ok(())
        }));
    }
    Ok(())
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
                None | Some(ApprovalsAction::List { all: false }) => cli_tools::ApprovalCommand::List { all: false },
                Some(ApprovalsAction::List { all: true }) => cli_tools::ApprovalCommand::List { all: true },
                Some(ApprovalsAction::Allow { id, session, note }) => cli_tools::ApprovalCommand::Answer {
                    id: id.clone(),
                    allow: true,
                    session: *session,
                    note: note.clone(),
                },
                Some(ApprovalsAction::Deny { id, note }) => cli_tools::ApprovalCommand::Answer {
                    id: id.clone(),
                    allow: false,
                    session: false,
                    note: note.clone(),
                },
            };
            cli_tools::approvals(&data, cli.token.clone(), action)
        }
        Some(Command::Secret { ref action }) => {
            let config = load_config(&cli, &config_path)?;
            let command = match action {
                SecretAction::Set { name } => cli_tools::SecretCommand::Set { name: name.clone() },
                SecretAction::List => cli_tools::SecretCommand::List,
                SecretAction::Delete { name } => cli_tools::SecretCommand::Delete { name: name.clone() },
            };
            cli_tools::secret(&config, command)
        }
        Some(Command::McpProbe { ref url }) => cli_tools::mcp_probe(url),
        Some(Command::Mcp { ref action }) => {
            let data = DataDir::resolve(cli.data_dir.clone())?;
            cli_tools::mcp(&data, &config_path, cli.token.clone(), mcp_command(action)?)
        }
        Some(Command::Doctor) => {
            let config = load_config(&cli, &config_path)?;
            let data = DataDir::resolve(cli.data_dir.clone())?;
            cli_tools::doctor(config, &config_path, data)
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

fn mcp_command(action: &McpAction) -> anyhow::Result<cli_tools::McpCommand> {
    use cli_tools::McpCommand;
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
    let secrets = pryx::secrets::SecretsHandle::new(config.secrets.backend);
    let moved = pryx::secrets::migrate_config_file(config_path, &secrets)?;
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
        app::start(config, Some(config_path.to_owned()), data, token, true).context("cannot start the agent")?;
    app::stop_on_signals(agent.stop_token());
    agent.wait()?;
    Ok(ExitCode::SUCCESS)
}

/// The desktop app: window, tray and the agent in one process.
#[cfg(feature = "desktop")]
fn desktop(cli: &Cli, config_path: &std::path::Path, started: std::time::Instant) -> anyhow::Result<ExitCode> {
    let (config, data, token) = agent_setup(cli, config_path)?;
    pryx::desktop::run(pryx::desktop::DesktopOptions {
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
