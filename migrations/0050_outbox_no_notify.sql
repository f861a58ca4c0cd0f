-- The outbox publisher no longer LISTENs: it polls (a short wait that grows from
-- OUTBOX_POLL_MIN_MS to OUTBOX_POLL_INTERVAL_MS while idle, none while there is work).
-- A NOTIFY inside a transaction makes its commit take a database-wide lock (the notification
-- queue's), held through the commit's WAL flush: every committing transaction that inserted an
-- outbox row waited for the previous one, which capped the API's creates well below what
-- Postgres does without it (docs/performance.md). Webhook deliveries keep their NOTIFY
-- (0030): they are queued by the consumers, off the API's commit path.
DROP TRIGGER outbox_events_notify ON outbox_events;
DROP FUNCTION outbox_events_notify();
