//! The shell's connection to its agent: the same JSON-RPC API the page and `pryx chat` use,
//! on a small runtime of its own ("pryx-desktop-link"), so the window and tray survive an
//! agent restart and simply reconnect. It reports activity and approvals to the event loop,
//! carries out the shell's commands (pause, answer), and runs the native approval dialogs.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonrpsee::core::client::Subscription;
use pryx_api::{Activity, Approval, ApprovalDecision, ApprovalStatus, PryxApiClient};
use tokio::sync::mpsc;

use super::dialogs;

/// News for the event loop.
#[derive(Debug)]
pub enum FromAgent {
    Activity(Activity),
    /// The connection dropped; the shell shows "reconnecting".
    Lost,
    /// An approval is waiting (also sent for those already waiting at connect).
    ApprovalPending(Approval),
    ApprovalSettled(Approval),
    /// A deep link named a session or approval that does not exist.
    LinkTargetMissing(String),
}

/// What the shell asks of the agent.
#[derive(Debug)]
pub enum ToAgent {
    Pause(bool),
    Answer {
        approval_id: String,
        decision: ApprovalDecision,
    },
    /// Check that a deep link's session exists before the page opens it.
    CheckSession(String),
}

/// Settings of the link.
pub struct LinkOptions {
    pub url: String,
    pub token: String,
    pub approval_dialogs: bool,
}

/// Start the link thread. `notify` delivers news to the event loop (through its proxy).
pub fn start(
    options: LinkOptions,
    notify: impl Fn(FromAgent) + Send + Sync + 'static,
) -> mpsc::UnboundedSender<ToAgent> {
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let dialog_commands = commands_tx.clone();
    let spawned = std::thread::Builder::new().name("pryx-desktop-link".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => return tracing::error!("the desktop cannot reach its agent: {e}"),
        };
        runtime.block_on(run(options, Arc::new(notify), commands_rx, dialog_commands));
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the desktop's agent link: {e}");
    }
    commands_tx
}

type Notify = Arc<dyn Fn(FromAgent) + Send + Sync>;

async fn run(
    options: LinkOptions,
    notify: Notify,
    mut commands: mpsc::UnboundedReceiver<ToAgent>,
    dialog_commands: mpsc::UnboundedSender<ToAgent>,
) {
    let dialogs = Dialogs { open: Default::default(), commands: dialog_commands };
    let mut wait = Duration::from_millis(100);
    loop {
        match serve_connection(&options, &notify, &mut commands, &dialogs).await {
            Ok(()) => return,
            Err(e) => tracing::debug!("desktop link: {e:#}"),
        }
        notify(FromAgent::Lost);
        // Commands given while disconnected are dropped; the user sees "reconnecting".
        while commands.try_recv().is_ok() {}
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// One connection: subscribe, report, obey; returns `Ok` only when the shell is gone.
async fn serve_connection(
    options: &LinkOptions,
    notify: &Notify,
    commands: &mut mpsc::UnboundedReceiver<ToAgent>,
    dialogs: &Dialogs,
) -> anyhow::Result<()> {
    let client = Arc::new(crate::client::connect(&options.url, &options.token).await?);
    let mut activity: Subscription<Activity> = client.activity_subscribe().await?;
    let mut approvals: Subscription<Approval> = client.approvals_subscribe().await?;
    let workspace = client.system_info().await.map(|info| info.sandbox.workspace).unwrap_or_default();
    for approval in client.approval_list(None).await? {
        pending(approval, notify, dialogs, options, &workspace);
    }
    loop {
        tokio::select! {
            item = activity.next() => match item {
                Some(Ok(now)) => notify(FromAgent::Activity(now)),
                _ => anyhow::bail!("the activity stream ended"),
            },
            item = approvals.next() => match item {
                Some(Ok(approval)) if approval.status == ApprovalStatus::Pending => {
                    pending(approval, notify, dialogs, options, &workspace);
                }
                Some(Ok(approval)) => {
                    dialogs.settled(&approval.id);
                    notify(FromAgent::ApprovalSettled(approval));
                }
                _ => anyhow::bail!("the approvals stream ended"),
            },
            command = commands.recv() => match command {
                None => return Ok(()),
                Some(command) => obey(&client, command, notify).await,
            },
        }
    }
}

fn pending(approval: Approval, notify: &Notify, dialogs: &Dialogs, options: &LinkOptions, workspace: &str) {
    if options.approval_dialogs {
        dialogs.ask(&approval, workspace);
    }
    notify(FromAgent::ApprovalPending(approval));
}

async fn obey(client: &jsonrpsee::ws_client::WsClient, command: ToAgent, notify: &Notify) {
    let result = match command {
        ToAgent::Pause(paused) => client.agent_pause(paused).await.map(|_| ()),
        ToAgent::Answer { approval_id, decision } => {
            client.approval_answer(approval_id, decision, None, Some("desktop".into())).await.map(|_| ())
        }
        ToAgent::CheckSession(id) => match client.session_get(id.clone()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                notify(FromAgent::LinkTargetMissing(format!("There is no conversation {id}.")));
                Ok(())
            }
        },
    };
    if let Err(e) = result {
        tracing::warn!("the desktop's request to the agent failed: {e}");
    }
}

/// Native approval dialogs: one per pending request, answered through the API; a request
/// settled elsewhere closes its dialog (see `dialogs::close_approval_dialog`).
struct Dialogs {
    /// The dialogs on screen, by approval id; the flag says "settled elsewhere".
    open: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>,
    commands: mpsc::UnboundedSender<ToAgent>,
}

impl Dialogs {
    fn ask(&self, approval: &Approval, workspace: &str) {
        let settled_elsewhere = Arc::new(AtomicBool::new(false));
        match lock(&self.open).entry(approval.id.clone()) {
            Entry::Occupied(_) => return,
            Entry::Vacant(slot) => slot.insert(settled_elsewhere.clone()),
        };
        let question = dialogs::approval_dialog(approval, workspace);
        let (id, open, commands) = (approval.id.clone(), self.open.clone(), self.commands.clone());
        tokio::spawn(async move {
            let decision = question.await;
            lock(&open).remove(&id);
            // A dialog closed because the request was settled elsewhere answers nothing.
            if !settled_elsewhere.load(Ordering::SeqCst) {
                let _ = commands.send(ToAgent::Answer { approval_id: id, decision });
            }
        });
    }

    fn settled(&self, id: &str) {
        if let Some(flag) = lock(&self.open).get(id) {
            flag.store(true, Ordering::SeqCst);
            dialogs::close_approval_dialog(id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
