-- Buttons: replies may carry choices (approval prompts), and a press comes back as an
-- inbox row that may carry a token the platform wants acknowledged (Telegram's
-- callback_query id).
ALTER TABLE channel_outbox ADD COLUMN buttons TEXT;   -- JSON [{"id": …, "title": …}]
ALTER TABLE channel_inbox ADD COLUMN reply_token TEXT;
