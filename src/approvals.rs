//! Approvals: the policy that decides whether a tool call may run, and the broker that asks
//! a human when the policy says "ask".
//!
//! [`Policy::decide`] is a pure function of the configuration, the tool, its arguments and
//! what was allowed for the session: deny rules win over allow rules; reads are allowed,
//! everything else asks unless the user loosened it. An "ask" becomes an [`Approval`] row in
//! SQLite and is offered on every surface at once (turn events, `approvals.subscribe`,
//! `approval.list`/`approval.answer`, `pryx approvals`). The first answer wins; no answer
//! within the timeout is a deny; an approval pending when the agent stopped is expired at
//! the next start, never allowed. Every decision is written to `approval_audit`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use pryx_api::{wire_name, Approval, ApprovalDecision, ApprovalStatus, Surface};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use tokio::sync::{broadcast, oneshot};

use crate::store::{now_ms, parse_wire, Store, StoreError};
use crate::tools::Risk;

/// What the policy says about a call: a type of the API contract, the one definition.
pub use pryx_api::Rule;

/// `[policy]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Per tool name: `allow`, `ask` or `deny`. Unlisted tools: reads allow, others ask.
    pub tools: BTreeMap<String, Rule>,
    /// `shell_execute` commands always allowed when they start with one of these (e.g.
    /// `git status`) and contain no shell operators (`;`, `&`, `|`, `$`, backticks, redirects…).
    pub shell_allow: Vec<String>,
    /// `shell_execute` commands always denied when they contain one of these words.
    pub shell_deny: Vec<String>,
    /// Seconds an approval waits for an answer before it counts as a deny.
    pub approval_timeout_secs: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            tools: BTreeMap::new(),
            shell_allow: Vec::new(),
            shell_deny: Vec::new(),
            approval_timeout_secs: 300,
        }
    }
}

/// The policy in force.
pub struct Policy {
    config: PolicyConfig,
}

/// Characters that let one command line run more than the command it starts with.
const SHELL_OPERATORS: &[char] =
    &[';', '&', '|', '$', '`', '<', '>', '(', ')', '{', '}', '\n', '\r', '\\', '*', '?', '~', '!'];

impl Policy {
    pub fn new(config: PolicyConfig) -> Self {
        Policy { config }
    }

    /// The rules in force (what `[policy]` said when this policy was made).
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    pub fn approval_timeout(&self) -> Duration {
        Duration::from_secs(self.config.approval_timeout_secs)
    }

    /// Decide a call. `trusted_by_user` is the user's own trust in the tool (an MCP server
    /// marked trusted); `widens` what the call asks beyond the tool's usual reach
    /// (`Tool::widens`); `allowed_for_session` holds the [`session_grant`]s a person gave
    /// in this session.
    pub fn decide(
        &self,
        tool: &str,
        risk: Risk,
        trusted_by_user: bool,
        arguments: &serde_json::Value,
        widens: Option<&str>,
        allowed_for_session: &HashSet<String>,
    ) -> Rule {
        let configured = self.config.tools.get(tool).copied();
        let command = (tool == "shell_execute").then(|| arguments["command"].as_str().unwrap_or("")).map(str::trim);
        // Deny rules first: they win over anything that allows.
        if configured == Some(Rule::Deny) {
            return Rule::Deny;
        }
        if let Some(command) = command {
            if self.config.shell_deny.iter().any(|word| !word.trim().is_empty() && command.contains(word.trim())) {
                return Rule::Deny;
            }
        }
        if allowed_for_session.contains(&session_grant(tool, widens)) {
            return Rule::Allow;
        }
        // More than the tool's usual reach: only a person can allow it.
        if widens.is_some() {
            return Rule::Ask;
        }
        if configured == Some(Rule::Allow) {
            return Rule::Allow;
        }
        if let Some(command) = command {
            let plain = !command.contains(SHELL_OPERATORS);
            let allowed = self.config.shell_allow.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).any(|prefix| {
                command == prefix || command.strip_prefix(prefix).is_some_and(|rest| rest.starts_with(' '))
            });
            if plain && allowed {
                return Rule::Allow;
            }
        }
        // A rule for this very tool beats trust in its whole server.
        match (configured, risk) {
            (Some(rule), _) => rule,
            (None, _) if trusted_by_user => Rule::Allow,
            (None, Risk::Read) => Rule::Allow,
            (None, _) => Rule::Ask,
        }
    }
}

