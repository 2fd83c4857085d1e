//! Dispatch: inbox rows in order. Chats the owner has not paired (or listed in
//! `allowed_chats`) get one polite refusal and never reach the model or a tool; `/start
//! CODE` with a fresh pairing code pairs a chat. Commands (`/new`, `/stop`, `/help`) are
//! answered here; text starts a turn in the chat's session, and a follower waits for its
//! answer, showing "typing…", a live preview, and approval buttons. The answer is queued
//! for the outbox in the same transaction that marks the message answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pryx_api::{ApprovalDecision, ChannelName, TurnEvent, TurnStatus};
use tokio::sync::mpsc;

use super::format;
use super::platform::Platform;
use super::tables::{self, InboundMessage, InboxRow, InboxStatus, Kind};
use super::{Button, Channels};
use crate::store::StoreError;

/// The note on a message refused because its chat is not paired.
const NOT_PAIRED: &str = "not paired";
/// Shortest time between two passes of the dispatcher over the inbox.
const DISPATCH_PACE: Duration = Duration::from_millis(5);
/// How often the live preview of an answer may change (Telegram allows about one edit a
/// second per chat).
const PREVIEW_EVERY: Duration = Duration::from_millis(1100);
/// How often "typing…" is refreshed while a turn runs (Telegram shows it for ~5 s).
const TYPING_EVERY: Duration = Duration::from_secs(4);

const HELP: &str = "I'm Pryx, your own agent. Write to me as you would in the app.\n\
                    /new starts a fresh conversation, /stop stops the current answer.";
const REFUSAL: &str = "Sorry, this is a private assistant and this chat is not paired with it. \
                       Its owner can pair a chat from the Pryx app.";

/// What handling one inbox message leaves for the dispatcher to settle with others.
enum Handled {
    /// Settled (answered, started, refused with a reply).
    Done,
    /// From a chat already told it is not paired (as the chat row says): to be marked
    /// refused, nothing sent.
    RefusedQuietly(i64, tables::ChatRow),
}

