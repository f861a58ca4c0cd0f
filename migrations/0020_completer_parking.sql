-- The completer's bounded retries (issue 11): with the acquirer down it used to call it every 5 s
-- forever for every abandoned key, logging ERROR each time. Now each key has an attempt count and
-- a next-attempt time (exponential backoff with jitter, computed by the completer), and after the
-- last allowed attempt it is PARKED: left for an operator, who lists it and puts it back
-- (`pnpm cli idempotency parked` / `retry`, docs/runbook.md). A client's own retry with the key
-- still resumes it, parked or not.
ALTER TABLE idempotency_keys
  ADD COLUMN completer_attempts int NOT NULL DEFAULT 0 CHECK (completer_attempts BETWEEN 0 AND 1000),
  ADD COLUMN completer_next_at timestamptz,
  -- Why the last attempt failed, for the operator (bounded: a message, not a dump).
  ADD COLUMN completer_last_error text CHECK (length(completer_last_error) <= 2000),
  ADD COLUMN parked_at timestamptz,
  -- Only unfinished work can be parked: finishing a key (storing its response) clears it.
  ADD CONSTRAINT idempotency_keys_parked_unfinished CHECK (parked_at IS NULL OR finished_at IS NULL),
  -- A parked key has had at least one failed attempt.
  ADD CONSTRAINT idempotency_keys_parked_attempted CHECK (parked_at IS NULL OR completer_attempts >= 1);

-- The operator's list and the parked-keys gauge: parked, unfinished keys by parking time.
CREATE INDEX idempotency_keys_parked ON idempotency_keys (parked_at) WHERE parked_at IS NOT NULL AND finished_at IS NULL;