/// What "allow for the rest of this session" allows: the tool, or the tool with what the
/// call widened (`shell_execute with network`), which an allowance of the tool alone does
/// not cover.
pub fn session_grant(tool: &str, widens: Option<&str>) -> String {
    match widens {
        Some(what) => format!("{tool} with {what}"),
        None => tool.to_owned(),
    }
}

/// Why an answer was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("approval {0} not found")]
    NotFound(String),
    #[error("approval {id} was already settled: {status}")]
    AlreadySettled { id: String, status: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request to create.
pub struct NewApproval<'a> {
    pub session_id: &'a str,
    pub turn_id: &'a str,
    pub call_id: &'a str,
    pub tool: &'a str,
    pub arguments: &'a str,
    pub summary: String,
    pub risk: Risk,
    pub channel: Surface,
    /// What an answer "allow for this session" allows ([`session_grant`]).
    pub grant: String,
}

/// How a request ended, as the waiting tool call sees it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub approval: Approval,
}

impl Outcome {
    pub fn allowed(&self) -> bool {
        self.approval.status == ApprovalStatus::Allowed
    }
}

/// Sessions that keep "allow for session" grants, at most; past it the session granted
/// longest ago forgets its grants (its next call is asked about again: the safe side).
pub const MAX_SESSIONS_WITH_GRANTS: usize = 1024;

/// "Allow for session" grants by session, in memory only (a restart forgets them), for at
/// most [`MAX_SESSIONS_WITH_GRANTS`] sessions.
#[derive(Default)]
pub struct SessionGrants {
    by_session: HashMap<String, HashSet<String>>,
    /// Sessions in the order they were first granted something, oldest first.
    order: std::collections::VecDeque<String>,
}

impl SessionGrants {
    pub fn of(&self, session_id: &str) -> HashSet<String> {
        self.by_session.get(session_id).cloned().unwrap_or_default()
    }

    pub fn grant(&mut self, session_id: &str, grant: String) {
        if let Some(grants) = self.by_session.get_mut(session_id) {
            grants.insert(grant);
            return;
        }
        while self.order.len() >= MAX_SESSIONS_WITH_GRANTS {
            if let Some(oldest) = self.order.pop_front() {
                self.by_session.remove(&oldest);
            }
        }
        self.by_session.insert(session_id.to_owned(), HashSet::from([grant]));
        self.order.push_back(session_id.to_owned());
    }

    pub fn forget(&mut self, session_id: &str) {
        if self.by_session.remove(session_id).is_some() {
            self.order.retain(|s| s != session_id);
        }
    }

    /// How many sessions hold grants.
    pub fn sessions(&self) -> usize {
        self.by_session.len()
    }
}

/// Offers approval requests to every surface and waits for the first answer.
pub struct Broker {
    store: Store,
    timeout: Duration,
    /// Requests waiting for an answer: how to wake the caller, and what allowing the tool
    /// for the session would grant.
    waiting: Mutex<HashMap<String, (oneshot::Sender<()>, String)>>,
    /// Grants ([`session_grant`]) given for a whole session.
    session_allows: Mutex<SessionGrants>,
    events: broadcast::Sender<Approval>,
    /// Serialises settling so the first answer wins.
    settle: tokio::sync::Mutex<()>,
}

