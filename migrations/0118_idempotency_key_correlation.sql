-- The correlation id of the request that began a key (its X-Request-Id, or the server's), kept with
-- the key: a run the completer finishes (the client gave up after a timeout, the server crashed)
-- carries the client's id on its events, history rows and log lines, instead of a new one (outside
-- on-call drill: the merchant's X-Request-Id did not find the end of its own request). Written once
-- by the request that inserts the key; NULL for keys from before, for which the completer draws one.
ALTER TABLE idempotency_keys ADD COLUMN correlation_id text
  CHECK (correlation_id IS NULL OR length(correlation_id) BETWEEN 1 AND 200);
