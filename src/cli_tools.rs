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
