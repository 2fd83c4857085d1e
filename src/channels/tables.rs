//! The channel tables (migration 0004): inbox, outbox, paired chats, pairing codes and
//! cursors. All SQL of the channels lives here; nothing else touches these tables.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use pryx_api::ChannelName;

use super::format::Piece;
use crate::store::{now_ms, parse_wire, Result, Store};

/// What kind of message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A `/command`.
    Command,
    /// Stickers, voice, files…: answered with a note that they are not supported.
    Unsupported,
    /// A press on a button Pryx sent; the text is the button's id.
    Button,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Command => "command",
            Kind::Unsupported => "unsupported",
            Kind::Button => "button",
        }
    }
    fn parse(text: &str) -> Kind {
        match text {
            "command" => Kind::Command,
            "unsupported" => Kind::Unsupported,
            "button" => Kind::Button,
            _ => Kind::Text,
        }
    }
}

/// A platform message, as every channel hands it to the inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    pub channel: ChannelName,
    /// The platform's id for this delivery; a redelivery has the same one.
    pub platform_id: String,
    pub chat_id: String,
    pub sender_id: String,
    pub sender_name: String,
    pub kind: Kind,
    /// The text (for `Unsupported`, what it was: "a sticker"; for `Button`, its id).
    pub text: String,
    /// What the platform wants back to close the interaction (Telegram's callback id).
    pub reply_token: Option<String>,
}

/// An inbox row still to be handled.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub id: i64,
    pub message: InboundMessage,
    /// The live preview shown for its answer, if any.
    pub preview_message_id: Option<String>,
}

/// Commit messages to the inbox in one transaction (one disk sync for the lot). For each,
/// whether it was new (`false`: a redelivery, already there).
pub async fn accept_all(store: &Store, messages: &[&InboundMessage]) -> Result<Vec<bool>> {
    let mut tx = store.writer().begin().await?;
    let now = now_ms();
    let mut new = Vec::with_capacity(messages.len());
    for message in messages {
        let result = sqlx::query(
            "INSERT OR IGNORE INTO channel_inbox \
             (channel, platform_id, chat_id, sender_id, sender_name, kind, text, reply_token, received_at, status) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
        )
        .bind(message.channel.as_str())
        .bind(&message.platform_id)
        .bind(&message.chat_id)
        .bind(&message.sender_id)
        .bind(&message.sender_name)
        .bind(message.kind.as_str())
        .bind(&message.text)
        .bind(&message.reply_token)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        new.push(result.rows_affected() == 1);
    }
    tx.commit().await?;
    Ok(new)
}

fn inbox_row(channel: ChannelName, row: &SqliteRow) -> Result<InboxRow> {
    Ok(InboxRow {
        id: row.try_get("id")?,
        preview_message_id: row.try_get("preview_message_id")?,
        message: InboundMessage {
            channel,
            platform_id: row.try_get("platform_id")?,
            chat_id: row.try_get("chat_id")?,
            sender_id: row.try_get("sender_id")?,
            sender_name: row.try_get("sender_name")?,
            kind: Kind::parse(row.try_get::<&str, _>("kind")?),
            text: row.try_get("text")?,
            reply_token: row.try_get("reply_token")?,
        },
    })
}

/// Where an inbox row is in the pipeline (`channel_inbox.status`; the schema's CHECK also
/// allows `ignored`, which nothing writes). The outbox's statuses are `pryx_api::ReplyStatus`;
/// queries that look for `pending` rows name it literally, because SQLite uses a partial
/// index (`… WHERE status = 'pending'`) only for a query that states its condition as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxStatus {
    /// Committed, not yet dispatched.
    Pending,
    /// A turn answers it; the reply is not queued yet.
    Started,
    /// Its reply is queued in the outbox.
    Answered,
    /// From a chat that may not talk to Pryx.
    Refused,
}

impl InboxStatus {
    /// The value stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Pending => "pending",
            InboxStatus::Started => "started",
            InboxStatus::Answered => "answered",
            InboxStatus::Refused => "refused",
        }
    }
}

/// Rows in `status` of `channel`, oldest first.
pub async fn inbox_with_status(store: &Store, channel: ChannelName, status: InboxStatus) -> Result<Vec<InboxRow>> {
    let rows = sqlx::query(
        "SELECT id, platform_id, chat_id, sender_id, sender_name, kind, text, reply_token, preview_message_id \
         FROM channel_inbox WHERE channel = ? AND status = ? ORDER BY id",
    )
    .bind(channel.as_str())
    .bind(status.as_str())
    .fetch_all(store.reader())
    .await?;
    rows.iter().map(|row| inbox_row(channel, row)).collect()
}

