-- Merchants and payments. A payment's status is not "just a column": it moves only along the
-- transitions listed in `payment_transitions`, and every move is recorded in the append-only
-- `payment_status_history`. The application enforces the same rules first
-- (packages/domain/src/PaymentStateMachine.ts); the triggers below are the second line of defence
-- against raw SQL and bugs. See docs/payments.md.
--
-- Errors raised here use SQLSTATE 23000 (integrity_constraint_violation) with a message that names
-- the payment and the rule, so a violation is never mistaken for a transient failure.

CREATE TABLE merchants (
  id text PRIMARY KEY CHECK (id ~ '^mer_[0-9a-hjkmnp-tv-z]{24}$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- The transition table, seeded with exactly the pairs of the code's table (a test compares them).
-- A status that appears in no `from_status` is terminal.
CREATE TABLE payment_transitions (
  from_status text NOT NULL CHECK (from_status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED')),
  to_status text NOT NULL CHECK (to_status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED')),
  PRIMARY KEY (from_status, to_status)
);
INSERT INTO payment_transitions (from_status, to_status) VALUES
  ('CREATED', 'AUTHORIZED'),  -- authorize
  ('CREATED', 'FAILED'),      -- decline
  ('AUTHORIZED', 'SETTLED'),  -- settle
  ('AUTHORIZED', 'FAILED');   -- fail

CREATE TABLE payments (
  id text PRIMARY KEY CHECK (id ~ '^pay_[0-9a-hjkmnp-tv-z]{24}$'),
  merchant_id text NOT NULL REFERENCES merchants (id),
  -- Business maximum 99 999 999 999 minor units: exact as a JSON number (see packages/domain/src/Money.ts).
  amount_minor bigint NOT NULL CHECK (amount_minor > 0 AND amount_minor <= 99999999999),
  currency char(3) NOT NULL CHECK (currency IN (
    'AED', 'ARS', 'AUD', 'BHD', 'BIF', 'BRL', 'CAD', 'CHF', 'CLP', 'CNY', 'COP', 'CZK', 'DJF', 'DKK',
    'EGP', 'EUR', 'GBP', 'GNF', 'HKD', 'HUF', 'IDR', 'ILS', 'INR', 'IQD', 'ISK', 'JOD', 'JPY', 'KES',
    'KMF', 'KRW', 'KWD', 'LYD', 'MAD', 'MXN', 'MYR', 'NGN', 'NOK', 'NZD', 'OMR', 'PEN', 'PHP', 'PKR',
    'PLN', 'PYG', 'QAR', 'RON', 'RSD', 'RWF', 'SAR', 'SEK', 'SGD', 'THB', 'TND', 'TRY', 'TWD', 'UAH',
    'UGX', 'USD', 'VND', 'VUV', 'XAF', 'XOF', 'XPF', 'ZAR')),
  -- A vault token, never card data: 12+ consecutive digits (a PAN) are refused.
  payment_method text NOT NULL CHECK (payment_method ~ '^pm_[A-Za-z0-9_]{1,64}$' AND payment_method !~ '[0-9]{12}'),
  description text CHECK (description IS NULL OR length(description) <= 500),
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb
    CHECK (jsonb_typeof(metadata) = 'object' AND octet_length(metadata::text) <= 32768),
  status text NOT NULL CHECK (status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED')),
  failure_code text CHECK (failure_code IS NULL OR failure_code ~ '^[a-z][a-z0-9_]{0,63}$'),
  failure_message text CHECK (failure_message IS NULL OR length(failure_message) BETWEEN 1 AND 500),
  version int NOT NULL CHECK (version >= 1),
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  -- Failure details are present if and only if the payment FAILED.
  CONSTRAINT payments_failure_iff_failed CHECK (
    (status = 'FAILED' AND failure_code IS NOT NULL AND failure_message IS NOT NULL)
    OR (status <> 'FAILED' AND failure_code IS NULL AND failure_message IS NULL)),
  CONSTRAINT payments_updated_after_created CHECK (updated_at >= created_at)
);

-- A merchant's payments, newest first; the list cursor is (created_at, id) of the last row seen.
CREATE INDEX payments_merchant_newest ON payments (merchant_id, created_at DESC, id DESC);

-- Append-only audit of every status a payment reached: who, when, from, to, why, under which
-- correlation id. Creation is the row with from_status NULL. (payment_id, version) is unique, so a
-- lost update cannot hide: two writers of the same version collide here.
CREATE TABLE payment_status_history (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  payment_id text NOT NULL REFERENCES payments (id),
  version int NOT NULL CHECK (version >= 1),
  from_status text,
  to_status text NOT NULL CHECK (to_status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED')),
  actor text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
  reason text CHECK (reason IS NULL OR length(reason) BETWEEN 1 AND 1000),
  correlation_id text NOT NULL CHECK (length(correlation_id) BETWEEN 1 AND 200),
  traceparent text CHECK (traceparent IS NULL OR traceparent ~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'),
  occurred_at timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  UNIQUE (payment_id, version),
  -- A history row can only describe an allowed move (MATCH SIMPLE: the creation row, with a NULL
  -- from_status, is exempt and covered by the CHECK below).
  FOREIGN KEY (from_status, to_status) REFERENCES payment_transitions (from_status, to_status),
  CONSTRAINT payment_status_history_creation CHECK (
    (from_status IS NULL AND to_status = 'CREATED' AND version = 1)
    OR (from_status IS NOT NULL AND version > 1))
);

-- One function refuses, for the tables that must never be rewritten: history rows (audit),
-- the transition table (the rules) and payment rows (only updated through the guard below,
-- never deleted: a payment is a financial record).
CREATE FUNCTION payments_reject_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% on % is not allowed: %', TG_OP, TG_TABLE_NAME, TG_ARGV[0]
    USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER payment_status_history_append_only BEFORE UPDATE OR DELETE ON payment_status_history
  FOR EACH ROW EXECUTE FUNCTION payments_reject_rewrite('the status history is append-only');
CREATE TRIGGER payment_status_history_no_truncate BEFORE TRUNCATE ON payment_status_history
  FOR EACH STATEMENT EXECUTE FUNCTION payments_reject_rewrite('the status history is append-only');

-- Changing the rules is a reviewed migration that disables these triggers explicitly
-- (ALTER TABLE payment_transitions DISABLE TRIGGER ...), together with the code's table.
CREATE TRIGGER payment_transitions_immutable BEFORE INSERT OR UPDATE OR DELETE ON payment_transitions
  FOR EACH ROW EXECUTE FUNCTION payments_reject_rewrite('transition rules change only through a migration');
CREATE TRIGGER payment_transitions_no_truncate BEFORE TRUNCATE ON payment_transitions
  FOR EACH STATEMENT EXECUTE FUNCTION payments_reject_rewrite('transition rules change only through a migration');

CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments
  FOR EACH ROW EXECUTE FUNCTION payments_reject_rewrite('a payment is a financial record');
CREATE TRIGGER payments_no_truncate BEFORE TRUNCATE ON payments
  FOR EACH STATEMENT EXECUTE FUNCTION payments_reject_rewrite('a payment is a financial record');

-- A payment is born CREATED, at version 1.
CREATE FUNCTION payments_guard_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status IS DISTINCT FROM 'CREATED' THEN
    RAISE EXCEPTION 'payment % must be inserted with status CREATED, not %', NEW.id, NEW.status
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.version IS DISTINCT FROM 1 THEN
    RAISE EXCEPTION 'payment % must be inserted at version 1, not %', NEW.id, NEW.version
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.updated_at IS DISTINCT FROM NEW.created_at THEN
    RAISE EXCEPTION 'payment % must be inserted with updated_at = created_at', NEW.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payments_guard_insert BEFORE INSERT ON payments
  FOR EACH ROW EXECUTE FUNCTION payments_guard_insert();

-- Every UPDATE of a payment is a transition: allowed by payment_transitions, version + 1, time
-- moving forward, and nothing else about the payment changing. A terminal payment (a status with
-- no outgoing transition) cannot be updated at all. Even a no-op `SET status = status` is refused:
-- self-transitions are not in the table.
CREATE FUNCTION payments_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM payment_transitions WHERE from_status = OLD.status) THEN
    RAISE EXCEPTION 'payment % is % (terminal) and can no longer change', OLD.id, OLD.status
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM payment_transitions WHERE from_status = OLD.status AND to_status = NEW.status) THEN
    RAISE EXCEPTION 'illegal payment transition % -> % for payment %', OLD.status, NEW.status, OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.version IS DISTINCT FROM OLD.version + 1 THEN
    RAISE EXCEPTION 'payment % transition % -> % must move version from % to %, not %',
      OLD.id, OLD.status, NEW.status, OLD.version, OLD.version + 1, NEW.version
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.updated_at < OLD.updated_at THEN
    RAISE EXCEPTION 'payment % updated_at must not move backwards', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.id IS DISTINCT FROM OLD.id
     OR NEW.merchant_id IS DISTINCT FROM OLD.merchant_id
     OR NEW.amount_minor IS DISTINCT FROM OLD.amount_minor
     OR NEW.currency IS DISTINCT FROM OLD.currency
     OR NEW.payment_method IS DISTINCT FROM OLD.payment_method
     OR NEW.description IS DISTINCT FROM OLD.description
     OR NEW.metadata IS DISTINCT FROM OLD.metadata
     OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
    RAISE EXCEPTION 'payment % may only change status, failure details, version and updated_at', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payments_guard_update BEFORE UPDATE ON payments
  FOR EACH ROW EXECUTE FUNCTION payments_guard_update();

-- At COMMIT, every status a payment reached in the transaction has its history row (same version,
-- same status). A raw UPDATE that forgets the audit row is rolled back.
CREATE FUNCTION payments_history_complete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM payment_status_history
    WHERE payment_id = NEW.id AND version = NEW.version AND to_status = NEW.status
  ) THEN
    RAISE EXCEPTION 'payment % reached % (version %) without a payment_status_history row',
      NEW.id, NEW.status, NEW.version
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER payments_history_complete AFTER INSERT OR UPDATE ON payments
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION payments_history_complete();
