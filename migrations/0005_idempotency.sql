-- API keys (who is calling) and idempotency keys (has this request been seen before).
-- See docs/idempotency.md for the behaviour the API's users see and why each column exists.

-- A merchant's secret API keys. The secret (`sk_test_` + 32 base62 characters, ~190 random bits)
-- is shown once, at creation; only its SHA-256 is stored. A plain (unsalted, fast) hash is enough
-- because the secret is random and long: there is no dictionary to try, unlike a password.
CREATE TABLE api_keys (
  id uuid PRIMARY KEY,
  merchant_id text NOT NULL REFERENCES merchants (id),
  key_hash bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
  -- What the dashboard shows so a human can tell keys apart: `sk_test_` + the first 4 characters.
  prefix text NOT NULL CHECK (prefix ~ '^sk_test_[0-9A-Za-z]{4}$'),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  revoked_at timestamptz,
  CONSTRAINT api_keys_revoked_after_created CHECK (revoked_at IS NULL OR revoked_at >= created_at)
);
CREATE INDEX api_keys_merchant ON api_keys (merchant_id);

-- One row per (merchant, Idempotency-Key): the authority on whether a request is new, in flight,
-- interrupted (with the point to resume from) or finished (with the response to replay).
-- Redis only ever holds copies or hints of what is here.
CREATE TABLE idempotency_keys (
  id uuid PRIMARY KEY,
  -- The key is scoped to the merchant: merchant B's "abc" is a different key from merchant A's.
  merchant_id text NOT NULL REFERENCES merchants (id),
  -- 1..255 characters, no control characters (the header parser refuses them first, with a 400).
  idempotency_key text NOT NULL
    CHECK (length(idempotency_key) BETWEEN 1 AND 255 AND idempotency_key !~ '[\x01-\x1f\x7f]'),
  request_method text NOT NULL CHECK (request_method ~ '^[A-Z]{1,16}$'),
  request_path text NOT NULL CHECK (length(request_path) BETWEEN 1 AND 2048 AND left(request_path, 1) = '/'),
  -- sha256(method "\n" path "\n" canonical JSON body), lowercase hex (packages/idempotency/src/Fingerprint.ts).
  request_fingerprint text NOT NULL CHECK (request_fingerprint ~ '^[0-9a-f]{64}$'),
  -- The canonical request body, so the background completer can finish an abandoned key without
  -- the client. Request bodies carry vault tokens (`pm_...`), never card data.
  request_body jsonb,
  -- Where an interrupted run resumes: 'started' (nothing durable done yet) → operation-specific
  -- points (e.g. 'payment_created') → 'finished'. Written in the same transaction as the work.
  recovery_point text NOT NULL DEFAULT 'started' CHECK (recovery_point ~ '^[a-z][a-z0-9_]{0,63}$'),
  -- What the next step needs (e.g. {"payment_id": "pay_..."}).
  recovery_data jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(recovery_data) = 'object'),
  -- The lease of the run that owns the key. Expiry is decided with the database's clock only, so
  -- servers with skewed clocks agree. The token fences a run whose lease expired: its later writes
  -- match no row and its transaction rolls back (packages/idempotency/src/IdempotencyKeys.ts).
  locked_at timestamptz,
  lock_expires_at timestamptz,
  lock_token uuid,
  -- The stored response, replayed byte for byte (UTF-8 text: JSON and problem documents).
  response_status int CHECK (response_status BETWEEN 100 AND 599),
  response_body text,
  response_content_type text CHECK (length(response_content_type) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_run_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz,
  -- How many runs took the lease (1 = first try; more = resumed after a timeout or crash).
  run_count int NOT NULL DEFAULT 1 CHECK (run_count >= 1),
  CONSTRAINT idempotency_keys_merchant_key UNIQUE (merchant_id, idempotency_key),
  -- The three lock columns are set and cleared together; a lease ends after it starts.
  CONSTRAINT idempotency_keys_lock_whole CHECK (
    (locked_at IS NULL AND lock_expires_at IS NULL AND lock_token IS NULL)
    OR (locked_at IS NOT NULL AND lock_expires_at > locked_at AND lock_token IS NOT NULL)),
  -- Finished if and only if a response is stored; a finished key holds no lock and its recovery
  -- point is 'finished' (and only a finished key's is).
  CONSTRAINT idempotency_keys_finished_iff_response CHECK (
    (finished_at IS NOT NULL AND response_status IS NOT NULL AND response_body IS NOT NULL
      AND response_content_type IS NOT NULL AND recovery_point = 'finished' AND locked_at IS NULL)
    OR (finished_at IS NULL AND response_status IS NULL AND response_body IS NULL
      AND response_content_type IS NULL AND recovery_point <> 'finished'))
);

-- The reaper: finished keys by age.
CREATE INDEX idempotency_keys_finished_at ON idempotency_keys (finished_at) WHERE finished_at IS NOT NULL;
-- The completer: unfinished keys, oldest activity first.
CREATE INDEX idempotency_keys_unfinished ON idempotency_keys (last_run_at) WHERE finished_at IS NULL;

-- What a key was first used for never changes (otherwise a "replay" could answer a different
-- request), and a stored response is final: a finished row can only be deleted (by the reaper),
-- never rewritten.
CREATE FUNCTION idempotency_keys_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.finished_at IS NOT NULL THEN
    RAISE EXCEPTION 'idempotency key % of merchant % is finished: its stored response is final',
      OLD.idempotency_key, OLD.merchant_id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.id IS DISTINCT FROM OLD.id
     OR NEW.merchant_id IS DISTINCT FROM OLD.merchant_id
     OR NEW.idempotency_key IS DISTINCT FROM OLD.idempotency_key
     OR NEW.request_method IS DISTINCT FROM OLD.request_method
     OR NEW.request_path IS DISTINCT FROM OLD.request_path
     OR NEW.request_fingerprint IS DISTINCT FROM OLD.request_fingerprint
     OR NEW.request_body IS DISTINCT FROM OLD.request_body
     OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
    RAISE EXCEPTION 'idempotency key % of merchant %: the request it names is immutable',
      OLD.idempotency_key, OLD.merchant_id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER idempotency_keys_guard_update BEFORE UPDATE ON idempotency_keys
  FOR EACH ROW EXECUTE FUNCTION idempotency_keys_guard_update();
