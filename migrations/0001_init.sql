-- Conversations, their messages, the turns that produced them, and crash records.
-- Timestamps are Unix milliseconds.

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    channel     TEXT NOT NULL DEFAULT 'local',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE turns (
    id           TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    status       TEXT NOT NULL CHECK (status IN ('running','completed','cancelled','failed','interrupted')),
    error_kind   TEXT,
    error        TEXT,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX turns_by_session ON turns(session_id);

CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id         TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    turn_id            TEXT,
    role               TEXT NOT NULL CHECK (role IN ('user','assistant','tool')),
    content            TEXT NOT NULL DEFAULT '',
    tool_calls         TEXT,  -- JSON array of {id,name,arguments}, assistant messages only
    tool_call_id       TEXT,  -- tool messages only
    status             TEXT NOT NULL CHECK (status IN ('complete','streaming','interrupted','cancelled','failed')),
    error              TEXT,
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX messages_by_session ON messages(session_id, id);

CREATE TABLE crashes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    scope      TEXT NOT NULL CHECK (scope IN ('runtime','turn')),
    turn_id    TEXT,
    message    TEXT NOT NULL,
    backtrace  TEXT NOT NULL
);
