-- A reply may replace a message already shown (the live preview of a streamed answer):
-- the platform's id of the message to edit instead of sending a new one.
ALTER TABLE channel_outbox ADD COLUMN edit_message_id TEXT;