/// Settle an inbox row (`started` with its turn, `refused`/`ignored` with a note).
pub async fn mark(
    store: &Store,
    id: i64,
    status: InboxStatus,
    turn_id: Option<&str>,
    note: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE channel_inbox SET status = ?, turn_id = COALESCE(?, turn_id), note = ? WHERE id = ?")
        .bind(status.as_str())
        .bind(turn_id)
        .bind(note)
        .bind(id)
        .execute(store.writer())
        .await?;
    Ok(())
}

/// Settle many inbox rows the same way (`refused`/`ignored` with a note), in one transaction.
pub async fn mark_all(store: &Store, ids: &[i64], status: InboxStatus, note: &str) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut tx = store.writer().begin().await?;
    for id in ids {
        sqlx::query("UPDATE channel_inbox SET status = ?, note = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(note)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Remember the live preview shown for a message's answer.
pub async fn set_preview(store: &Store, id: i64, message_id: &str) -> Result<()> {
    sqlx::query("UPDATE channel_inbox SET preview_message_id = ? WHERE id = ?")
        .bind(message_id)
        .bind(id)
        .execute(store.writer())
        .await?;
    Ok(())
}

/// Queue a reply (in pieces) and, in the same transaction, mark its inbox row answered:
/// a reply is either queued and recorded, or neither.
pub async fn queue_reply(
    store: &Store,
    channel: ChannelName,
    chat_id: &str,
    inbox_id: Option<i64>,
    pieces: &[Piece],
    buttons: Option<&str>,
    replaces: Option<&str>,
) -> Result<()> {
    let mut tx = store.writer().begin().await?;
    let now = now_ms();
    for (i, piece) in pieces.iter().enumerate() {
        // Only the first piece takes the place of the message shown so far.
        let replaces = if i == 0 { replaces } else { None };
        sqlx::query(
            "INSERT INTO channel_outbox \
             (channel, chat_id, inbox_id, body, plain, buttons, edit_message_id, status, next_attempt_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        )
        .bind(channel.as_str())
        .bind(chat_id)
        .bind(inbox_id)
        .bind(&piece.formatted)
        .bind(&piece.plain)
        .bind(buttons)
        .bind(replaces)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(id) = inbox_id {
        sqlx::query("UPDATE channel_inbox SET status = ? WHERE id = ?")
            .bind(InboxStatus::Answered.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A reply waiting to go out.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub chat_id: String,
    pub body: String,
    pub plain: String,
    /// JSON `[{"id", "title"}]`: choices to offer with the message.
    pub buttons: Option<String>,
    /// Edit this already shown message instead of sending a new one.
    pub edit_message_id: Option<String>,
    pub attempts: i64,
}

/// The next reply of each chat that is due, oldest chats first (one per chat keeps each
/// chat's replies in order).
pub async fn due_replies(store: &Store, channel: ChannelName, limit: i64) -> Result<Vec<OutboxRow>> {
    let rows = sqlx::query(
        "SELECT o.id, o.chat_id, o.body, o.plain, o.buttons, o.edit_message_id, o.attempts FROM channel_outbox o \
         WHERE o.channel = ? AND o.status = 'pending' AND o.next_attempt_at <= ? \
           AND o.id = (SELECT MIN(id) FROM channel_outbox p \
                       WHERE p.channel = o.channel AND p.chat_id = o.chat_id AND p.status = 'pending') \
         ORDER BY o.id LIMIT ?",
    )
    .bind(channel.as_str())
    .bind(now_ms())
    .bind(limit)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(OutboxRow {
                id: row.try_get("id")?,
                chat_id: row.try_get("chat_id")?,
                body: row.try_get("body")?,
                plain: row.try_get("plain")?,
                buttons: row.try_get("buttons")?,
                edit_message_id: row.try_get("edit_message_id")?,
                attempts: row.try_get("attempts")?,
            })
        })
        .collect()
}

/// When the next pending reply of `channel` is due, if any.
pub async fn next_due(store: &Store, channel: ChannelName) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM channel_outbox WHERE channel = ? AND status = 'pending'")
        .bind(channel.as_str())
        .fetch_one(store.reader())
        .await?)
}

pub async fn reply_sent(store: &Store, id: i64, platform_message_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE channel_outbox SET status = 'sent', attempts = attempts + 1, platform_message_id = ?, sent_at = ? \
         WHERE id = ?",
    )
    .bind(platform_message_id)
    .bind(now_ms())
    .bind(id)
    .execute(store.writer())
    .await?;
    Ok(())
}

pub async fn reply_retry(store: &Store, id: i64, at: i64, error: &str) -> Result<()> {
    sqlx::query("UPDATE channel_outbox SET attempts = attempts + 1, next_attempt_at = ?, error = ? WHERE id = ?")
        .bind(at)
        .bind(error)
        .bind(id)
        .execute(store.writer())
        .await?;
    Ok(())
}

pub async fn reply_failed(store: &Store, id: i64, error: &str) -> Result<()> {
    sqlx::query("UPDATE channel_outbox SET status = 'failed', attempts = attempts + 1, error = ? WHERE id = ?")
        .bind(error)
        .bind(id)
        .execute(store.writer())
        .await?;
    Ok(())
}

/// What the platform later said of a sent message (`sent`, `delivered`, `read`, `failed`
/// with why). Statuses may arrive out of order: a later stage never goes back to an earlier
/// one, and `failed` stands.
pub async fn reply_status(
    store: &Store,
    channel: ChannelName,
    platform_message_id: &str,
    status: &str,
    error: Option<&str>,
) -> Result<()> {
    const RANK: &str =
        "CASE {} WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 WHEN 'failed' THEN 4 ELSE 0 END";
    let sql = format!(
        "INSERT INTO channel_delivery_status (channel, platform_message_id, status, error, at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (channel, platform_message_id) DO UPDATE SET status = excluded.status, \
           error = COALESCE(excluded.error, error), at = excluded.at \
         WHERE {} >= {}",
        RANK.replace("{}", "excluded.status"),
        RANK.replace("{}", "channel_delivery_status.status"),
    );
    sqlx::query(&sql)
        .bind(channel.as_str())
        .bind(platform_message_id)
        .bind(status)
        .bind(error)
        .bind(now_ms())
        .execute(store.writer())
        .await?;
    Ok(())
}

/// Replies of a channel, newest first (for the API).
pub async fn replies(store: &Store, channel: ChannelName, limit: i64) -> Result<Vec<pryx_api::ChannelReply>> {
    let rows = sqlx::query(
        "SELECT o.id, o.chat_id, o.plain, \
           CASE WHEN d.status = 'failed' THEN 'failed' ELSE o.status END AS status, \
           o.attempts, COALESCE(d.error, o.error) AS error, o.created_at, o.sent_at, d.status AS platform_status \
         FROM channel_outbox o LEFT JOIN channel_delivery_status d \
           ON d.channel = o.channel AND d.platform_message_id = o.platform_message_id \
         WHERE o.channel = ? ORDER BY o.id DESC LIMIT ?",
    )
    .bind(channel.as_str())
    .bind(limit)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(pryx_api::ChannelReply {
                id: row.try_get("id")?,
                chat_id: row.try_get("chat_id")?,
                text: row.try_get("plain")?,
                status: parse_wire(&row.try_get::<String, _>("status")?)?,
                attempts: row.try_get("attempts")?,
                error: row.try_get("error")?,
                created_at: row.try_get("created_at")?,
                sent_at: row.try_get("sent_at")?,
                platform_status: row.try_get("platform_status")?,
            })
        })
        .collect()
}

