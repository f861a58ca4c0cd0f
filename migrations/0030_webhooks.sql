-- Merchant webhooks (docs/webhooks.md): endpoints, their signing secrets, one delivery row per
-- (endpoint, event) and every attempt made to deliver it. The code (packages/webhooks) checks
-- the same rules first; these constraints are the second line against raw SQL and bugs.

CREATE TABLE webhook_endpoints (
  id text PRIMARY KEY CHECK (id ~ '^we_[0-9a-hjkmnp-tv-z]{24}$'),
  merchant_id text NOT NULL REFERENCES merchants (id),
  -- https in production; http only for loopback in local/test mode (checked by the code, which
  -- knows the mode; the database refuses anything that is not http(s) at all).
  url text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048 AND url ~ '^https?://'),
  description text CHECK (description IS NULL OR length(description) <= 500),
  -- The event types the merchant wants; '*' means all of them.
  event_types text[] NOT NULL CHECK (
    cardinality(event_types) BETWEEN 1 AND 8
    AND event_types <@ ARRAY['*', 'payment_created', 'payment_authorized', 'payment_settled', 'payment_failed']::text[]),
  status text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
  -- Why it is disabled: the merchant asked, the receiver answered 410 Gone, or every attempt
  -- failed for longer than the configured period.
  disabled_reason text CHECK (disabled_reason IN ('merchant', 'gone', 'failing')),
  disabled_at timestamptz,
  -- The first failed attempt since the last success (NULL while healthy).
  failing_since timestamptz,
  deleted_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- Lets a delivery's (endpoint, merchant) pair be a foreign key: a delivery is always the endpoint's merchant's.
  CONSTRAINT webhook_endpoints_id_merchant UNIQUE (id, merchant_id),
  CONSTRAINT webhook_endpoints_disabled_whole CHECK (
    (status = 'enabled' AND disabled_reason IS NULL AND disabled_at IS NULL)
    OR (status = 'disabled' AND disabled_reason IS NOT NULL AND disabled_at IS NOT NULL))
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id, created_at, id) WHERE deleted_at IS NULL;

-- Signing secrets: `whsec_` + base64 of 32 random bytes. HMAC needs the secret itself, so it is
-- stored (not a hash). The current secret has expires_at NULL; a rotated-out secret keeps
-- signing until its expires_at (both signatures go in one `webhook-signature` header).
CREATE TABLE webhook_endpoint_secrets (
  id uuid PRIMARY KEY,
  endpoint_id text NOT NULL REFERENCES webhook_endpoints (id),
  secret text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/]{43}=$'),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  expires_at timestamptz,
  CONSTRAINT webhook_endpoint_secrets_expiry_after_creation CHECK (expires_at IS NULL OR expires_at >= created_at)
);
CREATE UNIQUE INDEX webhook_endpoint_secrets_one_current ON webhook_endpoint_secrets (endpoint_id) WHERE expires_at IS NULL;
CREATE INDEX webhook_endpoint_secrets_endpoint ON webhook_endpoint_secrets (endpoint_id, created_at);

