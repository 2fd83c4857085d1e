//! `pryx chat`: a terminal chat that streams answers.
//!
//! It talks to the running `pryx --serve` found through `<data-dir>/server.json`, or, when
//! none runs, to an agent it starts in-process for the duration of the chat. Either way it
//! goes through the same typed client as the tests. One-shot with a message argument;
//! interactive otherwise (`/new` starts a fresh session, `/exit` or Ctrl-D leaves, Ctrl-C
//! cancels the answer being written).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use jsonrpsee::ws_client::WsClient;
use pryx_api::{PryxApiClient, TurnEvent, TurnStatus};

use crate::client;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::runtime::{self, RunningAgent};
use crate::server::Token;

/// Run the chat. `token` is the `--token` flag if given.
pub fn run(
    config: Config,
    data: DataDir,
    token: Option<String>,
    message: Option<String>,
    session: Option<String>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let (url, token, local) = match runtime.block_on(client::find_running(&data, token.clone())) {
        Some((url, token)) => (url, token, None),
        None => {
            data.ensure()?;
            let token = match token {
                Some(t) => t,
                None => data.load_or_create_token()?,
            };
            let agent = runtime::start(config, None, data.clone(), Token::new(token.clone()), false)?;
            (format!("http://{}", agent.address), token, Some(agent))
        }
    };
    let result = runtime.block_on(chat(&url, &token, message, session));
    stop_local(local);
    result
}

fn stop_local(local: Option<RunningAgent>) {
    if let Some(agent) = local {
        if let Err(e) = agent.stop() {
            eprintln!("pryx: {e:#}");
        }
    }
}

async fn chat(url: &str, token: &str, message: Option<String>, session: Option<String>) -> anyhow::Result<ExitCode> {
    let client = client::connect(url, token).await?;
    let mut session_id = match session {
        Some(id) => client.session_get(id).await.context("no such session")?.session.id,
        None => client.session_create(None).await?.id,
    };
    if let Some(message) = message {
        return Ok(if ask(&client, &session_id, message).await? { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("Chatting with Pryx (session {session_id}). /new for a fresh chat, /exit to leave.");
    }
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<String>(1);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if line_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    loop {
        if interactive {
            eprint!("you> ");
        }
        let Some(line) = line_rx.recv().await else {
            break;
        };
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/new" => {
                session_id = client.session_create(None).await?.id;
                eprintln!("(new session {session_id})");
            }
            text => {
                ask(&client, &session_id, text.to_owned()).await?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Send one message and print the answer as it streams. `Ok(false)` when the turn failed.
async fn ask(client: &WsClient, session_id: &str, text: String) -> anyhow::Result<bool> {
    let started = client.message_send(session_id.to_owned(), text).await?;
    let mut events = client.turn_subscribe(started.turn_id.clone()).await?;
    let mut out = std::io::stdout();
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = tokio::signal::ctrl_c() => {
                client.turn_cancel(started.turn_id.clone()).await?;
                continue;
            }
        };
        let Some(envelope) = next else {
            anyhow::bail!("the connection to Pryx closed mid-answer");
        };
        match envelope?.event {
            TurnEvent::Delta { text } => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            TurnEvent::ToolCall { call } => eprintln!("\n[tool {} {}]", call.name, call.arguments),
            TurnEvent::ApprovalRequested { approval } => eprintln!(
                "\n[waiting for approval: {} ({}); answer with `pryx approvals allow {id}` or `pryx approvals deny {id}`]",
                approval.summary,
                approval.tool,
                id = approval.id
            ),
            TurnEvent::ApprovalSettled { approval } => eprintln!("[approval {:?}]", approval.status),
            TurnEvent::ToolProgress { progress, total, message, .. } => {
                let total = total.map(|t| format!("/{t}")).unwrap_or_default();
                eprintln!("[progress {progress}{total}{}]", message.map(|m| format!(": {m}")).unwrap_or_default());
            }
            TurnEvent::ToolResult { .. } | TurnEvent::Usage { .. } => {}
            TurnEvent::Done { status, .. } => {
                writeln!(out)?;
                if status != TurnStatus::Completed {
                    eprintln!("({status:?})");
                }
                return Ok(true);
            }
            TurnEvent::Error { message, .. } => {
                writeln!(out)?;
                eprintln!("pryx: {message}");
                return Ok(false);
            }
        }
    }
}
