-- Messaging channels (Telegram now; WhatsApp next): the durable inbox every platform
-- message lands in before it is acknowledged, the outbox replies leave through, the chats
-- the owner paired, one-time pairing codes, and per-channel cursors (Telegram's update
-- offset). Timestamps are Unix milliseconds.

CREATE TABLE channel_inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT NOT NULL,
    platform_id  TEXT NOT NULL,          -- the platform's id for this delivery (deduplication)
    chat_id      TEXT NOT NULL,
    sender_id    TEXT NOT NULL,
    sender_name  TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL,          -- text | command | unsupported | button
    text         TEXT NOT NULL DEFAULT '',      -- for a button press: the button's id
    reply_token  TEXT,                          -- what the platform wants back (Telegram's callback id)
    received_at  INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending','started','answered','refused','ignored')),
    turn_id      TEXT,
    note         TEXT,                   -- why it was refused or ignored
    preview_message_id TEXT,             -- the live preview shown for its answer
    UNIQUE (channel, platform_id)
);
CREATE INDEX channel_inbox_open ON channel_inbox(status) WHERE status IN ('pending','started');

CREATE TABLE channel_outbox (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    channel              TEXT NOT NULL,
    chat_id              TEXT NOT NULL,
    inbox_id             INTEGER,
    body                 TEXT NOT NULL,   -- platform-formatted text (Telegram HTML)
    plain                TEXT NOT NULL,   -- the same as plain text, sent if formatting is refused
    buttons              TEXT,            -- JSON [{"id": …, "title": …}]: choices offered with it
    edit_message_id      TEXT,            -- edit this shown message (the preview) instead of sending
    status               TEXT NOT NULL CHECK (status IN ('pending','sent','failed')),
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      INTEGER NOT NULL,
    platform_message_id  TEXT,
    error                TEXT,
    created_at           INTEGER NOT NULL,
    sent_at              INTEGER
);
CREATE INDEX channel_outbox_pending ON channel_outbox(next_attempt_at) WHERE status = 'pending';

CREATE TABLE channel_chats (
    channel      TEXT NOT NULL,
    chat_id      TEXT NOT NULL,
    session_id   TEXT,                    -- the session this chat talks in
    paired_at    INTEGER,                 -- set when the owner paired it
    refused_at   INTEGER,                 -- set when a stranger got the one refusal
    PRIMARY KEY (channel, chat_id)
);

CREATE TABLE channel_pairing_codes (
    code         TEXT PRIMARY KEY,
    channel      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_by      TEXT
);

CREATE TABLE channel_cursors (
    channel      TEXT PRIMARY KEY,
    value        TEXT NOT NULL
);

-- What a platform reports about messages Pryx sent (WhatsApp's delivery statuses: sent,
-- delivered, read, failed), keyed by the platform's message id. Kept apart from the outbox
-- because a status can arrive before Pryx has recorded the send it belongs to.
CREATE TABLE channel_delivery_status (
    channel              TEXT NOT NULL,
    platform_message_id  TEXT NOT NULL,
    status               TEXT NOT NULL,
    error                TEXT,
    at                   INTEGER NOT NULL,
    PRIMARY KEY (channel, platform_message_id)
);