/// What Pryx knows of a chat.
#[derive(Debug, Clone, Default)]
pub struct ChatRow {
    pub session_id: Option<String>,
    pub paired: bool,
    pub refused: bool,
}

pub async fn chat(store: &Store, channel: ChannelName, chat_id: &str) -> Result<ChatRow> {
    let row =
        sqlx::query("SELECT session_id, paired_at, refused_at FROM channel_chats WHERE channel = ? AND chat_id = ?")
            .bind(channel.as_str())
            .bind(chat_id)
            .fetch_optional(store.reader())
            .await?;
    Ok(match row {
        Some(row) => ChatRow {
            session_id: row.try_get("session_id")?,
            paired: row.try_get::<Option<i64>, _>("paired_at")?.is_some(),
            refused: row.try_get::<Option<i64>, _>("refused_at")?.is_some(),
        },
        None => ChatRow::default(),
    })
}

/// Set one column of a chat's row (creating the row).
async fn set_chat(
    store: &Store,
    channel: ChannelName,
    chat_id: &str,
    column: &str,
    value: Option<String>,
) -> Result<()> {
    // `column` is one of a fixed set chosen by the callers below, never input.
    let sql = format!(
        "INSERT INTO channel_chats (channel, chat_id, {column}) VALUES (?, ?, ?) \
         ON CONFLICT (channel, chat_id) DO UPDATE SET {column} = excluded.{column}"
    );
    sqlx::query(&sql).bind(channel.as_str()).bind(chat_id).bind(value).execute(store.writer()).await?;
    Ok(())
}

