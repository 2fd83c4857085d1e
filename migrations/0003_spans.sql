-- Finished telemetry spans, for the Gantt chart's history. Trimmed by age and count.
CREATE TABLE spans (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id        TEXT NOT NULL,
    span_id         TEXT NOT NULL,
    parent_span_id  TEXT,
    name            TEXT NOT NULL,
    session_id      TEXT,
    turn_id         TEXT,
    start_us        INTEGER NOT NULL,
    end_us          INTEGER NOT NULL,
    status          TEXT NOT NULL,
    attributes      TEXT NOT NULL   -- JSON object
);
CREATE INDEX spans_by_session ON spans(session_id, start_us);
CREATE INDEX spans_by_start ON spans(start_us);
