-- Approval requests for tool calls that need a human 'yes', and the audit trail of every
-- decision taken on them.

CREATE TABLE approvals (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    turn_id     TEXT NOT NULL,
    call_id     TEXT NOT NULL,
    tool        TEXT NOT NULL,
    arguments   TEXT NOT NULL,
    summary     TEXT NOT NULL,
    risk        TEXT NOT NULL,
    channel     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending','allowed','denied','timed_out','expired','cancelled')),
    decision    TEXT,          -- allow_once | allow_for_session | deny, when a person answered
    note        TEXT,          -- optional note to the model
    answered_by TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    settled_at  INTEGER
);
CREATE INDEX approvals_pending ON approvals(status) WHERE status = 'pending';

CREATE TABLE approval_audit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id  TEXT NOT NULL,
    at           INTEGER NOT NULL,
    actor        TEXT NOT NULL,   -- who: 'rpc', 'cli', 'timeout', 'restart', 'turn-cancel'
    outcome      TEXT NOT NULL,   -- the status it settled to, or 'late' for an answer after settling
    decision     TEXT,
    note         TEXT
);
