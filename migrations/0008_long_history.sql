-- What stays fast over months of history.
--
-- A start looks first for messages still `streaming` and turns still `running` when the
-- previous process died (`Store::recover_interrupted`). Without these indexes every start
-- scanned the whole history; with them it reads only what a dead process left mid-flight.
CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';
CREATE INDEX turns_running ON turns(status) WHERE status = 'running';

-- `session.list` showed each session's message count by counting its messages: 10,000
-- sessions took 80 to 130 ms. The count is now kept with the session, by triggers, so no
-- writer can forget it.
ALTER TABLE sessions ADD COLUMN message_count INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET message_count = (SELECT COUNT(*) FROM messages m WHERE m.session_id = sessions.id);
CREATE TRIGGER messages_counted AFTER INSERT ON messages BEGIN
    UPDATE sessions SET message_count = message_count + 1 WHERE id = NEW.session_id;
END;
CREATE TRIGGER messages_uncounted AFTER DELETE ON messages BEGIN
    UPDATE sessions SET message_count = message_count - 1 WHERE id = OLD.session_id;
END;
