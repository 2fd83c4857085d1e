-- The Connections screen counts a channel's failed replies; without this index that count
-- would read the whole outbox.
CREATE INDEX channel_outbox_failed ON channel_outbox(channel) WHERE status = 'failed';
