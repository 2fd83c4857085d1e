//! Small CLI commands beside `chat`: `pryx approvals` (list and answer what a running Pryx
//! waits for) and `pryx doctor` (what is set up and how well commands are contained).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pryx_api::{Approval, ApprovalDecision, PryxApiClient};

use crate::client;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::llm::ProviderResolver;
use crate::sandbox::workspace::Workspace;
use crate::sandbox::{PrivatePaths, Sandbox};
use crate::secrets::{SecretName, SecretString, SecretsHandle};

/// What `pryx approvals` was asked to do.
pub enum ApprovalCommand {
    List { all: bool },
    Answer { id: String, allow: bool, session: bool, note: Option<String> },
}

pub fn approvals(data: &DataDir, token: Option<String>, command: ApprovalCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (url, token) = client::find_running(data, token)
            .await
            .context("no running Pryx found for this data dir (start it with `pryx --serve`)")?;
        let client = client::connect(&url, &token).await?;
        match command {
            ApprovalCommand::List { all } => {
                let approvals = client.approval_list(Some(all)).await?;
                if approvals.is_empty() {
                    println!("{}", if all { "no approvals yet" } else { "nothing is waiting for approval" });
                }
                for approval in approvals {
                    println!("{}", describe(&approval));
                }
                Ok(ExitCode::SUCCESS)
            }
            ApprovalCommand::Answer { id, allow, session, note } => {
                let decision = match (allow, session) {
                    (false, _) => ApprovalDecision::Deny,
                    (true, false) => ApprovalDecision::AllowOnce,
                    (true, true) => ApprovalDecision::AllowForSession,
                };
                match client.approval_answer(id, decision, note, Some("cli".into())).await {
                    Ok(approval) => {
                        println!("{}", describe(&approval));
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(jsonrpsee::core::ClientError::Call(e)) => {
                        eprintln!("pryx: {}", e.message());
                        Ok(ExitCode::FAILURE)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    })
}

fn describe(a: &Approval) -> String {
    let status = pryx_api::wire_name(&a.status);
    format!("{}  {status:<9}  {:<13}  {}", a.id, a.tool, a.summary)
}

/// Print what Pryx makes of this machine.
pub fn doctor(config: Config, config_path: &Path, data: DataDir) -> anyhow::Result<ExitCode> {
    println!("pryx {}", env!("CARGO_PKG_VERSION"));
    println!(
        "config file:  {}{}",
        config_path.display(),
        if config_path.exists() { "" } else { " (not present: defaults)" }
    );
    println!("data dir:     {}", data.path().display());
    let workspace_root = config.tools.workspace.clone().unwrap_or_else(|| data.path().join("workspace"));
    let workspace = Workspace::open(&workspace_root, &config.tools.extra_roots)?;
    println!("workspace:    {}", workspace.root().display());
    for extra in workspace.roots().skip(1) {
        println!("extra root:   {}", extra.display());
    }
    let sandbox = Sandbox::new(PrivatePaths::of_pryx(
        data.path(),
        crate::datadir::default_config_dir().as_deref(),
        Some(config_path),
    ));
    let protection = sandbox.protection(config.tools.shell_network);
    println!("sandbox:      {}", protection.describe());
    println!("  landlock:   {}", protection.landlock);
    println!("  hiding:     {} (Pryx's data dir, config, session bus and keyring from commands)", protection.hiding);
    println!(
        "  network:    {} for shell commands ([tools] shell_network = {})",
        protection.network, config.tools.shell_network
    );
    println!("  processes:  {}", if protection.pid_namespace { "own PID namespace" } else { "process group" });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let secrets = SecretsHandle::new(config.secrets.backend);
    println!("secrets:      {}", secrets.get().describe());
    let logins = crate::auth::logged_in(secrets.get()).unwrap_or_default();
    let login_names: Vec<&str> = logins.iter().map(|p| p.title()).collect();
    match (&config.cloud.url, login_names.is_empty()) {
        (Some(url), true) => println!("login:        none (control plane {url}; `pryx login github`)"),
        (Some(url), false) => println!("login:        {} (through {url})", login_names.join(", ")),
        (None, true) => println!("login:        none ([cloud] url names a control plane; `pryx login github`)"),
        (None, false) => println!("login:        {}", login_names.join(", ")),
    }
    let provider = runtime.block_on(ProviderResolver::new(config.llm.clone(), config.cloud.clone(), secrets).info());
    match (provider.base_url, provider.model) {
        (Some(url), Some(model)) => println!("llm:          {model} at {url} ({})", provider.source),
        _ => println!("llm:          none configured or found (see `pryx chat` for how to set one)"),
    }
    match runtime.block_on(client::find_running(&data, None)) {
        Some((url, _)) => println!("server:       running at {url}"),
        None => println!("server:       not running"),
    }
    Ok(ExitCode::SUCCESS)
}

/// What `pryx secret` was asked to do.
pub enum SecretCommand {
    Set { name: String },
    List,
    Delete { name: String },
}

/// `pryx secret`: works on the keychain directly, no server needed. Values are read from a
/// hidden prompt or from stdin, never from the command line (which shell history keeps).
pub fn secret(config: &Config, command: SecretCommand) -> anyhow::Result<ExitCode> {
    let secrets = SecretsHandle::new(config.secrets.backend);
    let secrets = secrets.get();
    match command {
        SecretCommand::Set { name } => {
            let name = SecretName::parse(&name)?;
            let value = read_secret_value(&name)?;
            secrets.set(&name, &value)?;
            eprintln!("stored {} in the {}", name.as_str(), secrets.describe());
        }
        SecretCommand::List => {
            for name in secrets.list()? {
                println!("{}", name.as_str());
            }
        }
        SecretCommand::Delete { name } => {
            let name = SecretName::parse(&name)?;
            secrets.delete(&name)?;
            eprintln!("deleted {}", name.as_str());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_secret_value(name: &SecretName) -> anyhow::Result<SecretString> {
    use std::io::{BufRead, IsTerminal};
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("value for {} (not shown): ", name.as_str()))?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    anyhow::ensure!(!value.is_empty(), "no value given; nothing stored");
    Ok(SecretString::new(value))
}

/// What `pryx mcp` was asked to do.
pub enum McpCommand {
    List,
    Tools { server: Option<String> },
    Add { name: String, server: Box<pryx_api::McpServerConfig>, replace: bool },
    Remove { name: String },
    Import { file: std::path::PathBuf, replace: bool },
    Login { name: String },
    Logout { name: String },
}

/// `pryx mcp …`: through the running Pryx when there is one (changes apply at once),
/// otherwise by editing the config file (they apply when Pryx starts).
pub fn mcp(data: &DataDir, config_path: &Path, token: Option<String>, command: McpCommand) -> anyhow::Result<ExitCode> {
    use crate::mcp::config_file;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let running = client::find_running(data, token).await;
        let client = match &running {
            Some((url, token)) => Some(client::connect(url, token).await?),
            None => None,
        };
        let report = |result: Result<(), jsonrpsee::core::ClientError>| match result {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(jsonrpsee::core::ClientError::Call(e)) => {
                eprintln!("pryx: {}", e.message());
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(anyhow::Error::from(e)),
        };
        match (command, client) {
            (McpCommand::List, Some(client)) => {
                let overview = client.mcp_list().await?;
                if let Some(error) = &overview.config_error {
                    eprintln!("pryx: the config file has an error, servers run as before: {error}");
                }
                if overview.servers.is_empty() {
                    println!("no MCP servers configured (add one with `pryx mcp add`)");
                }
                for s in overview.servers {
                    let state = pryx_api::wire_name(&s.state);
                    let detail = s.reason.or(s.server_info).unwrap_or_default();
                    println!("{:<16} {:<8} {:<5} {:>3} tools  {detail}", s.name, state, s.transport, s.tools);
                }
                Ok(ExitCode::SUCCESS)
            }
            (McpCommand::List, None) => {
                let config = Config::load(config_path, false)?;
                for (name, server) in &config.mcp.servers {
                    let target = server.url.clone().or(server.command.clone()).unwrap_or_default();
                    println!("{name:<16} {target}  (Pryx is not running)");
                }
                if config.mcp.servers.is_empty() {
                    println!("no MCP servers configured (add one with `pryx mcp add`)");
                }
                Ok(ExitCode::SUCCESS)
            }
            (McpCommand::Tools { server }, Some(client)) => {
                for tool in client.mcp_tools(server).await? {
                    let hints = if tool.hints.read_only == Some(true) { " read-only" } else { "" };
                    println!("{:<40} {:<5}{hints}  {}", tool.name, tool.rule, tool.description);
                }
                Ok(ExitCode::SUCCESS)
            }
            (McpCommand::Tools { .. }, None) => {
                anyhow::bail!("tools are known only while Pryx runs (start it with `pryx --serve`)")
            }
            (McpCommand::Add { name, server, replace }, Some(client)) => {
                match client.mcp_add(name, *server, Some(replace)).await {
                    Ok(status) => {
                        let state = pryx_api::wire_name(&status.state);
                        let reason = status.reason.map(|r| format!(": {r}")).unwrap_or_default();
                        println!("{} {state} with {} tools{reason}", status.name, status.tools);
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => report(Err(e)),
                }
            }
            (McpCommand::Add { name, server, replace }, None) => {
                config_file::add_servers(config_path, &[(name.clone(), *server)], replace)?;
                println!("added {name} to {}; it starts with Pryx", config_path.display());
                Ok(ExitCode::SUCCESS)
            }
            (McpCommand::Remove { name }, Some(client)) => report(client.mcp_remove(name).await),
            (McpCommand::Remove { name }, None) => {
                config_file::remove_server(config_path, &name)?;
                println!("removed {name} from {}", config_path.display());
                Ok(ExitCode::SUCCESS)
            }
            (McpCommand::Login { name }, Some(client)) => {
                let mut changes = client.mcp_subscribe().await?;
                let url = match client.mcp_login(name.clone()).await {
                    Ok(url) => url,
                    Err(e) => return report(Err(e)),
                };
                println!("Sign in to {name} in your browser:\n\n    {url}\n");
                // Best effort: a desktop session opens it; a server prints it only.
                let _ = std::process::Command::new("xdg-open")
                    .arg(&url)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
                println!("waiting for the sign-in to finish (Ctrl-C to stop waiting)…");
                let wait = async {
                    while let Some(status) = changes.next().await {
                        let status = status?;
                        if status.name == name && status.state == pryx_api::McpServerState::Ready {
                            return Ok::<_, anyhow::Error>(status);
                        }
                    }
                    anyhow::bail!("Pryx stopped while waiting")
                };
                match tokio::time::timeout(Duration::from_secs(600), wait).await {
                    Ok(status) => {
                        let status = status?;
                        println!("{name} is signed in and ready with {} tools", status.tools);
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(_) => {
                        eprintln!("pryx: no sign-in within 10 minutes; run the command again to get a new link");
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
            (McpCommand::Logout { name }, Some(client)) => report(client.mcp_logout(name).await),
            (McpCommand::Login { .. } | McpCommand::Logout { .. }, None) => {
                anyhow::bail!("signing in needs a running Pryx (start it with `pryx --serve`)")
            }
            (McpCommand::Import { file, replace }, client) => {
                let json = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let added = match client {
                    Some(client) => match client.mcp_import(json, Some(replace)).await {
                        Ok(added) => added,
                        Err(e) => return report(Err(e)),
                    },
                    None => {
                        let servers = config_file::parse_mcp_servers_json(&json)?;
                        let existing = Config::load(config_path, false)?.mcp.servers;
                        let new: Vec<_> =
                            servers.into_iter().filter(|(n, _)| replace || !existing.contains_key(n)).collect();
                        config_file::add_servers(config_path, &new, replace)?;
                        new.into_iter().map(|(n, _)| n).collect()
                    }
                };
                if added.is_empty() {
                    println!("nothing new to import (use --replace to overwrite servers with the same names)");
                } else {
                    println!("imported: {}", added.join(", "));
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// `pryx __mcp-probe URL`: what the MCP conformance suite runs. The server goes through the
/// same manager and tools a turn uses; each tool is called once with arguments made from its
/// schema (defaults, else the first enum value, else a plain value of the right type). A
/// server that wants OAuth is signed in to as a user would, except that the "browser" is an
/// HTTP client that reads the authorization server's redirect instead of following it.
/// `MCP_CONFORMANCE_CONTEXT` may name a pre-registered client (`client_id`, `client_secret`).
pub fn mcp_probe(url: &str) -> anyhow::Result<ExitCode> {
    use crate::mcp::McpManager;
    use crate::tools::{LiveTools, ToolContext, ToolRegistry};
    use pryx_api::{McpServerConfig, McpServerState};
    let mut server = McpServerConfig { url: Some(url.to_owned()), startup_timeout_secs: 20, ..Default::default() };
    let context: serde_json::Value =
        std::env::var("MCP_CONFORMANCE_CONTEXT").ok().and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default();
    if let Some(client_id) = context["client_id"].as_str() {
        server.oauth_client_id = Some(client_id.to_owned());
    }
    if let Some(secret) = context["client_secret"].as_str() {
        // Injected the way a service manager would (PRYX_SECRET_NAME), before any thread runs.
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("PRYX_SECRET_PROBE_CLIENT", secret) };
        server.oauth_client_secret = Some("secret:probe/client".into());
    }
    if std::env::var("MCP_CONFORMANCE_SCENARIO").is_ok_and(|s| s == "auth/basic-cimd") {
        server.oauth_client_metadata_url = Some("https://conformance-test.local/client-metadata.json".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let live = std::sync::Arc::new(LiveTools::new(ToolRegistry::default()));
        let config = crate::config::McpConfig {
            servers: [("probe".to_owned(), server)].into(),
            watch_config: false,
            ..Default::default()
        };
        let secrets = SecretsHandle::new(crate::secrets::BackendChoice::Injected);
        let environment = crate::mcp::McpEnvironment {
            secrets,
            credentials: crate::mcp::oauth::CredentialsAt::memory(),
            roots: Vec::new(),
            config_path: None,
            sandbox: None,
        };
        let manager = McpManager::start(&config, live.clone(), environment);
        let mut sign_ins = 0;
        let mut status = settle(&manager, &[McpServerState::Starting], Duration::from_secs(25)).await?;
        if status.state == McpServerState::NeedsAuth {
            status = probe_sign_in(&manager, &mut sign_ins).await?;
        }
        let mut failed = status.state != McpServerState::Ready;
        if failed {
            eprintln!("pryx: {url}: {}", status.reason.unwrap_or_else(|| "not ready".into()));
        }
        for tool in manager.tools(Some("probe"), |_| None)? {
            let arguments = example_arguments(&tool.input_schema);
            loop {
                match live.current().call(&tool.name, arguments.clone(), &ToolContext::default()).await {
                    Ok(output) => println!("{}: {output}", tool.tool),
                    Err(e) => {
                        // A refusal for want of scope: sign in again (step-up), at most three
                        // sign-ins in all, then call again.
                        let status = settle(&manager, &[McpServerState::Ready], Duration::from_millis(500)).await?;
                        if status.state == McpServerState::NeedsAuth && sign_ins < 3 {
                            probe_sign_in(&manager, &mut sign_ins).await?;
                            continue;
                        }
                        eprintln!("pryx: {}: {e}", tool.tool);
                        failed = true;
                    }
                }
                break;
            }
        }
        manager.shutdown().await;
        Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    })
}

/// Sign the probe server in, reading the authorization server's redirect instead of
/// following it the way a browser would.
async fn probe_sign_in(
    manager: &crate::mcp::McpManager,
    sign_ins: &mut u32,
) -> anyhow::Result<pryx_api::McpServerStatus> {
    use pryx_api::McpServerState;
    *sign_ins += 1;
    let authorization_url = manager.login_with_redirect("probe", "http://127.0.0.1:9/callback").await?;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let answer = no_redirects.get(&authorization_url).send().await?;
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .context("the authorization server did not redirect back")?;
    let callback = url::Url::parse(location)?;
    manager.complete_login(&callback.query_pairs().into_owned().collect()).await?;
    settle(manager, &[McpServerState::Starting, McpServerState::NeedsAuth], Duration::from_secs(25)).await
}

/// The probe server's status once it has left the `passing` states (or after `limit`).
async fn settle(
    manager: &crate::mcp::McpManager,
    passing: &[pryx_api::McpServerState],
    limit: Duration,
) -> anyhow::Result<pryx_api::McpServerStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let status = manager.status("probe")?;
        if !passing.contains(&status.state) || std::time::Instant::now() > deadline {
            return Ok(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Arguments that satisfy a JSON schema's required shape, for probing a tool.
fn example_arguments(schema: &serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value};
    fn example(property: &Value) -> Value {
        if let Some(default) = property.get("default") {
            return default.clone();
        }
        if let Some(first) = property.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
            return first.clone();
        }
        match property.get("type").and_then(Value::as_str) {
            Some("number") | Some("integer") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => example_arguments(property),
            _ => json!("test"),
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    Value::Object(properties.into_iter().flatten().map(|(name, property)| (name.clone(), example(property))).collect())
}
