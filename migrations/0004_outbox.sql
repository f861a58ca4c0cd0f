-- Transactional outbox: a row is inserted in the SAME database transaction as the state change it
-- describes, so an event exists if and only if its change committed. The publisher reads rows in
-- order and marks them published only after Kafka acknowledged them. Rows are kept after
-- publishing (a retention job deletes old published rows) so that history can be re-published.
CREATE TABLE outbox_events (
  id uuid PRIMARY KEY,                       -- also the event's CloudEvents id: consumers deduplicate by it
  position bigint GENERATED ALWAYS AS IDENTITY UNIQUE, -- insertion order, the publisher's sort key
  aggregate_type text NOT NULL CHECK (aggregate_type ~ '^[a-z_]+$'),
  aggregate_id text NOT NULL CHECK (length(aggregate_id) BETWEEN 1 AND 200),
  event_type text NOT NULL CHECK (event_type ~ '^[a-z_]+$'),
  event_version int NOT NULL DEFAULT 1 CHECK (event_version > 0),
  payload jsonb NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,  -- correlation_id, traceparent
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  published_at timestamptz,
  attempt_count int NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
  last_error text
);

-- The publisher's work queue: only unpublished rows, in insertion order. (Per-payment order
-- holds because one payment's transitions are serialized by its row lock: each commits before
-- the next one inserts.)
CREATE INDEX outbox_events_unpublished ON outbox_events (position) WHERE published_at IS NULL;
-- Per-aggregate ordering: the claim skips a row while an earlier row of the same aggregate is
-- unpublished (see packages/outbox/src/OutboxStore.ts), and replays read an aggregate in order.
CREATE INDEX outbox_events_aggregate_unpublished ON outbox_events (aggregate_type, aggregate_id, position)
  WHERE published_at IS NULL;
CREATE INDEX outbox_events_aggregate ON outbox_events (aggregate_type, aggregate_id, position);
-- Retention scans.
CREATE INDEX outbox_events_published_at ON outbox_events (published_at) WHERE published_at IS NOT NULL;

-- An event is a fact: once written, what it says never changes. Only the delivery bookkeeping
-- (published_at, attempt_count, last_error) may be updated. The check is the trigger's WHEN
-- clause, evaluated without calling the function: marking a batch published (one UPDATE per
-- row, the publisher's hot path) pays for no PL/pgSQL call; a forbidden change reaches the
-- function, which refuses it.
CREATE FUNCTION outbox_events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'outbox event % is immutable: only delivery bookkeeping may change', OLD.id
    USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER outbox_events_immutable BEFORE UPDATE ON outbox_events
  FOR EACH ROW
  WHEN (NEW.id IS DISTINCT FROM OLD.id
     OR NEW.position IS DISTINCT FROM OLD.position
     OR NEW.aggregate_type IS DISTINCT FROM OLD.aggregate_type
     OR NEW.aggregate_id IS DISTINCT FROM OLD.aggregate_id
     OR NEW.event_type IS DISTINCT FROM OLD.event_type
     OR NEW.event_version IS DISTINCT FROM OLD.event_version
     OR NEW.payload IS DISTINCT FROM OLD.payload
     OR NEW.headers IS DISTINCT FROM OLD.headers
     OR NEW.created_at IS DISTINCT FROM OLD.created_at)
  EXECUTE FUNCTION outbox_events_immutable();

-- Wake the publisher right after commit (NOTIFY is delivered only when the transaction commits,
-- so a rolled-back change wakes nobody). Polling remains the fallback.
CREATE FUNCTION outbox_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('outbox_events', '');
  RETURN NULL;
END $$;
CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
  FOR EACH STATEMENT EXECUTE FUNCTION outbox_events_notify();

-- A queue table: every publish leaves a dead row version behind, and a backlog can grow by
-- thousands of rows a second during an outage. Vacuum and analyze it after 1% of its rows
-- changed (defaults: 20% / 10%), so that the partial index of unpublished rows stays small and
-- the statistics follow the backlog. (The claim does not depend on them: see OutboxStore.claim.)
ALTER TABLE outbox_events SET (
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_analyze_scale_factor = 0.01,
  autovacuum_analyze_threshold = 1000
);
