//! Small CLI commands beside `chat`: `pryx approvals` (list and answer what a running Pryx
//! waits for) and `pryx doctor` (what is set up and how well commands are contained).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use pryx_api::{Approval, ApprovalDecision, PryxApiClient};

use crate::client;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::llm::ProviderResolver;
use crate::sandbox;
use crate::secrets::{SecretName, SecretString, SecretsHandle};
use crate::workspace::Workspace;

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
    let roots: Vec<_> = workspace.roots().map(Path::to_path_buf).collect();
    let protection = sandbox::probe(&roots);
    println!("sandbox:      {}", protection.describe());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let secrets = SecretsHandle::new(config.secrets.backend);
    println!("secrets:      {}", secrets.get().describe());
    let provider = runtime.block_on(ProviderResolver::new(config.llm.clone(), secrets).info());
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
    Add { name: String, server: pryx_api::McpServerConfig, replace: bool },
    Remove { name: String },
    Import { file: std::path::PathBuf, replace: bool },
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
                match client.mcp_add(name, server, Some(replace)).await {
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
                config_file::add_servers(config_path, &[(name.clone(), server)], replace)?;
                println!("added {name} to {}; it starts with Pryx", config_path.display());
                Ok(ExitCode::SUCCESS)
            }
            (McpCommand::Remove { name }, Some(client)) => report(client.mcp_remove(name).await),
            (McpCommand::Remove { name }, None) => {
                config_file::remove_server(config_path, &name)?;
                println!("removed {name} from {}", config_path.display());
                Ok(ExitCode::SUCCESS)
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
/// schema (defaults, else the first enum value, else a plain value of the right type).
pub fn mcp_probe(url: &str) -> anyhow::Result<ExitCode> {
    use crate::mcp::McpManager;
    use crate::tools::{LiveTools, ToolContext, ToolRegistry};
    use pryx_api::{McpServerConfig, McpServerState};
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let live = std::sync::Arc::new(LiveTools::new(ToolRegistry::default()));
        let server = McpServerConfig { url: Some(url.to_owned()), startup_timeout_secs: 20, ..Default::default() };
        let config = crate::config::McpConfig {
            servers: [("probe".to_owned(), server)].into(),
            watch_config: false,
            ..Default::default()
        };
        let secrets = SecretsHandle::new(crate::secrets::BackendChoice::Injected);
        let manager = McpManager::start(&config, live.clone(), secrets, std::env::temp_dir(), None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
        let status = loop {
            let status = manager.status("probe")?;
            if status.state != McpServerState::Starting || std::time::Instant::now() > deadline {
                break status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let mut failed = status.state != McpServerState::Ready;
        if failed {
            eprintln!("pryx: {url}: {}", status.reason.unwrap_or_else(|| "not ready".into()));
        }
        for tool in manager.tools(Some("probe"))? {
            let arguments = example_arguments(&tool.input_schema);
            match live.current().call(&tool.name, arguments, &ToolContext::default()).await {
                Ok(output) => println!("{}: {output}", tool.tool),
                Err(e) => {
                    eprintln!("pryx: {}: {e}", tool.tool);
                    failed = true;
                }
            }
        }
        manager.shutdown().await;
        Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    })
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