impl Broker {
    pub fn new(store: Store, timeout: Duration) -> Self {
        let (events, _) = broadcast::channel(256);
        Broker {
            store,
            timeout,
            waiting: Mutex::new(HashMap::new()),
            session_allows: Mutex::new(SessionGrants::default()),
            events,
            settle: tokio::sync::Mutex::new(()),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Approval> {
        self.events.subscribe()
    }

    /// How many requests wait for an answer right now.
    pub fn pending_count(&self) -> usize {
        self.lock_waiting().len()
    }

    /// Tools a person allowed for this session.
    pub fn allowed_for_session(&self, session_id: &str) -> HashSet<String> {
        self.lock_grants().of(session_id)
    }

    /// Forget what was allowed for a session (it was deleted).
    pub fn forget_session(&self, session_id: &str) {
        self.lock_grants().forget(session_id);
    }

    fn lock_grants(&self) -> std::sync::MutexGuard<'_, SessionGrants> {
        self.session_allows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark approvals left pending by a previous run as expired (a deny). Returns how many.
    pub async fn expire_leftovers(store: &Store) -> Result<u64, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM approvals WHERE status = 'pending'").fetch_all(store.reader()).await?;
        for id in &ids {
            settle_row(store, id, ApprovalStatus::Expired, None, None, "restart").await?;
        }
        Ok(ids.len() as u64)
    }

    /// Persist a request, offer it, and wait for the first answer, the timeout, or `cancel`.
    /// `on_requested` runs once the request is stored (the turn emits its event there).
    pub async fn request(
        &self,
        new: NewApproval<'_>,
        cancel: &tokio_util::sync::CancellationToken,
        on_requested: impl FnOnce(&Approval),
    ) -> Result<Outcome, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let expires_at = now + self.timeout.as_millis() as i64;
        sqlx::query(
            "INSERT INTO approvals (id, session_id, turn_id, call_id, tool, arguments, summary, risk, channel, status, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        )
        .bind(&id)
        .bind(new.session_id)
        .bind(new.turn_id)
        .bind(new.call_id)
        .bind(new.tool)
        .bind(new.arguments)
        .bind(&new.summary)
        .bind(new.risk.as_str())
        .bind(new.channel.as_str())
        .bind(now)
        .bind(expires_at)
        .execute(self.store.writer())
        .await?;
        let (answered_tx, answered_rx) = oneshot::channel();
        self.lock_waiting().insert(id.clone(), (answered_tx, new.grant));
        let approval = self.get(&id).await?;
        on_requested(&approval);
        let _ = self.events.send(approval);

        let ended_by = tokio::select! {
            _ = answered_rx => None,
            _ = tokio::time::sleep(self.timeout) => Some((ApprovalStatus::TimedOut, "timeout")),
            _ = cancel.cancelled() => Some((ApprovalStatus::Cancelled, "turn-cancel")),
        };
        self.lock_waiting().remove(&id);
        if let Some((status, actor)) = ended_by {
            let _guard = self.settle.lock().await;
            // An answer may have landed just before; only a still-pending row is settled here.
            if self.get(&id).await?.status == ApprovalStatus::Pending {
                settle_row(&self.store, &id, status, None, None, actor).await?;
                let settled = self.get(&id).await?;
                let _ = self.events.send(settled);
            }
        }
        Ok(Outcome { approval: self.get(&id).await? })
    }

    /// A person's answer. The first one wins; later ones are refused and audited.
    pub async fn answer(
        &self,
        id: &str,
        decision: ApprovalDecision,
        note: Option<String>,
        answered_by: &str,
    ) -> Result<Approval, AnswerError> {
        if let Some(note) = &note {
            if note.chars().count() > 2000 {
                return Err(AnswerError::Invalid("the note is longer than 2000 characters".into()));
            }
        }
        let _guard = self.settle.lock().await;
        let current = self.get(id).await.map_err(|e| match e {
            StoreError::NotFound(_) => AnswerError::NotFound(id.to_owned()),
            other => AnswerError::Store(other),
        })?;
        if current.status != ApprovalStatus::Pending {
            audit(self.store.writer(), id, answered_by, "late", Some(decision), note.as_deref()).await?;
            let status = serde_json::to_value(current.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(AnswerError::AlreadySettled { id: id.to_owned(), status });
        }
        let status = if decision == ApprovalDecision::Deny { ApprovalStatus::Denied } else { ApprovalStatus::Allowed };
        settle_row(&self.store, id, status, Some(decision), note.as_deref(), answered_by).await?;
        let waiting = self.lock_waiting().remove(id);
        if decision == ApprovalDecision::AllowForSession {
            // A request with no waiter left grants only the tool as it was asked for.
            let grant = waiting.as_ref().map_or_else(|| current.tool.clone(), |(_, grant)| grant.clone());
            self.lock_grants().grant(&current.session_id, grant);
        }
        if let Some((waiter, _)) = waiting {
            let _ = waiter.send(());
        }
        let settled = self.get(id).await?;
        let _ = self.events.send(settled.clone());
        Ok(settled)
    }

    pub async fn get(&self, id: &str) -> Result<Approval, StoreError> {
        let row = sqlx::query(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.store.reader())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("approval {id}")))?;
        approval_from_row(&row)
    }

