-- Webhooks learn the void (issue 19): a merchant may subscribe to `payment_canceled` (the code's
-- list, packages/webhooks/src/Model.ts, is derived from the domain's event types and already
-- offers it; 0030's CHECK did not accept it).
ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_event_types_check;
ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_event_types_check CHECK (
  cardinality(event_types) BETWEEN 1 AND 8
  AND event_types <@ ARRAY['*', 'payment_created', 'payment_authorized', 'payment_settled', 'payment_failed',
                           'payment_canceled']::text[]);
