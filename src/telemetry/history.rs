//! Span history: finished spans kept in `telemetry.db`, trimmed by age and count, read back
//! oldest first (all of them, or one session's).
//!
//! Spans are stored a batch to a row: the span writer stores what closed since its last
//! pass (about 250 ms) as one value, in the binary form of [`super::codec`]. Under webhook
//! load thousands of spans close every second, and a row per span cost SQLite more than
//! recording the span did (about 1.5 µs a row, against 0.1 µs a span in a batch). Spans
//! that belong to a session (a turn, its model calls and tools: a handful per turn) are
//! also kept one to a row in `session_spans`, so the Traces screen's "this session" view
//! reads only them.
//!
//! Every span gets a number, counting on from the previous batch; a batch's row id is its
//! first span's number. That makes "keep the newest `max_spans`" exact without counting
//! rows: batches wholly older than the newest `max_spans` are deleted, and the line is kept
//! in `span_trim`, with the age limit, so reads skip the part of a batch that straddles
//! either.
//!
//! Pages are 16 KiB, not SQLite's 4 KiB: a batch row is a few hundred KB, and SQLite's
//! cost in storing it goes by the page (each is written to the WAL, then checkpointed);
//! this cut storing a span by a sixth. Bigger pages gained nothing more and cost idle
//! memory (the page cache holds whole pages).
//!
//! Spans are disposable history, so this file has no migrations: a file of another
//! [`LAYOUT`] has its tables dropped and made anew (as the moves from a row per span, and
//! from JSON, did).

use std::collections::BinaryHeap;
use std::path::Path;

use futures::TryStreamExt;
use pryx_api::SpanRecord;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::codec::{self, DecodeError};
use super::{now_us, RecordedSpan};

/// Spans per stored row at most, so a read that needs a few spans parses little.
const SPANS_PER_ROW: usize = 1_000;

/// The layout of the tables below, kept in the file's `user_version`.
const LAYOUT: i64 = 2;

/// Bytes per page. A new file is made with it; an older file is rewritten to it.
const PAGE_SIZE: u32 = 16_384;
/// The connection's page cache, in KiB (`PRAGMA cache_size`).
pub const CACHE_KIB: u32 = 1024;

/// Drops whatever an earlier layout left, then makes the tables of this one.
const RESET: &str = "
DROP TABLE IF EXISTS spans;
DROP TABLE IF EXISTS span_batches;
DROP TABLE IF EXISTS session_spans;
DROP TABLE IF EXISTS span_trim;
CREATE TABLE span_batches (
    first_span      INTEGER PRIMARY KEY,   -- number of the first span in the batch
    span_count      INTEGER NOT NULL,
    first_start_us  INTEGER NOT NULL,      -- earliest start of a span in the batch
    last_start_us   INTEGER NOT NULL,      -- latest start
    spans           BLOB NOT NULL          -- the batch's spans (codec::encode)
);
CREATE INDEX span_batches_by_first_start ON span_batches(first_start_us);
CREATE INDEX span_batches_by_last_start ON span_batches(last_start_us);
CREATE TABLE session_spans (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT NOT NULL,
    start_us        INTEGER NOT NULL,
    span            BLOB NOT NULL          -- the span alone (codec::encode)
);
CREATE INDEX session_spans_by_session ON session_spans(session_id, start_us);
CREATE TABLE span_trim (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    kept_from       INTEGER NOT NULL,      -- number of the oldest span kept by count
    oldest_start_us INTEGER NOT NULL       -- spans that started earlier are past their age
);
";

/// Why span history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("span history: {0}")]
    Database(#[from] sqlx::Error),
    #[error("span history is corrupt: {0}")]
    Corrupt(#[from] DecodeError),
}

pub type Result<T, E = HistoryError> = std::result::Result<T, E>;

/// The stored spans; cheap to clone.
#[derive(Clone)]
pub struct SpanHistory {
    /// One connection to `telemetry.db` (which has nothing else in it).
    pool: SqlitePool,
}

/// How long and how many spans to keep (`[telemetry] retention_days`, `max_spans`).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub days: u32,
    pub max_spans: u32,
}