    /// Pending requests, or with `include_settled` the latest 200 of any status.
    pub async fn list(&self, include_settled: bool) -> Result<Vec<Approval>, StoreError> {
        let sql = if include_settled {
            format!("SELECT {APPROVAL_COLUMNS} FROM approvals ORDER BY created_at DESC LIMIT 200")
        } else {
            format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending' ORDER BY created_at")
        };
        let rows = sqlx::query(&sql).fetch_all(self.store.reader()).await?;
        rows.iter().map(approval_from_row).collect()
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, (oneshot::Sender<()>, String)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const APPROVAL_COLUMNS: &str = "id, session_id, turn_id, call_id, tool, arguments, summary, risk, channel, status, \
    decision, note, answered_by, created_at, expires_at, settled_at";

async fn settle_row(
    store: &Store,
    id: &str,
    status: ApprovalStatus,
    decision: Option<ApprovalDecision>,
    note: Option<&str>,
    actor: &str,
) -> Result<(), StoreError> {
    let status_text = wire_name(&status);
    let mut tx = store.writer().begin().await?;
    sqlx::query(
        "UPDATE approvals SET status = ?, decision = ?, note = ?, answered_by = ?, settled_at = ? WHERE id = ?",
    )
    .bind(&status_text)
    .bind(decision.map(|d| wire_name(&d)))
    .bind(note)
    .bind(actor)
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    audit(&mut *tx, id, actor, &status_text, decision, note).await?;
    tx.commit().await?;
    Ok(())
}

async fn audit<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    id: &str,
    actor: &str,
    outcome: &str,
    decision: Option<ApprovalDecision>,
    note: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO approval_audit (approval_id, at, actor, outcome, decision, note) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(now_ms())
    .bind(actor)
    .bind(outcome)
    .bind(decision.map(|d| wire_name(&d)))
    .bind(note)
    .execute(db)
    .await?;
    Ok(())
}

/// One audit record, for tests and `pryx doctor`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditEntry {
    pub approval_id: String,
    pub actor: String,
    pub outcome: String,
    pub decision: Option<String>,
}

pub async fn audit_trail(store: &Store) -> Result<Vec<AuditEntry>, StoreError> {
    let sql = "SELECT approval_id, actor, outcome, decision FROM approval_audit ORDER BY id";
    Ok(sqlx::query_as::<_, AuditEntry>(sql).fetch_all(store.reader()).await?)
}

