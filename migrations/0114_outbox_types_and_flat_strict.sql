-- Two gaps of 0110/0111 found by their outside re-test (2026-12-05):
--
-- 1. 0111's path ran in lax mode, which unwraps arrays: `{"a": [1]}` passed "members are scalars".
--    The same check in strict mode refuses an array member too.
-- 2. An event of the payment aggregate could carry any type (`zzz`): the truth checks compare the
--    members of the types they know, so 20,000 rows of an unknown type on one real payment passed,
--    were published, and every consumer parked each one (two ERROR lines apiece, 66,000 in one run,
--    burying the signal an operator looks for). A payment's events are the domain's types
--    (packages/domain: paymentEventTypes, refundEventTypes); a test keeps the two lists equal.
--    Other aggregates (the owner's tests) are not concerned: pay_app writes only `payment` (0104).

ALTER TABLE outbox_events DROP CONSTRAINT outbox_events_payload_flat;
ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_payload_flat CHECK (
  jsonb_typeof(payload) = 'object'
  AND NOT jsonb_path_exists(payload, 'strict $.* ? (@.type() == "object" || @.type() == "array")')
) NOT VALID;
ALTER TABLE outbox_events VALIDATE CONSTRAINT outbox_events_payload_flat;

ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_payment_event_types CHECK (
  aggregate_type <> 'payment'
  OR event_type IN ('payment_created', 'payment_authorized', 'payment_settled', 'payment_failed', 'payment_canceled',
                    'payment_expired', 'payment_expiring', 'refund_created', 'refund_succeeded', 'refund_failed')
) NOT VALID;
ALTER TABLE outbox_events VALIDATE CONSTRAINT outbox_events_payment_event_types;
