//! The store: every conversation, in `pryx.db` under the data dir (telemetry spans live
//! apart, in `telemetry.db`: see `telemetry::history`).
//!
//! SQLite runs in WAL mode with `synchronous = FULL`, so a row is on disk when its commit
//! returns: a user message is committed before its turn starts, and a kill -9 loses nothing
//! that was acknowledged. Migrations in `migrations/` are embedded at build time with
//! `sqlx::migrate!` and queries are checked at run time, so building needs no database.
//!
//! Invariant: a message is `streaming` only while a live turn writes it. At every start,
//! [`Store::recover_interrupted`] turns leftovers of a dead process into `interrupted`.

use std::path::Path;
use std::time::Duration;

use pryx_api::{
    from_wire_name, wire_name, Message, MessageStatus, Role, Session, Surface, ToolCall, TurnStatus, Usage,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A crash record, as kept for `pryx doctor` and tests.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Crash {
    pub at: i64,
    pub scope: String,
    pub turn_id: Option<String>,
    pub message: String,
    pub backtrace: String,
}

/// A turn's stored outcome.
#[derive(Debug, Clone)]
pub struct TurnRecord {
    pub id: String,
    pub session_id: String,
    pub status: TurnStatus,
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

/// SQLite's page cache of the writing connection, in KiB (`PRAGMA cache_size`).
pub const WRITER_CACHE_KIB: u32 = 2048;
/// SQLite's page cache of each reading connection, in KiB.
pub const READER_CACHE_KIB: u32 = 1024;
/// Reading connections, at most: with the writer, `pryx.db`'s caches hold at most
/// 2 + 4 × 1 = 6 MiB.
const READERS: u32 = 4;
/// A reading connection idle this long is closed, its cache with it; the next read opens one.
const READER_IDLE: Duration = Duration::from_secs(30);

/// Handle to the database; cheap to clone.
///
/// Writes go through one connection, reads through a few others. SQLite lets one writer
/// in at a time anyway, and a second writer that finds the lock taken sleeps in SQLite's
/// busy handler (1, 2, 5, 10 … 100 ms) instead of queueing: with several writing
/// connections a webhook's commit could wait tens of milliseconds behind a streaming turn's
/// save. One writing connection makes writers queue in order, in the process, and in WAL
/// mode readers never wait for it.
#[derive(Clone)]
pub struct Store {
    /// The only connection that writes (a pool of one, so writers queue for it in order).
    writer: SqlitePool,
    /// Connections that only read (`query_only`: a write through them is an error).
    reader: SqlitePool,
}

impl Store {
    /// Open (creating if needed) the database file and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Store> {
        crate::datadir::create_private_file(path).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // No `max_lifetime`: sqlx's default reopens every connection after 30 minutes, and
        // the soak saw each reopening take RSS up by tens of megabytes at once (caches and
        // prepared statements built anew while the old ones were still held).
        let writer = SqlitePoolOptions::new()
            .max_lifetime(None)
            .max_connections(1)
            .connect_with(options.clone().pragma("cache_size", format!("-{WRITER_CACHE_KIB}")))
            .await?;
        sqlx::migrate!("./migrations").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_lifetime(None)
            .max_connections(READERS)
            .min_connections(0)
            .idle_timeout(READER_IDLE)
            .connect_with(options.pragma("query_only", "ON").pragma("cache_size", format!("-{READER_CACHE_KIB}")))
            .await?;
        Ok(Store { writer, reader })
    }

    /// Let SQLite free what the writing connection caches (readers close when idle).
    pub async fn release_memory(&self) {
        let _ = sqlx::query("PRAGMA shrink_memory").execute(&self.writer).await;
    }

    /// The writing connection, for modules that own their own tables (approvals, channels).
    /// Hold it only for the statement or transaction at hand: another write waits for it.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The reading connections, for modules that own their own tables.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Flush and close every connection (checkpoints the WAL).
    pub async fn close(&self) {
        self.reader.close().await;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.writer).await;
        self.writer.close().await;
    }

    /// Mark what a dead process left mid-flight as interrupted. Returns how many turns.
    pub async fn recover_interrupted(&self) -> Result<u64> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE messages SET status = 'interrupted', updated_at = ? WHERE status = 'streaming'")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let turns = sqlx::query(
            "UPDATE turns SET status = 'interrupted', finished_at = ?, \
             error = 'the agent stopped while this turn ran' WHERE status = 'running'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(turns)
    }

    // ---- sessions ----

    pub async fn create_session(&self, id: &str, title: &str, channel: Surface) -> Result<Session> {
        let now = now_ms();
        sqlx::query("INSERT INTO sessions (id, title, channel, created_at, updated_at) VALUES (?, ?, ?, ?, ?)")
            .bind(id)
            .bind(title)
            .bind(channel.as_str())
            .bind(now)
            .bind(now)
            .execute(&self.writer)
            .await?;
        self.session(id).await
    }

    const SESSION_COLUMNS: &'static str = "s.id, s.title, s.channel, s.created_at, s.updated_at, s.message_count";

    pub async fn session(&self, id: &str) -> Result<Session> {
        let sql = format!("SELECT {} FROM sessions s WHERE s.id = ?", Self::SESSION_COLUMNS);
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.reader).await?;
        row.map(|r| session_from_row(&r)).transpose()?.ok_or_else(|| StoreError::NotFound(format!("session {id}")))
    }

    /// Every session, the most recently active first.
    pub async fn sessions(&self) -> Result<Vec<Session>> {
        let sql = format!("SELECT {} FROM sessions s ORDER BY s.updated_at DESC, s.id", Self::SESSION_COLUMNS);
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await?;
        rows.iter().map(session_from_row).collect()
    }

    pub async fn rename_session(&self, id: &str, title: &str) -> Result<Session> {
        let done = sqlx::query("UPDATE sessions SET title = ?, updated_at = ? WHERE id = ?")
            .bind(title)
            .bind(now_ms())
            .bind(id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("session {id}")));
        }
        self.session(id).await
    }

    pub async fn delete_session(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = ?").bind(id).execute(&self.writer).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("session {id}")));
        }
        Ok(())
    }

    // ---- turns and messages ----

    /// Commit a user message and the turn that will answer it, atomically.
    pub async fn start_turn(&self, session_id: &str, turn_id: &str, text: &str) -> Result<Message> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let touched = sqlx::query("UPDATE sessions SET updated_at = ? WHERE id = ?")
            .bind(now)
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("session {session_id}")));
        }
        sqlx::query("INSERT INTO turns (id, session_id, status, started_at) VALUES (?, ?, 'running', ?)")
            .bind(turn_id)
            .bind(session_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let new =
            NewMessage { session_id, turn_id, role: "user", content: text, tool_call_id: None, status: "complete" };
        let id = insert_message(&mut *tx, new).await?;
        tx.commit().await?;
        self.message(id).await
    }

    /// Record how a turn ended.
    pub async fn finish_turn(&self, turn_id: &str, status: TurnStatus, error: Option<(&str, &str)>) -> Result<()> {
        sqlx::query("UPDATE turns SET status = ?, error_kind = ?, error = ?, finished_at = ? WHERE id = ?")
            .bind(wire_name(&status))
            .bind(error.map(|e| e.0))
            .bind(error.map(|e| e.1))
            .bind(now_ms())
            .bind(turn_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn turn(&self, turn_id: &str) -> Result<TurnRecord> {
        let row = sqlx::query("SELECT id, session_id, status, error_kind, error FROM turns WHERE id = ?")
            .bind(turn_id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("turn {turn_id}")))?;
        Ok(TurnRecord {
            id: row.try_get("id")?,
            session_id: row.try_get("session_id")?,
            status: parse_wire(&row.try_get::<String, _>("status")?)?,
            error_kind: row.try_get("error_kind")?,
            error: row.try_get("error")?,
        })
    }

    /// Start an assistant message that will grow as the model streams.
    pub async fn begin_assistant(&self, session_id: &str, turn_id: &str) -> Result<i64> {
        let new =
            NewMessage { session_id, turn_id, role: "assistant", content: "", tool_call_id: None, status: "streaming" };
        insert_message(&self.writer, new).await
    }

    /// Save the text streamed so far (the message stays `streaming`). Only touches a message
    /// that is still streaming, so a late save can never overwrite a final state.
    pub async fn save_partial(&self, message_id: i64, content: &str) -> Result<()> {
        sqlx::query("UPDATE messages SET content = ?, updated_at = ? WHERE id = ? AND status = 'streaming'")
            .bind(content)
            .bind(now_ms())
            .bind(message_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Write an assistant message's final state.
    pub async fn finish_assistant(
        &self,
        message_id: i64,
        content: &str,
        tool_calls: &[ToolCall],
        status: MessageStatus,
        error: Option<&str>,
        usage: Option<Usage>,
    ) -> Result<()> {
        let calls = if tool_calls.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&tool_calls.iter().map(CallRow::from).collect::<Vec<_>>())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )
        };
        sqlx::query(
            "UPDATE messages SET content = ?, tool_calls = ?, status = ?, error = ?, \
             prompt_tokens = ?, completion_tokens = ?, updated_at = ? WHERE id = ?",
        )
        .bind(content)
        .bind(calls)
        .bind(wire_name(&status))
        .bind(error)
        .bind(usage.map(|u| u.prompt_tokens as i64))
        .bind(usage.map(|u| u.completion_tokens as i64))
        .bind(now_ms())
        .bind(message_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Store what a tool answered to one call.
    pub async fn add_tool_result(&self, session_id: &str, turn_id: &str, call_id: &str, output: &str) -> Result<i64> {
        let new = NewMessage {
            session_id,
            turn_id,
            role: "tool",
            content: output,
            tool_call_id: Some(call_id),
            status: "complete",
        };
        insert_message(&self.writer, new).await
    }

    /// Mark whatever a turn was still writing as failed (after a panic), keeping its text.
    pub async fn fail_streaming(&self, turn_id: &str, error: &str) -> Result<()> {
        sqlx::query("UPDATE messages SET status = 'failed', error = ?, updated_at = ? WHERE turn_id = ? AND status = 'streaming'")
            .bind(error)
            .bind(now_ms())
            .bind(turn_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn message(&self, id: i64) -> Result<Message> {
        let row = sqlx::query(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
        message_from_row(&row)
    }

    /// A session's messages, oldest first.
    pub async fn messages(&self, session_id: &str) -> Result<Vec<Message>> {
        let rows = sqlx::query(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY id"))
            .bind(session_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(message_from_row).collect()
    }

    // ---- crashes ----

    pub async fn record_crash(&self, scope: &str, turn_id: Option<&str>, message: &str, backtrace: &str) -> Result<()> {
        sqlx::query("INSERT INTO crashes (at, scope, turn_id, message, backtrace) VALUES (?, ?, ?, ?, ?)")
            .bind(now_ms())
            .bind(scope)
            .bind(turn_id)
            .bind(message)
            .bind(backtrace)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn crashes(&self) -> Result<Vec<Crash>> {
        let sql = "SELECT at, scope, turn_id, message, backtrace FROM crashes ORDER BY id";
        Ok(sqlx::query_as::<_, Crash>(sql).fetch_all(&self.reader).await?)
    }
}

/// The columns a new message row is written with.
struct NewMessage<'a> {
    session_id: &'a str,
    turn_id: &'a str,
    role: &'static str,
    content: &'a str,
    tool_call_id: Option<&'a str>,
    status: &'static str,
}

async fn insert_message<'e>(db: impl sqlx::SqliteExecutor<'e>, new: NewMessage<'_>) -> Result<i64> {
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO messages (session_id, turn_id, role, content, tool_call_id, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(new.session_id)
    .bind(new.turn_id)
    .bind(new.role)
    .bind(new.content)
    .bind(new.tool_call_id)
    .bind(new.status)
    .bind(now)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.last_insert_rowid())
}

/// A stored status or role, read back through its wire name.
pub(crate) fn parse_wire<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    from_wire_name(text).ok_or_else(|| StoreError::Corrupt(format!("unknown value `{text}`")))
}

const MESSAGE_COLUMNS: &str = "id, session_id, turn_id, role, content, tool_calls, tool_call_id, status, \
    error, prompt_tokens, completion_tokens, created_at, updated_at";

/// The stored JSON shape of one tool call.
#[derive(serde::Serialize, serde::Deserialize)]
struct CallRow {
    id: String,
    name: String,
    arguments: String,
}

impl From<&ToolCall> for CallRow {
    fn from(c: &ToolCall) -> Self {
        CallRow { id: c.id.clone(), name: c.name.clone(), arguments: c.arguments.clone() }
    }
}

fn session_from_row(row: &SqliteRow) -> Result<Session> {
    Ok(Session {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        channel: parse_wire(&row.try_get::<String, _>("channel")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        message_count: row.try_get("message_count")?,
    })
}

fn message_from_row(row: &SqliteRow) -> Result<Message> {
    let role: Role = parse_wire(&row.try_get::<String, _>("role")?)?;
    let status = parse_wire(&row.try_get::<String, _>("status")?)?;
    let tool_calls = match row.try_get::<Option<String>, _>("tool_calls")? {
        Some(json) => serde_json::from_str::<Vec<CallRow>>(&json)
            .map_err(|e| StoreError::Corrupt(format!("tool_calls: {e}")))?
            .into_iter()
            .map(|c| ToolCall { id: c.id, name: c.name, arguments: c.arguments })
            .collect(),
        None => Vec::new(),
    };
    let prompt: Option<i64> = row.try_get("prompt_tokens")?;
    let completion: Option<i64> = row.try_get("completion_tokens")?;
    let usage = match (prompt, completion) {
        (None, None) => None,
        (p, c) => {
            let (p, c) = (p.unwrap_or(0) as u64, c.unwrap_or(0) as u64);
            Some(Usage { prompt_tokens: p, completion_tokens: c, total_tokens: p + c })
        }
    };
    Ok(Message {
        id: row.try_get("id")?,
        session_id: row.try_get("session_id")?,
        turn_id: row.try_get("turn_id")?,
        role,
        content: row.try_get("content")?,
        tool_calls,
        tool_call_id: row.try_get("tool_call_id")?,
        status,
        error: row.try_get("error")?,
        usage,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("pryx.db")).await.unwrap();
        (dir, store)
    }

    /// Read all of `sql` through one connection of `pool`; returns the bytes that
    /// connection's page cache holds then (SQLite's own figure).
    async fn cache_after(pool: &SqlitePool, sql: &str) -> i32 {
        let mut connection = pool.acquire().await.unwrap();
        sqlx::query(sql).fetch_all(&mut *connection).await.unwrap();
        let mut handle = connection.lock_handle().await.unwrap();
        let (mut current, mut highest) = (0, 0);
        // SAFETY: the handle is a live connection, locked for this call.
        let status = unsafe {
            libsqlite3_sys::sqlite3_db_status(
                handle.as_raw_handle().as_ptr(),
                libsqlite3_sys::SQLITE_DBSTATUS_CACHE_USED,
                &mut current,
                &mut highest,
                0,
            )
        };
        assert_eq!(status, libsqlite3_sys::SQLITE_OK);
        current
    }

    #[tokio::test]
    async fn sessions_are_listed_newest_first_with_their_titles_as_written() {
        let (_dir, store) = store().await;
        let awkward = "Plans \"2027\"\n\\ naïve 🦀 <b>&amp;</b>";
        store.create_session("a", "first", Surface::Local).await.unwrap();
        store.create_session("b", awkward, Surface::Telegram).await.unwrap();
        store.start_turn("a", "t1", "hello").await.unwrap();
        sqlx::query("UPDATE sessions SET updated_at = 5 WHERE id = 'b'").execute(store.writer()).await.unwrap();
        let sessions = store.sessions().await.unwrap();
        assert_eq!(sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(sessions[0].message_count, 1);
        assert_eq!(sessions[1], store.session("b").await.unwrap());
        assert_eq!((sessions[1].title.as_str(), sessions[1].channel), (awkward, Surface::Telegram));
        store.delete_session("a").await.unwrap();
        store.delete_session("b").await.unwrap();
        assert!(store.sessions().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn page_caches_stay_within_their_caps_over_a_large_history() {
        let (_dir, store) = store().await;
        // About 16 MB of rows, far more than any cache may hold, read whole by each connection.
        sqlx::raw_sql(
            "CREATE TABLE filler (x BLOB); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) \
             INSERT INTO filler SELECT randomblob(4000) FROM n;",
        )
        .execute(store.writer())
        .await
        .unwrap();
        // (The insert filled the writer's cache with the temporary tables it used too.)
        store.release_memory().await;
        let read_all = "SELECT SUM(LENGTH(x)) FROM filler";
        cache_after(store.writer(), read_all).await;
        let reader = cache_after(store.reader(), read_all).await;
        let writer = cache_after(store.writer(), "SELECT 1").await;
        // SQLite's caches share one pool of pages, as large as their caps together: one
        // connection may hold more than its own cap while the others hold less. Each page
        // is counted with its bookkeeping (a few hundred bytes per 4 KiB page).
        let cap = ((WRITER_CACHE_KIB + READER_CACHE_KIB) as i32) * 1024 * 5 / 4;
        assert!(writer + reader > 2 << 20, "the caches hold {writer} + {reader} bytes");
        assert!(writer + reader <= cap, "the caches hold {writer} + {reader} bytes, more than {cap}");
        store.release_memory().await;
        assert!(cache_after(store.writer(), "SELECT 1").await < 64 << 10, "the writer's cache was freed");
    }

    #[tokio::test]
    async fn a_turn_keeps_its_user_message_and_growing_answer() {
        let (_dir, store) = store().await;
        store.create_session("s1", "Chat", Surface::Local).await.unwrap();
        let user = store.start_turn("s1", "t1", "hello").await.unwrap();
        assert_eq!((user.role, user.content.as_str()), (Role::User, "hello"));

        let answer = store.begin_assistant("s1", "t1").await.unwrap();
        store.save_partial(answer, "Hel").await.unwrap();
        assert_eq!(store.message(answer).await.unwrap().status, MessageStatus::Streaming);
        store.finish_assistant(answer, "Hello!", &[], MessageStatus::Complete, None, None).await.unwrap();

        let messages = store.messages("s1").await.unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].content, "Hello!");
        assert_eq!(store.session("s1").await.unwrap().message_count, 2);
    }

    #[tokio::test]
    async fn recovery_marks_leftovers_interrupted_and_keeps_partial_text() {
        let (_dir, store) = store().await;
        store.create_session("s1", "Chat", Surface::Local).await.unwrap();
        store.start_turn("s1", "t1", "hello").await.unwrap();
        let answer = store.begin_assistant("s1", "t1").await.unwrap();
        store.save_partial(answer, "partial").await.unwrap();

        assert_eq!(store.recover_interrupted().await.unwrap(), 1);
        let message = store.message(answer).await.unwrap();
        assert_eq!((message.status, message.content.as_str()), (MessageStatus::Interrupted, "partial"));
        assert_eq!(store.turn("t1").await.unwrap().status, TurnStatus::Interrupted);
    }

    #[tokio::test]
    async fn a_turn_for_a_missing_session_stores_nothing() {
        let (_dir, store) = store().await;
        assert!(matches!(store.start_turn("nope", "t1", "hi").await, Err(StoreError::NotFound(_))));
        assert!(store.turn("t1").await.is_err());
    }

    #[tokio::test]
    async fn deleting_a_session_deletes_its_messages() {
        let (_dir, store) = store().await;
        store.create_session("s1", "Chat", Surface::Local).await.unwrap();
        let user = store.start_turn("s1", "t1", "hello").await.unwrap();
        store.delete_session("s1").await.unwrap();
        assert!(store.message(user.id).await.is_err());
        assert!(matches!(store.delete_session("s1").await, Err(StoreError::NotFound(_))));
    }

    #[tokio::test]
    async fn tool_calls_round_trip() {
        let (_dir, store) = store().await;
        store.create_session("s1", "Chat", Surface::Local).await.unwrap();
        store.start_turn("s1", "t1", "time?").await.unwrap();
        let answer = store.begin_assistant("s1", "t1").await.unwrap();
        let calls = vec![ToolCall { id: "c1".into(), name: "time_now".into(), arguments: "{}".into() }];
        let usage = Usage { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 };
        store.finish_assistant(answer, "", &calls, MessageStatus::Complete, None, Some(usage)).await.unwrap();
        store.add_tool_result("s1", "t1", "c1", "12:00").await.unwrap();
        let messages = store.messages("s1").await.unwrap();
        assert_eq!(messages[1].tool_calls, calls);
        assert_eq!(messages[1].usage, Some(usage));
        assert_eq!(messages[2].tool_call_id.as_deref(), Some("c1"));
    }
}