-- One row per (endpoint, event), created in the consumer's transaction: a redelivered or
-- replayed event inserts nothing (the unique constraint), a crash loses nothing (the row commits
-- with the consumer's offset). `body` is the exact bytes signed and sent, on every attempt.
CREATE TABLE webhook_deliveries (
  id uuid PRIMARY KEY,
  endpoint_id text NOT NULL REFERENCES webhook_endpoints (id),
  merchant_id text NOT NULL REFERENCES merchants (id),
  -- The event's id (the outbox row's, the CloudEvents ce_id): sent as `webhook-id`.
  event_id uuid NOT NULL,
  event_type text NOT NULL CHECK (event_type ~ '^[a-z_]{1,64}$'),
  -- Ordering: per (endpoint, payment), a delivery waits while one of a lower version is pending.
  payment_id text NOT NULL CHECK (payment_id ~ '^pay_[0-9a-hjkmnp-tv-z]{24}$'),
  payment_version int NOT NULL CHECK (payment_version > 0),
  body text NOT NULL CHECK (octet_length(body) BETWEEN 2 AND 65536),
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  -- Why a delivery was given up: retries exhausted, or the receiver answered 410.
  failed_reason text CHECK (failed_reason IN ('exhausted', 'gone')),
  attempt_count int NOT NULL DEFAULT 0 CHECK (attempt_count BETWEEN 0 AND 1000),
  -- Attempts since the delivery was (re)queued: the index into the retry schedule. A manual
  -- redelivery starts a new round (0) and keeps attempt_count.
  round_attempt_count int NOT NULL DEFAULT 0 CHECK (round_attempt_count BETWEEN 0 AND attempt_count),
  next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- The lease of the sender holding it: a sender that dies mid-request loses the lease when it
  -- expires, and another one sends the same bytes with the same webhook-id again.
  lease_token uuid,
  lease_expires_at timestamptz,
  last_response_status int CHECK (last_response_status BETWEEN 100 AND 599),
  last_error text CHECK (length(last_error) <= 2000),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz,
  CONSTRAINT webhook_deliveries_once_per_endpoint_event UNIQUE (endpoint_id, event_id),
  CONSTRAINT webhook_deliveries_endpoint_merchant FOREIGN KEY (endpoint_id, merchant_id) REFERENCES webhook_endpoints (id, merchant_id),
  CONSTRAINT webhook_deliveries_finished_iff_not_pending CHECK ((status = 'pending') = (finished_at IS NULL)),
  CONSTRAINT webhook_deliveries_failed_has_reason CHECK ((status = 'failed') = (failed_reason IS NOT NULL)),
  CONSTRAINT webhook_deliveries_lease_whole CHECK ((lease_token IS NULL) = (lease_expires_at IS NULL)),
  CONSTRAINT webhook_deliveries_finished_unleased CHECK (status = 'pending' OR lease_token IS NULL)
);
-- The sender's queue: pending rows by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
-- The ordering guard: earlier pending deliveries of the same endpoint and payment.
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, payment_id, payment_version) WHERE status = 'pending';
-- Listing and redelivery.
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (merchant_id, event_id);

-- Every attempt: inserted when a sender takes the lease (so an attempt cut by a crash is still
-- visible, with no outcome), completed with what the receiver answered.
CREATE TABLE webhook_attempts (
  delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id),
  attempt_number int NOT NULL CHECK (attempt_number BETWEEN 1 AND 1000),
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  webhook_timestamp bigint NOT NULL,
  outcome text CHECK (outcome IN ('delivered', 'retry', 'failed', 'gone')),
  response_status int CHECK (response_status BETWEEN 100 AND 599),
  latency_ms int CHECK (latency_ms >= 0),
  -- At most 1 KiB of the response body, for the merchant's and operators' eyes.
  response_body_excerpt text CHECK (octet_length(response_body_excerpt) <= 1024),
  error text CHECK (length(error) <= 2000),
  finished_at timestamptz,
  PRIMARY KEY (delivery_id, attempt_number),
  CONSTRAINT webhook_attempts_finished_whole CHECK ((outcome IS NULL) = (finished_at IS NULL))
);

-- A delivered or given-up delivery changes again only through a redelivery (back to pending,
-- attempt_count kept), and its identity and bytes never change.
CREATE FUNCTION webhook_deliveries_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.endpoint_id IS DISTINCT FROM OLD.endpoint_id OR NEW.event_id IS DISTINCT FROM OLD.event_id
     OR NEW.body IS DISTINCT FROM OLD.body OR NEW.payment_id IS DISTINCT FROM OLD.payment_id
     OR NEW.payment_version IS DISTINCT FROM OLD.payment_version OR NEW.merchant_id IS DISTINCT FROM OLD.merchant_id THEN
    RAISE EXCEPTION 'webhook delivery % is immutable: only its delivery state may change', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.attempt_count < OLD.attempt_count THEN
    RAISE EXCEPTION 'webhook delivery %: attempt_count never decreases', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER webhook_deliveries_guard BEFORE UPDATE ON webhook_deliveries
  FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_guard();

-- Wake the senders right after a commit that queued deliveries (NOTIFY is delivered only on
-- commit, so a rolled-back enqueue wakes nobody). Polling remains the fallback.
CREATE FUNCTION webhook_deliveries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('webhook_deliveries', '');
  RETURN NULL;
END $$;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
  FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_notify();

-- The application's role (0012: nothing is granted by default) and the functions' pinned
-- search_path (0009: a temp object must never stand in for a table). No DELETE on deliveries or
-- attempts: their history is the record of what was sent; secrets are deleted with their endpoint.
GRANT SELECT, INSERT, UPDATE ON webhook_endpoints, webhook_deliveries, webhook_attempts TO pay_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoint_secrets TO pay_app;
ALTER FUNCTION webhook_deliveries_guard() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION webhook_deliveries_notify() SET search_path = pg_catalog, public, pg_temp;
