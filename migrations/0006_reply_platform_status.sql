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