impl Channels {
    pub(super) async fn dispatch_loop(self: Arc<Self>) {
        // Messages held back while the agent was paused go as soon as it resumes.
        let mut activity = self.agent.activity();
        loop {
            let pass_started = tokio::time::Instant::now();
            let paused_while_reading = activity.borrow().paused;
            for platform in self.connected().platforms() {
                match tables::inbox_with_status(&self.store, platform.channel(), InboxStatus::Pending).await {
                    Ok(rows) => {
                        // A flood from strangers is settled a batch per transaction, not a
                        // disk sync per message; a crash before that leaves them pending,
                        // to be refused (quietly again) at the next start. What is known of
                        // a chat that was only refused stays known for the pass.
                        let mut refused = Vec::new();
                        let mut known: HashMap<String, tables::ChatRow> = HashMap::new();
                        for row in rows {
                            let chat_id = row.message.chat_id.clone();
                            let chat = known.remove(&chat_id);
                            match self.handle(&platform, row, chat).await {
                                Ok(Handled::Done) => {}
                                Ok(Handled::RefusedQuietly(id, chat)) => {
                                    refused.push(id);
                                    known.insert(chat_id, chat);
                                }
                                Err(e) => tracing::error!(target: "pryx::channels", "cannot handle a message: {e}"),
                            }
                        }
                        if let Err(e) = tables::mark_all(&self.store, &refused, InboxStatus::Refused, NOT_PAIRED).await
                        {
                            tracing::error!(target: "pryx::channels", "cannot record refused messages: {e}");
                        }
                    }
                    Err(e) => tracing::error!(target: "pryx::channels", "cannot read the inbox: {e}"),
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.inbox_wake.notified() => {}
                _ = wait_until_resumed(&mut activity, paused_while_reading) => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            // Under a flood, passes come at most every `DISPATCH_PACE`, so each takes what
            // arrived meanwhile in one read and one write instead of one per commit of the
            // inbox (which would also take the CPU the webhooks' acknowledgements need).
            tokio::time::sleep_until(pass_started + DISPATCH_PACE).await;
        }
    }

    pub(super) fn platform(&self, channel: ChannelName) -> Option<Arc<dyn Platform>> {
        self.connected().platforms().into_iter().find(|p| p.channel() == channel)
    }

    pub(super) async fn reply(&self, row: &InboxRow, text: &str) -> Result<(), StoreError> {
        self.answer(row, text, None).await
    }

    /// Queue the answer to a message, formatted and split for its platform; the first piece
    /// replaces the live preview, if one is shown.
    pub(super) async fn answer(&self, row: &InboxRow, text: &str, replaces: Option<&str>) -> Result<(), StoreError> {
        let (channel, chat) = (row.message.channel, &row.message.chat_id);
        let Some(platform) = self.platform(channel) else { return Ok(()) };
        tables::queue_reply(&self.store, channel, chat, Some(row.id), &platform.pieces(text), None, replaces).await?;
        self.wake_sender(channel);
        Ok(())
    }

    /// Handle one inbox message; `chat` is what is known of its chat already, if anything.
    async fn handle(
        self: &Arc<Self>,
        platform: &Arc<dyn Platform>,
        row: InboxRow,
        chat: Option<tables::ChatRow>,
    ) -> Result<Handled, StoreError> {
        let message = &row.message;
        let chat = match chat {
            Some(chat) => chat,
            None => tables::chat(&self.store, message.channel, &message.chat_id).await?,
        };
        let (command, argument) = match message.kind {
            Kind::Command => {
                let mut words = message.text.splitn(2, char::is_whitespace);
                // `/start@pryx_bot` in groups names the bot.
                let command = words.next().unwrap_or("").split('@').next().unwrap_or("").to_ascii_lowercase();
                (Some(command), words.next().unwrap_or("").trim().to_owned())
            }
            _ => (None, String::new()),
        };
        if !chat.paired && !platform.allowed(&message.chat_id) {
            // `/start CODE` (Telegram's deep link), or the code on its own (WhatsApp).
            let code = match (message.kind, command.as_deref()) {
                (Kind::Command, Some("/start")) => argument.to_ascii_uppercase(),
                (Kind::Text, _) => message.text.trim().to_ascii_uppercase(),
                _ => String::new(),
            };
            if (8..=16).contains(&code.len())
                && code.bytes().all(|b| b.is_ascii_alphanumeric())
                && tables::redeem_pairing_code(&self.store, message.channel, &code, &message.chat_id).await?
            {
                tracing::info!(target: "pryx::channels", chat = %message.chat_id, "a chat was paired");
                self.setup.changed();
                let welcome = format!("Paired: this chat now talks to your Pryx.\n\n{HELP}");
                return self.reply(&row, &welcome).await.map(|()| Handled::Done);
            }
            // One polite refusal per chat; the rest is recorded and dropped.
            if chat.refused {
                return Ok(Handled::RefusedQuietly(row.id, chat));
            }
            tracing::warn!(target: "pryx::channels", chat = %message.chat_id, "refused a message from a chat that is not paired");
            tables::mark_refused(&self.store, message.channel, &message.chat_id).await?;
            tables::mark(&self.store, row.id, InboxStatus::Refused, None, Some(NOT_PAIRED)).await?;
            tables::queue_reply(
                &self.store,
                message.channel,
                &message.chat_id,
                None,
                &platform.pieces(REFUSAL),
                None,
                None,
            )
            .await?;
            self.wake_sender(row.message.channel);
            return Ok(Handled::Done);
        }
        let handled = match (message.kind, command.as_deref()) {
            (Kind::Unsupported, _) => {
                let text =
                    format!("I can only read text for now, so I cannot use {}. Please write it out.", message.text);
                self.reply(&row, &text).await
            }
            (Kind::Command, Some("/start" | "/help")) => self.reply(&row, HELP).await,
            (Kind::Command, Some("/new")) => {
                let session = self.new_session(message).await?;
                tables::set_chat_session(&self.store, message.channel, &message.chat_id, &session).await?;
                self.reply(&row, "Started a new conversation.").await
            }
            (Kind::Command, Some("/stop")) => {
                let turn = self.running.lock().unwrap_or_else(|p| p.into_inner()).get(&message.chat_id).cloned();
                let stopped = match turn {
                    Some(turn) => self.agent.turns().cancel(&turn).await.unwrap_or(false),
                    None => false,
                };
                self.reply(&row, if stopped { "Stopped." } else { "Nothing is running." }).await
            }
            (Kind::Command, _) => self.reply(&row, &format!("I do not know that command.\n\n{HELP}")).await,
            (Kind::Button, _) => self.pressed(platform, &row, chat.session_id.as_deref()).await,
            (Kind::Text, _) => self.start_turn(row, chat.session_id).await,
        };
        handled.map(|()| Handled::Done)
    }

    async fn new_session(&self, message: &InboundMessage) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let who = if message.sender_name.is_empty() { "chat".to_owned() } else { message.sender_name.clone() };
        let platform = if message.channel == ChannelName::Whatsapp { "WhatsApp" } else { "Telegram" };
        self.store.create_session(&id, &format!("{platform} · {who}"), message.channel.into()).await?;
        Ok(id)
    }

    pub(super) async fn start_turn(self: &Arc<Self>, row: InboxRow, session: Option<String>) -> Result<(), StoreError> {
        let message = &row.message;
        let session = match session {
            Some(session) if self.store.session(&session).await.is_ok() => session,
            _ => {
                let session = self.new_session(message).await?;
                tables::set_chat_session(&self.store, message.channel, &message.chat_id, &session).await?;
                session
            }
        };
        let started = match self.agent.turns().send(&session, message.text.clone()).await {
            Ok(started) => started,
            // The message waits in the inbox until the owner resumes the agent.
            Err(crate::agent::AgentError::Paused) => return Ok(()),
            Err(e) => return self.reply(&row, &format!("Sorry, I could not take that: {e}")).await,
        };
        tables::mark(&self.store, row.id, InboxStatus::Started, Some(&started.turn_id), None).await?;
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(message.chat_id.clone(), started.turn_id.clone());
        let channels = self.clone();
        self.tasks.spawn(async move { channels.follow(row, started.turn_id).await });
        Ok(())
    }

    /// Wait for a turn's end, keeping "typing…" up, and queue its answer.
    async fn follow(self: Arc<Self>, row: InboxRow, turn_id: String) {
        let (tx, mut rx) = mpsc::channel(256);
        let agent = self.agent.clone();
        let follow_id = turn_id.clone();
        tokio::spawn(async move { agent.turns().follow_turn(&follow_id, tx).await });
        let mut typing = tokio::time::interval(TYPING_EVERY);
        // The answer so far, shown by editing one message at most once a second.
        let mut preview_tick = tokio::time::interval(PREVIEW_EVERY);
        let (mut draft, mut shown, mut preview): (String, usize, Option<String>) = (String::new(), 0, None);
        let end = loop {
            tokio::select! {
                envelope = rx.recv() => match envelope {
                    Some(envelope) if envelope.event.is_terminal() => break Some(envelope.event),
                    Some(envelope) => match envelope.event {
                        TurnEvent::Delta { text } => draft.push_str(&text),
                        // A new step starts a new text; the preview follows it.
                        TurnEvent::ToolCall { .. } => draft.clear(),
                        TurnEvent::ApprovalRequested { approval } => {
                            if let Err(e) = self.ask_approval(&row, &approval).await {
                                tracing::error!(target: "pryx::channels", "cannot ask for an approval: {e}");
                            }
                        }
                        _ => {}
                    },
                    None => break None,
                },
                _ = preview_tick.tick() => {
                    let text = draft.trim();
                    if !text.is_empty() && draft.len() != shown && text.chars().count() < format::MESSAGE_LIMIT - 10 {
                        if let Some(platform) = self.platform(row.message.channel) {
                            let id = platform.preview(&row.message.chat_id, preview.as_deref(), &format!("{text} …")).await;
                            if preview.is_none() {
                                if let Some(id) = &id {
                                    // Kept, so a restart can replace a preview it cut short.
                                    let _ = tables::set_preview(&self.store, row.id, id).await;
                                }
                            }
                            preview = id.or(preview);
                            shown = draft.len();
                        }
                    }
                }
                _ = typing.tick() => {
                    if let Some(platform) = self.platform(row.message.channel) {
                        platform.typing(&row.message.chat_id).await;
                    }
                }
                _ = self.shutdown.cancelled() => return,
            }
        };
        let text = match end {
            Some(TurnEvent::Done { status: TurnStatus::Completed, message_id: Some(id) }) => {
                match self.store.message(id).await {
                    Ok(message) if !message.content.trim().is_empty() => message.content,
                    _ => "(I have nothing to say to that.)".to_owned(),
                }
            }
            Some(TurnEvent::Done { status: TurnStatus::Cancelled, .. }) => "(stopped)".to_owned(),
            Some(TurnEvent::Done { .. }) | None => {
                "I was interrupted while answering this; please send it again.".into()
            }
            Some(TurnEvent::Error { message, .. }) => format!("Sorry, that failed: {message}"),
            Some(_) => return,
        };
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.get(&row.message.chat_id) == Some(&turn_id) {
                running.remove(&row.message.chat_id);
            }
        }
        if let Err(e) = self.answer(&row, &text, preview.as_deref()).await {
            tracing::error!(target: "pryx::channels", "cannot queue an answer: {e}");
        }
    }

