-- The simulated acquirer's own memory (packages/acquirer/src/Simulator.ts): what "the bank"
-- performed, written on a connection that never joins our transactions, so a rollback or a crash
-- of our server never undoes it. Until this migration the simulator created it at start-up; the
-- IF NOT EXISTS clauses let this migration run on a database where it already did.
CREATE SCHEMA IF NOT EXISTS acquirer_sim;

CREATE TABLE IF NOT EXISTS acquirer_sim.operations (
  reference text PRIMARY KEY CHECK (length(reference) BETWEEN 1 AND 200),
  operation text NOT NULL CHECK (operation IN ('authorize', 'capture')),
  payment_id text NOT NULL CHECK (length(payment_id) BETWEEN 1 AND 200),
  amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  payment_method text,
  outcome text NOT NULL CHECK (outcome IN ('approved', 'declined')),
  decline_code text CHECK (decline_code IN ('card_declined', 'insufficient_funds')),
  decline_message text,
  acquirer_reference text NOT NULL UNIQUE,
  -- How many times the acquirer performed the operation: 1, by construction (a repeated
  -- reference only increments request_count). A second row for the same payment and
  -- operation is what a retry with a NEW reference looks like: a double charge.
  performed_count int NOT NULL DEFAULT 1 CHECK (performed_count >= 1),
  request_count int NOT NULL DEFAULT 1 CHECK (request_count >= performed_count),
  performed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  CHECK ((outcome = 'declined') = (decline_code IS NOT NULL AND decline_message IS NOT NULL))
);

CREATE INDEX IF NOT EXISTS operations_payment ON acquirer_sim.operations (payment_id, operation);
