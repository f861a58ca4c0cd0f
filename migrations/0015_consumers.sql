-- The consuming side of payments.events (docs/consumers.md). Each consumer (a name such as
-- `settlement.g1`) handles a record in ONE transaction: it inserts (consumer, event_id) into
-- processed_events, applies its effect only when that row is new, and stores the partition's next
-- offset here. The Kafka offset is committed after that transaction: the database is the truth,
-- Kafka's committed offset is never ahead of it.

-- Effect exactly once per consumer: a redelivered or re-published event (same ce_id) finds its row.
CREATE TABLE processed_events (
  consumer text NOT NULL CHECK (consumer ~ '^[a-z0-9_.-]{1,100}$'),
  event_id uuid NOT NULL,
  payment_id text NOT NULL CHECK (length(payment_id) BETWEEN 1 AND 200),
  payment_version int NOT NULL CHECK (payment_version > 0),
  -- applied | stale (not newer than the payment's applied version: ignored)
  outcome text NOT NULL CHECK (outcome IN ('applied', 'stale')),
  topic text NOT NULL,
  partition int NOT NULL CHECK (partition >= 0),
  "offset" bigint NOT NULL CHECK ("offset" >= 0),
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);

-- The per-payment high-water mark of each consumer: an event whose version is not above it is
-- stale (a re-sent duplicate under another id, or a reordered delivery) and changes nothing.
CREATE TABLE consumer_payment_versions (
  consumer text NOT NULL,
  payment_id text NOT NULL,
  version int NOT NULL CHECK (version > 0),
  PRIMARY KEY (consumer, payment_id)
);

-- A version never goes down (the code checks first; this refuses a raw UPDATE that would).
CREATE FUNCTION consumer_payment_versions_monotonic() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.version < OLD.version THEN
    RAISE EXCEPTION 'consumer % payment %: version % would go back to %', OLD.consumer, OLD.payment_id, OLD.version, NEW.version
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER consumer_payment_versions_monotonic BEFORE UPDATE ON consumer_payment_versions
  FOR EACH ROW EXECUTE FUNCTION consumer_payment_versions_monotonic();

-- The next offset to handle per (consumer, topic, partition): the truth a consumer resumes from.
CREATE TABLE consumer_offsets (
  consumer text NOT NULL CHECK (consumer ~ '^[a-z0-9_.-]{1,100}$'),
  topic text NOT NULL,
  partition int NOT NULL CHECK (partition >= 0),
  next_offset bigint NOT NULL CHECK (next_offset >= 0),
  -- What the consumer counted on this partition, updated with the offset in the record's own
  -- transaction (a crash never loses or doubles a count; one row lock per partition, no hot row).
  applied_count bigint NOT NULL DEFAULT 0 CHECK (applied_count >= 0),
  duplicate_count bigint NOT NULL DEFAULT 0 CHECK (duplicate_count >= 0),
  stale_count bigint NOT NULL DEFAULT 0 CHECK (stale_count >= 0),
  parked_count bigint NOT NULL DEFAULT 0 CHECK (parked_count >= 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, topic, partition)
);

-- Offsets only move forward, except by an explicit reset (the CLI sets consumers.offset_reset
-- for its own transaction): a late instance that lost its partition cannot rewind it.
CREATE FUNCTION consumer_offsets_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.next_offset < OLD.next_offset AND coalesce(current_setting('consumers.offset_reset', true), '') <> 'on' THEN
    RAISE EXCEPTION 'consumer % %/%: offset % would go back to %', OLD.consumer, OLD.topic, OLD.partition, OLD.next_offset, NEW.next_offset
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER consumer_offsets_forward_only BEFORE UPDATE ON consumer_offsets
  FOR EACH ROW EXECUTE FUNCTION consumer_offsets_forward_only();

-- Poison records: undecodable, or failing the same way after the bounded retries. Parked with
-- the error and the original record (headers included), the offset stored, the partition goes on.
CREATE TABLE dead_letter_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  consumer text NOT NULL,
  topic text NOT NULL,
  partition int NOT NULL CHECK (partition >= 0),
  "offset" bigint NOT NULL CHECK ("offset" >= 0),
  event_id text,
  record_key text,
  record_value text NOT NULL,
  headers jsonb NOT NULL,
  error text NOT NULL CHECK (length(error) BETWEEN 1 AND 4000),
  attempt_count int NOT NULL CHECK (attempt_count >= 1),
  parked_at timestamptz NOT NULL DEFAULT now(),
  redriven_at timestamptz,
  redrive_error text,
  UNIQUE (consumer, topic, partition, "offset")
);
CREATE INDEX dead_letter_events_open ON dead_letter_events (consumer, id) WHERE redriven_at IS NULL;

-- The settlement read model, built from payment_settled events only (never from the ledger), so
-- that comparing it with the ledger proves the events tell the truth. One generation is live;
-- a replay builds the next one beside it and swaps (settlement_projection_live).
CREATE TABLE settlement_projection (
  generation int NOT NULL CHECK (generation > 0),
  merchant_id text NOT NULL,
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  settled_gross_minor bigint NOT NULL DEFAULT 0 CHECK (settled_gross_minor >= 0),
  fees_minor bigint NOT NULL DEFAULT 0 CHECK (fees_minor >= 0),
  net_minor bigint NOT NULL DEFAULT 0 CHECK (net_minor >= 0),
  payment_count bigint NOT NULL DEFAULT 0 CHECK (payment_count >= 0),
  last_event_at timestamptz,
  PRIMARY KEY (generation, merchant_id, currency),
  CONSTRAINT settlement_projection_fee_plus_net CHECK (fees_minor + net_minor = settled_gross_minor)
);

-- Counts of every event type, per generation (the issue: "and counts from the others"). Kept
-- per partition so that the partitions' transactions, which run concurrently, never queue on one
-- hot row; readers sum them.
CREATE TABLE settlement_projection_event_counts (
  generation int NOT NULL CHECK (generation > 0),
  event_type text NOT NULL CHECK (event_type ~ '^[a-z_]+$'),
  partition int NOT NULL CHECK (partition >= 0),
  event_count bigint NOT NULL DEFAULT 0 CHECK (event_count >= 0),
  PRIMARY KEY (generation, event_type, partition)
);

-- Exactly one row: the generation that serves reads, and the consumer name that maintains it.
CREATE TABLE settlement_projection_live (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  generation int NOT NULL CHECK (generation > 0),
  consumer text NOT NULL CHECK (consumer ~ '^[a-z0-9_.-]{1,100}$'),
  swapped_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO settlement_projection_live (generation, consumer) VALUES (1, 'settlement.g1');