impl SpanHistory {
    /// Open (creating if needed, 0600) `telemetry.db` beside the database at `db_path`: a
    /// file of its own, so writing spans never takes the conversation data's write lock.
    pub async fn open_beside(db_path: &Path) -> Result<SpanHistory> {
        let path = db_path.with_file_name("telemetry.db");
        crate::datadir::create_private_file(&path).map_err(|e| HistoryError::Database(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        SpanHistory::open(options).await
    }

    /// Open `telemetry.db` with `options`, bringing its tables up to date. One connection,
    /// `synchronous = NORMAL`: spans may be lost on a power cut (never on a crash). The WAL
    /// is checkpointed every 256 pages (4 MiB, as SQLite's default of 1,000 does with 4 KiB
    /// pages) so it stays small on disk; the page cache holds at most [`CACHE_KIB`].
    pub async fn open(options: SqliteConnectOptions) -> Result<SpanHistory> {
        let options = options
            .page_size(PAGE_SIZE)
            .synchronous(SqliteSynchronous::Normal)
            .pragma("wal_autocheckpoint", "256")
            .pragma("cache_size", format!("-{CACHE_KIB}"));
        let pool = SqlitePoolOptions::new().max_lifetime(None).max_connections(1).connect_with(options).await?;
        // A file of this layout (every start but the first) is only read here, never written.
        let layout: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&pool).await?;
        if layout != LAYOUT {
            sqlx::raw_sql(&format!("{RESET} PRAGMA user_version = {LAYOUT};")).execute(&pool).await?;
        }
        // A new file is made with the page size; one made before it is rewritten once, after
        // the reset above has emptied it.
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&pool).await?;
        if page_size != i64::from(PAGE_SIZE) {
            // The page size can change only outside WAL mode, by rewriting the file.
            let repage = format!(
                "PRAGMA journal_mode = DELETE; PRAGMA page_size = {PAGE_SIZE}; VACUUM; PRAGMA journal_mode = WAL;"
            );
            sqlx::raw_sql(&repage).execute(&pool).await?;
        }
        Ok(SpanHistory { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Let SQLite free what the connection caches.
    pub async fn release_memory(&self) {
        let _ = sqlx::query("PRAGMA shrink_memory").execute(&self.pool).await;
    }

    /// Store finished spans (oldest first) in one transaction, then trim to `retention`.
    pub async fn add(&self, spans: &[RecordedSpan], retention: Retention) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut next: i64 =
            sqlx::query_scalar("SELECT first_span + span_count FROM span_batches ORDER BY first_span DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0);
        for batch in spans.chunks(SPANS_PER_ROW) {
            let first_start = batch.iter().map(|span| span.start_us).min().unwrap_or(0);
            let last_start = batch.iter().map(|span| span.start_us).max().unwrap_or(0);
            sqlx::query(
                "INSERT INTO span_batches (first_span, span_count, first_start_us, last_start_us, spans) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(next)
            .bind(batch.len() as i64)
            .bind(first_start)
            .bind(last_start)
            .bind(codec::encode(batch))
            .execute(&mut *tx)
            .await?;
            next += batch.len() as i64;
        }
        for span in spans {
            let Some(session_id) = &span.session_id else { continue };
            sqlx::query("INSERT INTO session_spans (session_id, start_us, span) VALUES (?, ?, ?)")
                .bind(session_id)
                .bind(span.start_us)
                .bind(codec::encode(std::slice::from_ref(span)))
                .execute(&mut *tx)
                .await?;
        }
        let trim = Trim {
            kept_from: next - i64::from(retention.max_spans),
            // Saturating: a config may say `retention_days = 4294967295` (keep everything).
            oldest_start_us: now_us().saturating_sub(i64::from(retention.days).saturating_mul(86_400 * 1_000_000)),
        };
        sqlx::query("DELETE FROM span_batches WHERE last_start_us < ?")
            .bind(trim.oldest_start_us)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM span_batches WHERE first_span < ? AND first_span + span_count <= ?")
            .bind(trim.kept_from)
            .bind(trim.kept_from)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT OR REPLACE INTO span_trim (id, kept_from, oldest_start_us) VALUES (1, ?, ?)")
            .bind(trim.kept_from)
            .bind(trim.oldest_start_us)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM session_spans WHERE start_us < ?")
            .bind(trim.oldest_start_us)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM session_spans WHERE seq <= (SELECT MAX(seq) FROM session_spans) - ?")
            .bind(i64::from(retention.max_spans))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stored spans that started at or after `since_us`, oldest first (ties in the order
    /// they ended): the earliest or the latest `limit` of them, as `keep` says; of one
    /// session if given.
    pub async fn query(
        &self,
        session_id: Option<&str>,
        since_us: i64,
        limit: u32,
        keep: Keep,
    ) -> Result<Vec<SpanRecord>> {
        match session_id {
            Some(session_id) => self.of_session(session_id, since_us, limit, keep).await,
            None => self.all(since_us, limit as usize, keep).await,
        }
    }

    async fn of_session(&self, session_id: &str, since_us: i64, limit: u32, keep: Keep) -> Result<Vec<SpanRecord>> {
        let order = match keep {
            Keep::Earliest => "start_us, seq",
            Keep::Latest => "start_us DESC, seq DESC",
        };
        let rows = sqlx::query(&format!(
            "SELECT span FROM session_spans WHERE session_id = ? AND start_us >= ? ORDER BY {order} LIMIT ?"
        ))
        .bind(session_id)
        .bind(since_us)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut spans = Vec::with_capacity(rows.len());
        for row in &rows {
            spans.extend(codec::decode(row.try_get("span")?)?);
        }
        if keep == Keep::Latest {
            spans.reverse();
        }
        Ok(spans)
    }

    /// Batches are read from the kept end inwards (by their earliest start for the earliest
    /// spans, by their latest start for the latest), keeping the `limit` best spans seen;
    /// once a batch lies wholly beyond the worst of those, no later batch can hold a better
    /// one, so reading stops there.
    async fn all(&self, since_us: i64, limit: usize, keep: Keep) -> Result<Vec<SpanRecord>> {
        let trim: Trim = sqlx::query_as("SELECT kept_from, oldest_start_us FROM span_trim")
            .fetch_optional(&self.pool)
            .await?
            .unwrap_or(Trim { kept_from: 0, oldest_start_us: 0 });
        let since_us = since_us.max(trim.oldest_start_us);
        // Keys grow away from the kept end, so the heap's top is always the worst kept span.
        let (order, sign) = match keep {
            Keep::Earliest => ("ORDER BY first_start_us", 1),
            Keep::Latest => ("ORDER BY last_start_us DESC", -1),
        };
        let mut kept = BinaryHeap::<Ranked>::with_capacity(limit + 1);
        let sql = format!(
            "SELECT first_span, first_start_us, last_start_us, spans FROM span_batches WHERE last_start_us >= ? {order}"
        );
        let mut batches = sqlx::query(&sql).bind(since_us).fetch(&self.pool);
        while let Some(row) = batches.try_next().await? {
            let nearest_start: i64 = row.try_get(if sign > 0 { "first_start_us" } else { "last_start_us" })?;
            if kept.len() == limit && kept.peek().is_some_and(|worst| worst.key.0 < sign * nearest_start) {
                break;
            }
            let first_span: i64 = row.try_get("first_span")?;
            let spans = codec::decode(row.try_get("spans")?)?;
            for (number, span) in (first_span..).zip(spans) {
                if number < trim.kept_from || span.start_us < since_us {
                    continue;
                }
                kept.push(Ranked { key: (sign * span.start_us, sign * number), span });
                if kept.len() > limit {
                    kept.pop();
                }
            }
        }
        let mut spans: Vec<SpanRecord> = kept.into_sorted_vec().into_iter().map(|ranked| ranked.span).collect();
        if keep == Keep::Latest {
            spans.reverse();
        }
        Ok(spans)
    }
}

/// Which end of the history a query with a limit keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Earliest,
    Latest,
}

/// Where the last trim drew its lines.
#[derive(sqlx::FromRow)]
struct Trim {
    kept_from: i64,
    oldest_start_us: i64,
}

/// A span ranked by start, then by number (the order spans ended in); both negated when
/// the latest are kept.
struct Ranked {
    key: (i64, i64),
    span: SpanRecord,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::AttributeValue;

    const KEEP_ALL: Retention = Retention { days: 7, max_spans: 200_000 };

    async fn history() -> (tempfile::TempDir, SpanHistory) {
        let dir = tempfile::tempdir().unwrap();
        let history = SpanHistory::open_beside(&dir.path().join("pryx.db")).await.unwrap();
        (dir, history)
    }

    /// A webhook-like span that started `start_us` after a moment a minute before the
    /// tests began.
    fn span(n: i64, start_us: i64) -> RecordedSpan {
        static BASE: std::sync::LazyLock<i64> = std::sync::LazyLock::new(|| now_us() - 60_000_000);
        let base = *BASE;
        RecordedSpan {
            trace_id: n as u128 + 1,
            span_id: n as u64 + 1,
            parent_span_id: (n % 2 == 0).then_some(7),
            name: "channel.receive",
            session_id: None,
            turn_id: None,
            start_us: base + start_us,
            end_us: Some(base + start_us + 5),
            attributes: vec![("n", AttributeValue::I64(n)), ("text", AttributeValue::Str("it's \"quoted\"\n".into()))],
        }
    }

    fn names(records: &[SpanRecord]) -> Vec<i64> {
        records.iter().map(|r| r.attributes["n"].as_i64().unwrap()).collect()
    }

    #[tokio::test]
    async fn a_big_batch_is_stored_whole_and_trimmed_to_exactly_the_newest() {
        let (_dir, history) = history().await;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&history.pool).await.unwrap();
        assert_eq!(page_size, i64::from(PAGE_SIZE), "telemetry.db has big pages");
        let spans: Vec<_> = (0..1_201).map(|n| span(n, n)).collect();
        history.add(&spans, Retention { days: 7, max_spans: 1_000 }).await.unwrap();
        let stored = history.query(None, 0, 5_000, Keep::Earliest).await.unwrap();
        assert_eq!(stored.len(), 1_000, "trimmed to max_spans");
        assert_eq!(stored.first().unwrap(), &spans[201].to_record());
        assert_eq!(stored.last().unwrap(), &spans[1_200].to_record());
    }

    #[tokio::test]
    async fn many_small_batches_keep_the_newest_max_spans() {
        let (_dir, history) = history().await;
        for batch in 0..7 {
            let spans: Vec<_> = (batch * 300..batch * 300 + 300).map(|n| span(n, n)).collect();
            history.add(&spans, Retention { days: 7, max_spans: 1_000 }).await.unwrap();
        }
        let stored = history.query(None, 0, 5_000, Keep::Earliest).await.unwrap();
        assert_eq!(names(&stored), (1_100..2_100).collect::<Vec<_>>());
        let (batches,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM span_batches").fetch_one(&history.pool).await.unwrap();
        assert!(batches <= 5, "older batches are deleted, not just hidden ({batches} left)");
    }

    #[tokio::test]
    async fn spans_come_back_by_start_even_when_a_long_one_ended_late() {
        let (_dir, history) = history().await;
        // Webhooks 100.., then 200..; a turn that started at 50 ends in the third batch.
        history.add(&(100..110).map(|n| span(n, n)).collect::<Vec<_>>(), KEEP_ALL).await.unwrap();
        history.add(&(200..210).map(|n| span(n, n)).collect::<Vec<_>>(), KEEP_ALL).await.unwrap();
        history.add(&[span(300, 300), span(50, 50), span(301, 301)], KEEP_ALL).await.unwrap();

        assert_eq!(names(&history.query(None, 0, 4, Keep::Earliest).await.unwrap()), [50, 100, 101, 102]);
        assert_eq!(names(&history.query(None, 0, 100, Keep::Earliest).await.unwrap()).len(), 23);
        let since = span(0, 205).start_us;
        assert_eq!(
            names(&history.query(None, since, 100, Keep::Earliest).await.unwrap()),
            [205, 206, 207, 208, 209, 300, 301]
        );
        // The latest few, still oldest first; and the long one when it is among them.
        assert_eq!(names(&history.query(None, 0, 4, Keep::Latest).await.unwrap()), [208, 209, 300, 301]);
        assert_eq!(names(&history.query(None, 0, 100, Keep::Latest).await.unwrap())[..2], [50, 100]);
    }

    #[tokio::test]
    async fn a_sessions_spans_are_found_on_their_own() {
        let (_dir, history) = history().await;
        let mut turn = span(1, 10);
        turn.set(crate::telemetry::span::SESSION_ID, AttributeValue::Str("s-1".into()));
        let mut other = span(2, 20);
        other.set(crate::telemetry::span::SESSION_ID, AttributeValue::Str("s-2".into()));
        history.add(&[span(0, 5), turn.clone(), other, span(3, 30)], KEEP_ALL).await.unwrap();
        assert_eq!(history.query(Some("s-1"), 0, 100, Keep::Earliest).await.unwrap(), [turn.to_record()]);
        let mut later = span(4, 40);
        later.set(crate::telemetry::span::SESSION_ID, AttributeValue::Str("s-1".into()));
        history.add(std::slice::from_ref(&later), KEEP_ALL).await.unwrap();
        assert_eq!(history.query(Some("s-1"), 0, 1, Keep::Earliest).await.unwrap(), [turn.to_record()]);
        assert_eq!(history.query(Some("s-1"), 0, 1, Keep::Latest).await.unwrap(), [later.to_record()]);
        assert_eq!(
            history.query(Some("s-1"), 0, 5, Keep::Latest).await.unwrap(),
            [turn.to_record(), later.to_record()]
        );
        assert_eq!(history.query(None, 0, 100, Keep::Earliest).await.unwrap().len(), 5, "and in the whole history too");
        assert!(history.query(Some("s-3"), 0, 100, Keep::Earliest).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_file_of_an_earlier_layout_starts_afresh_with_big_pages() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What the JSON layout left: a batch of JSON, user_version 0, 4 KiB pages.
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("telemetry.db"))
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(options).await.unwrap();
            sqlx::raw_sql(
                "CREATE TABLE span_batches (first_span INTEGER PRIMARY KEY, span_count INTEGER, \
                 first_start_us INTEGER, last_start_us INTEGER, spans TEXT); \
                 INSERT INTO span_batches VALUES (0, 1, 1, 1, '[{\"name\":\"old\"}]');",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let history = SpanHistory::open_beside(&dir.path().join("pryx.db")).await.unwrap();
        let history = &history;
        assert!(history.query(None, 0, 100, Keep::Earliest).await.unwrap().is_empty());
        history.add(&[span(1, 1)], KEEP_ALL).await.unwrap();
        assert_eq!(names(&history.query(None, 0, 100, Keep::Earliest).await.unwrap()), [1]);
        let pragma = |name: &'static str| async move {
            sqlx::query_scalar::<_, i64>(name).fetch_one(&history.pool).await.unwrap()
        };
        assert_eq!(pragma("PRAGMA page_size").await, i64::from(PAGE_SIZE));
        assert_eq!(pragma("PRAGMA user_version").await, LAYOUT);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&history.pool).await.unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(pragma("PRAGMA wal_autocheckpoint").await, 256);
        assert_eq!(pragma("PRAGMA cache_size").await, -i64::from(CACHE_KIB));
    }

    #[tokio::test]
    async fn spans_outlive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let history = SpanHistory::open_beside(&dir.path().join("pryx.db")).await.unwrap();
        history.add(&[span(1, 1), span(2, 2)], KEEP_ALL).await.unwrap();
        history.close().await;
        let history = SpanHistory::open_beside(&dir.path().join("pryx.db")).await.unwrap();
        assert_eq!(names(&history.query(None, 0, 100, Keep::Earliest).await.unwrap()), [1, 2]);
        history.add(&[span(3, 3)], KEEP_ALL).await.unwrap();
        assert_eq!(names(&history.query(None, 0, 100, Keep::Earliest).await.unwrap()), [1, 2, 3]);
    }

    #[tokio::test]
    async fn the_longest_retention_keeps_everything() {
        let (_dir, history) = history().await;
        let spans: Vec<_> = (0..3).map(|n| span(n, n)).collect();
        history.add(&spans, Retention { days: u32::MAX, max_spans: u32::MAX }).await.unwrap();
        assert_eq!(names(&history.query(None, 0, 100, Keep::Earliest).await.unwrap()), [0, 1, 2]);
    }

    #[tokio::test]
    async fn spans_past_their_age_are_gone() {
        let (_dir, history) = history().await;
        let day_us = 86_400 * 1_000_000;
        let mut old = span(1, 0);
        old.start_us -= 3 * day_us;
        old.set(crate::telemetry::span::SESSION_ID, AttributeValue::Str("s-1".into()));
        history.add(&[old], KEEP_ALL).await.unwrap();
        // An old span and a new one in one batch: the batch stays, the old span is hidden.
        let mut also_old = span(2, 0);
        also_old.start_us -= 3 * day_us;
        history.add(&[also_old, span(3, 0)], Retention { days: 2, max_spans: 1_000 }).await.unwrap();
        assert_eq!(names(&history.query(None, 0, 100, Keep::Earliest).await.unwrap()), [3]);
        assert!(history.query(Some("s-1"), 0, 100, Keep::Earliest).await.unwrap().is_empty());
    }
}
