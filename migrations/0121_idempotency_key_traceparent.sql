-- The trace context of the request that began a key (its span's W3C traceparent), kept with the key
-- beside its correlation id (0118): a run the completer finishes writes it on its history rows and
-- events, so the resumed work joins the client's trace instead of carrying none (outside re-test:
-- the correlation id was carried, the trace id was not). Same format as the history rows' (0072).
ALTER TABLE idempotency_keys ADD COLUMN traceparent text
  CHECK (traceparent IS NULL OR (traceparent ~ '^[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$' AND length(traceparent) = 55
         AND substr(traceparent, 3, 1) = '-' AND substr(traceparent, 36, 1) = '-' AND substr(traceparent, 53, 1) = '-'));
