-- An outbox row the broker cannot take, and a position chosen by the writer (outside review of 0108,
-- 2026-12-05, F1 and F2).
--
-- F1: as `pay_app`, a copy of a real event with a 2 MB `headers.correlation_id` passed every guard
-- (the truth checks compare the members they know). Kafka refused every batch that held it
-- (MESSAGE_TOO_LARGE): the publisher retried for ever, the events behind it on its partition never
-- arrived, and those of the other partitions were appended again on every retry (11 copies of each
-- in a minute). Now a row holds what a record can carry: headers are the two the writer sets
-- (`correlation_id`, 1..200 characters as the history table's, and a W3C `traceparent`), the payload
-- at most 16 KiB of JSON text (the largest event the code writes is under 2 KiB: a failure message is
-- at most 500 characters), the type and aggregate names at most 64 characters. Kafka's record limit
-- is 1 MiB.
--
-- F2: `position` is an identity column, but INSERT on the table let `pay_app` write it (`OVERRIDING
-- SYSTEM VALUE`): a row at position -5 was claimed first, and taking future values would make the
-- API's own inserts fail on the unique key. `pay_app` now inserts the columns the writer sets only
-- (OutboxWriter.ts); `position`, the creation instant and writer stamp, and the delivery columns keep
-- their defaults.

ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_headers_known CHECK (
  jsonb_typeof(headers) = 'object'
  AND headers - 'correlation_id' - 'traceparent' = '{}'::jsonb
  AND (NOT headers ? 'correlation_id'
       OR (jsonb_typeof(headers -> 'correlation_id') = 'string' AND length(headers ->> 'correlation_id') BETWEEN 1 AND 200))
  -- 0072's form of the traceparent check (no bounded repetition: each costs the regex engine).
  AND (NOT headers ? 'traceparent'
       OR (jsonb_typeof(headers -> 'traceparent') = 'string'
           AND length(headers ->> 'traceparent') = 55
           AND headers ->> 'traceparent' ~ '^[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$'
           AND substr(headers ->> 'traceparent', 3, 1) = '-' AND substr(headers ->> 'traceparent', 36, 1) = '-'
           AND substr(headers ->> 'traceparent', 53, 1) = '-'))
) NOT VALID;
ALTER TABLE outbox_events VALIDATE CONSTRAINT outbox_events_headers_known;

ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_payload_bounded
  CHECK (octet_length(payload::text) <= 16384) NOT VALID;
ALTER TABLE outbox_events VALIDATE CONSTRAINT outbox_events_payload_bounded;

ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_names_bounded
  CHECK (length(event_type) <= 64 AND length(aggregate_type) <= 64) NOT VALID;
ALTER TABLE outbox_events VALIDATE CONSTRAINT outbox_events_names_bounded;

REVOKE INSERT ON outbox_events FROM pay_app;
GRANT INSERT (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers) ON outbox_events TO pay_app;
