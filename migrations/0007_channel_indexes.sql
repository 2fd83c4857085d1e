-- Under load the dispatcher reads a channel's open messages many times a second, the status
-- card its latest message, and the sender each chat's oldest pending reply. The indexes they
-- had did not start with the channel, and a partial index on `status IN (...)` cannot serve
-- `status = 'pending'` (SQLite does not see that one implies the other), so each of these
-- walked every message the channel ever had, slower with every message kept.
DROP INDEX channel_inbox_open;
CREATE INDEX channel_inbox_open ON channel_inbox(channel, status, id);
CREATE INDEX channel_inbox_latest ON channel_inbox(channel, id);
DROP INDEX channel_outbox_pending;
CREATE INDEX channel_outbox_pending ON channel_outbox(channel, chat_id, id) WHERE status = 'pending';