pub async fn set_chat_session(store: &Store, channel: ChannelName, chat_id: &str, session_id: &str) -> Result<()> {
    set_chat(store, channel, chat_id, "session_id", Some(session_id.to_owned())).await
}

pub async fn mark_refused(store: &Store, channel: ChannelName, chat_id: &str) -> Result<()> {
    set_chat(store, channel, chat_id, "refused_at", Some(now_ms().to_string())).await
}

/// Store a new pairing code for `channel`, valid until `expires_at`.
pub async fn add_pairing_code(store: &Store, channel: ChannelName, code: &str, expires_at: i64) -> Result<()> {
    sqlx::query("INSERT INTO channel_pairing_codes (code, channel, created_at, expires_at) VALUES (?, ?, ?, ?)")
        .bind(code)
        .bind(channel.as_str())
        .bind(now_ms())
        .bind(expires_at)
        .execute(store.writer())
        .await?;
    Ok(())
}

/// Use a pairing code for `chat_id`: `true` when it was valid, unused and unexpired; the
/// chat is then paired, in the same transaction.
pub async fn redeem_pairing_code(store: &Store, channel: ChannelName, code: &str, chat_id: &str) -> Result<bool> {
    let mut tx = store.writer().begin().await?;
    let used = sqlx::query(
        "UPDATE channel_pairing_codes SET used_by = ? \
         WHERE code = ? AND channel = ? AND used_by IS NULL AND expires_at > ?",
    )
    .bind(chat_id)
    .bind(code)
    .bind(channel.as_str())
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if used {
        sqlx::query(
            "INSERT INTO channel_chats (channel, chat_id, paired_at) VALUES (?, ?, ?) \
             ON CONFLICT (channel, chat_id) DO UPDATE SET paired_at = excluded.paired_at",
        )
        .bind(channel.as_str())
        .bind(chat_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(used)
}

pub async fn cursor(store: &Store, channel: ChannelName) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT value FROM channel_cursors WHERE channel = ?")
        .bind(channel.as_str())
        .fetch_optional(store.reader())
        .await?)
}

pub async fn set_cursor(store: &Store, channel: ChannelName, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO channel_cursors (channel, value) VALUES (?, ?) \
         ON CONFLICT (channel) DO UPDATE SET value = excluded.value",
    )
    .bind(channel.as_str())
    .bind(value)
    .execute(store.writer())
    .await?;
    Ok(())
}

/// What the Connections screen shows about a channel.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub paired_chats: u32,
    pub last_message_at: Option<i64>,
    pub failed_replies: u32,
}

pub async fn figures(store: &Store, channel: ChannelName) -> Result<Figures> {
    let paired: i64 =
        sqlx::query_scalar("SELECT count(*) FROM channel_chats WHERE channel = ? AND paired_at IS NOT NULL")
            .bind(channel.as_str())
            .fetch_one(store.reader())
            .await?;
    // The newest row through `channel_inbox_latest (channel, id)`, read from its end.
    let last: Option<i64> =
        sqlx::query_scalar("SELECT received_at FROM channel_inbox WHERE channel = ? ORDER BY id DESC LIMIT 1")
            .bind(channel.as_str())
            .fetch_optional(store.reader())
            .await?;
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM channel_outbox WHERE channel = ? AND status = 'failed'")
        .bind(channel.as_str())
        .fetch_one(store.reader())
        .await?;
    Ok(Figures {
        paired_chats: u32::try_from(paired).unwrap_or(u32::MAX),
        last_message_at: last,
        failed_replies: u32::try_from(failed).unwrap_or(u32::MAX),
    })
}