    /// Ask the chat to approve a tool call, with Allow / Deny buttons.
    async fn ask_approval(&self, row: &InboxRow, approval: &pryx_api::Approval) -> Result<(), StoreError> {
        let Some(platform) = self.platform(row.message.channel) else { return Ok(()) };
        let text = format!("Pryx asks to {} (`{}`). Allow it?", approval.summary, approval.tool);
        let buttons = [("once", "Allow once"), ("session", "Allow in this chat"), ("deny", "Deny")]
            .map(|(decision, title)| Button { id: format!("ap:{}:{decision}", approval.id), title: title.into() });
        let buttons = serde_json::to_string(&buttons).unwrap_or_default();
        let pieces = platform.pieces(&text);
        tables::queue_reply(
            &self.store,
            row.message.channel,
            &row.message.chat_id,
            None,
            &pieces,
            Some(&buttons),
            None,
        )
        .await?;
        self.wake_sender(row.message.channel);
        Ok(())
    }

    /// A button press: today only approval answers (`ap:ID:once|session|deny`), and only for
    /// approvals of this chat's own session.
    async fn pressed(
        &self,
        platform: &Arc<dyn Platform>,
        row: &InboxRow,
        session: Option<&str>,
    ) -> Result<(), StoreError> {
        let answer = match row.message.text.split(':').collect::<Vec<_>>()[..] {
            ["ap", id, decision] => {
                let decision = match decision {
                    "once" => Some(ApprovalDecision::AllowOnce),
                    "session" => Some(ApprovalDecision::AllowForSession),
                    "deny" => Some(ApprovalDecision::Deny),
                    _ => None,
                };
                let approval = self.agent.approval(id).await.ok();
                match (decision, approval) {
                    (Some(decision), Some(approval)) if Some(approval.session_id.as_str()) == session => {
                        let by = format!("{}:{}", row.message.channel, row.message.sender_id);
                        match self.agent.answer_approval(id, decision, None, Some(by)).await {
                            Ok(_) if decision == ApprovalDecision::Deny => "Denied.".to_owned(),
                            Ok(_) => "Allowed.".to_owned(),
                            Err(e) => format!("Not taken: {e}"),
                        }
                    }
                    _ => "That request is not one of this chat's.".to_owned(),
                }
            }
            _ => "That button does nothing any more.".to_owned(),
        };
        if let Some(token) = &row.message.reply_token {
            platform.acknowledge(token, &answer).await;
        }
        self.reply(row, &answer).await
    }

    /// Messages whose turn was under way when Pryx stopped: tell their chats, once.
    /// Once per start and platform: turns that run now are not interrupted ones.
    pub(super) async fn recover_interrupted(&self, channel: ChannelName) -> Result<(), StoreError> {
        if !self.recovered.lock().unwrap_or_else(|p| p.into_inner()).insert(channel) {
            return Ok(());
        }
        for row in tables::inbox_with_status(&self.store, channel, InboxStatus::Started).await? {
            let text = "I was interrupted while answering this (Pryx restarted); please send it again.";
            self.answer(&row, text, row.preview_message_id.as_deref()).await?;
        }
        Ok(())
    }
}

/// Wait until the agent goes from paused to running; `was_paused` is how it was when the
/// inbox was last read (a resume since then returns at once).
async fn wait_until_resumed(activity: &mut tokio::sync::watch::Receiver<pryx_api::Activity>, mut was_paused: bool) {
    loop {
        let paused = activity.borrow_and_update().paused;
        if was_paused && !paused {
            return;
        }
        was_paused = paused;
        if activity.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