fn approval_from_row(row: &SqliteRow) -> Result<Approval, StoreError> {
    let decision: Option<String> = row.try_get("decision")?;
    Ok(Approval {
        id: row.try_get("id")?,
        session_id: row.try_get("session_id")?,
        turn_id: row.try_get("turn_id")?,
        call_id: row.try_get("call_id")?,
        tool: row.try_get("tool")?,
        arguments: row.try_get("arguments")?,
        summary: row.try_get("summary")?,
        risk: parse_wire(&row.try_get::<String, _>("risk")?)?,
        channel: parse_wire(&row.try_get::<String, _>("channel")?)?,
        status: parse_wire(&row.try_get::<String, _>("status")?)?,
        decision: decision.as_deref().map(parse_wire).transpose()?,
        note: row.try_get("note")?,
        answered_by: row.try_get("answered_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        settled_at: row.try_get("settled_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_grants_are_kept_for_the_newest_sessions_only() {
        let mut grants = SessionGrants::default();
        for i in 0..MAX_SESSIONS_WITH_GRANTS + 10 {
            grants.grant(&format!("s{i}"), "fs_write".into());
        }
        assert_eq!(grants.sessions(), MAX_SESSIONS_WITH_GRANTS);
        assert!(grants.of("s0").is_empty() && grants.of("s9").is_empty(), "the oldest sessions forgot");
        assert!(grants.of("s10").contains("fs_write"));
        // More grants to a known session take no new place.
        grants.grant("s10", "shell_execute".into());
        assert_eq!(grants.sessions(), MAX_SESSIONS_WITH_GRANTS);
        assert_eq!(grants.of("s10").len(), 2);
        grants.forget("s10");
        assert!(grants.of("s10").is_empty());
        assert_eq!(grants.sessions(), MAX_SESSIONS_WITH_GRANTS - 1);
    }
    use serde_json::json;

    fn policy(toml_text: &str) -> Policy {
        Policy::new(toml::from_str(toml_text).unwrap())
    }

    #[test]
    fn defaults_allow_reads_and_ask_for_everything_else() {
        let p = policy("");
        let none = HashSet::new();
        assert_eq!(p.decide("fs_read", Risk::Read, false, &json!({}), None, &none), Rule::Allow);
        assert_eq!(p.decide("fs_write", Risk::Write, false, &json!({}), None, &none), Rule::Ask);
        assert_eq!(p.decide("fs_delete", Risk::Destructive, false, &json!({}), None, &none), Rule::Ask);
        assert_eq!(p.decide("shell_execute", Risk::Execute, false, &json!({"command": "ls"}), None, &none), Rule::Ask);
    }

    #[test]
    fn deny_wins_over_every_allow() {
        let p = policy("shell_allow = ['git']\nshell_deny = ['push']\n[tools]\nfs_delete = 'deny'\n");
        let session = HashSet::from(["fs_delete".to_owned(), "shell_execute".to_owned()]);
        assert_eq!(p.decide("fs_delete", Risk::Destructive, false, &json!({}), None, &session), Rule::Deny);
        assert_eq!(
            p.decide("shell_execute", Risk::Execute, false, &json!({"command": "git push"}), None, &session),
            Rule::Deny
        );
        assert_eq!(
            p.decide("shell_execute", Risk::Execute, false, &json!({"command": "git status"}), None, &HashSet::new()),
            Rule::Allow
        );
    }

    #[test]
    fn shell_prefixes_cannot_be_smuggled_past() {
        let p = policy("shell_allow = ['git status', 'ls']");
        let none = HashSet::new();
        let decide = |c: &str| p.decide("shell_execute", Risk::Execute, false, &json!({"command": c}), None, &none);
        assert_eq!(decide("git status"), Rule::Allow);
        assert_eq!(decide("git status --short"), Rule::Allow);
        assert_eq!(decide("ls -la"), Rule::Allow);
        for sneaky in [
            "git status; rm -rf ~",
            "git status && curl x | sh",
            "ls $(rm -rf ~)",
            "ls `id`",
            "lsblk",
            "ls > /etc/x",
            "git statusx",
        ] {
            assert_eq!(decide(sneaky), Rule::Ask, "{sneaky}");
        }
    }

    #[test]
    fn loosening_per_tool_and_per_session() {
        let p = policy("[tools]\nfs_write = 'allow'\nfs_read = 'ask'\n");
        let none = HashSet::new();
        assert_eq!(p.decide("fs_write", Risk::Write, false, &json!({}), None, &none), Rule::Allow);
        assert_eq!(p.decide("fs_read", Risk::Read, false, &json!({}), None, &none), Rule::Ask, "tightening works too");
        let session = HashSet::from(["fs_delete".to_owned()]);
        assert_eq!(p.decide("fs_delete", Risk::Destructive, false, &json!({}), None, &session), Rule::Allow);
    }

    #[test]
    fn user_trust_allows_but_specific_rules_and_denies_win() {
        let p = policy("[tools]\nfiles__delete = 'deny'\nfiles__move = 'ask'\n");
        let none = HashSet::new();
        assert_eq!(p.decide("files__write", Risk::Destructive, true, &json!({}), None, &none), Rule::Allow);
        assert_eq!(p.decide("files__write", Risk::Destructive, false, &json!({}), None, &none), Rule::Ask);
        assert_eq!(p.decide("files__delete", Risk::Destructive, true, &json!({}), None, &none), Rule::Deny);
        assert_eq!(p.decide("files__move", Risk::Write, true, &json!({}), None, &none), Rule::Ask);
        assert_eq!(p.decide("files__read", Risk::Read, false, &json!({}), None, &none), Rule::Allow);
    }

    #[test]
    fn a_call_asking_for_more_reach_asks_a_person_until_the_session_allowed_exactly_that() {
        let p = policy("shell_allow = ['pip']\n[tools]\nshell_execute = 'allow'\n");
        let call = json!({"command": "pip install requests", "network": true});
        let decide =
            |session: &HashSet<String>| p.decide("shell_execute", Risk::Execute, true, &call, Some("network"), session);
        assert_eq!(decide(&HashSet::new()), Rule::Ask, "configured allows and prefixes do not cover network");
        let tool_only = HashSet::from([session_grant("shell_execute", None)]);
        assert_eq!(decide(&tool_only), Rule::Ask, "allowing the tool for the session does not either");
        let with_network = HashSet::from([session_grant("shell_execute", Some("network"))]);
        assert_eq!(with_network.iter().next().map(String::as_str), Some("shell_execute with network"));
        assert_eq!(decide(&with_network), Rule::Allow);
        let deny = policy("shell_deny = ['pip']\n");
        assert_eq!(
            deny.decide("shell_execute", Risk::Execute, false, &call, Some("network"), &with_network),
            Rule::Deny,
            "deny rules still win"
        );
    }
}
