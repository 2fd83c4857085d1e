-- The live preview shown for a message's answer, so that an answer interrupted by a
-- restart replaces its stale preview instead of leaving it half-written.
ALTER TABLE channel_inbox ADD COLUMN preview_message_id TEXT;
