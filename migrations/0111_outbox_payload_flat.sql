-- An outbox payload's members are scalars (outside review of 0110, 2026-12-05). A payload of 12 KB
-- nested 6,000 levels deep passed 0110's size bound as `pay_app`; the publisher's encoder
-- (JSON.stringify) overflowed its stack on it, every batch failed before anything was sent, and the
-- row kept no trace of why (attempt_count 0, no last_error). Every event the code writes is a flat
-- object of scalars (packages/domain: PaymentEvents.ts, RefundEvents.ts), as a webhook's `data`
-- already must be (0102). The publisher also records such a failure on the row now.

ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_payload_flat CHECK (
  jsonb_typeof(payload) = 'object'
  AND NOT jsonb_path_exists(payload, '$.* ? (@.type() == "object" || @.type() == "array")')
) NOT VALID;
ALTER TABLE outbox_events VALIDATE CONSTRAINT outbox_events_payload_flat;
