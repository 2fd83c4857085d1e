-- Telemetry spans moved to their own database file (telemetry.db beside pryx.db), so that
-- writing them never holds the lock that messages, inbox deliveries and approvals need.
DROP TABLE spans;
