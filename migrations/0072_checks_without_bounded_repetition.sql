-- The format CHECKs of the rows written on every request and every consumed event, rewritten
-- without bounded repetition (issues 14 and 18: cost per event and per request). Each refuses
-- exactly what it refused before (packages/infra/test/check-rewrites.test.ts compares old and new
-- on the same inputs, in this server's regex engine).
--
-- Why: PostgreSQL's regex engine expands a bounded repetition `{m,n}` into n copies of its
-- automaton and builds the matching DFA lazily on each call, so its cost grows with the bound.
-- Measured here (10^5 rows, one evaluation each, PostgreSQL 15):
--   '^[a-z0-9_.-]{1,100}$'                          12 µs   -> '+' and length() <= 100   0.8 µs
--   '^[0-9a-f]{64}$'                                14 µs   -> '+' and length() = 64     0.8 µs
--   '^pm_[A-Za-z0-9_]{1,64}$'                        9 µs   -> '+' and length() <= 67    0.8 µs
--   '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'  10.5 µs -> dashes at fixed places 2.7 µs
--   '^pay_[0-9a-hjkmnp-tv-z]{24}$'                   5 µs   -> '+' and length() = 28     1.5 µs
-- processed_events' consumer check alone was 12 of the ~50 µs of Postgres CPU per consumed event
-- (a row per event), and a row's CHECKs run again on every UPDATE of it (idempotency keys move
-- through recovery points). Small bounds ({3} for currencies, {4}) cost nothing and stay.
--
-- The rule for new constraints: a character class with '+' or '*' and the length bound as
-- length(...) (these classes are ASCII, so characters are bytes). Each constraint keeps its name.
-- On a large table the re-check of existing rows is a scan under this migration's lock.

ALTER TABLE processed_events DROP CONSTRAINT processed_events_consumer_check,
  ADD CONSTRAINT processed_events_consumer_check CHECK (consumer ~ '^[a-z0-9_.-]+$' AND length(consumer) <= 100);
ALTER TABLE consumer_offsets DROP CONSTRAINT consumer_offsets_consumer_check,
  ADD CONSTRAINT consumer_offsets_consumer_check CHECK (consumer ~ '^[a-z0-9_.-]+$' AND length(consumer) <= 100);
ALTER TABLE settlement_projection_live DROP CONSTRAINT settlement_projection_live_consumer_check,
  ADD CONSTRAINT settlement_projection_live_consumer_check CHECK (consumer ~ '^[a-z0-9_.-]+$' AND length(consumer) <= 100);

ALTER TABLE payments DROP CONSTRAINT payments_id_check,
  ADD CONSTRAINT payments_id_check CHECK (id ~ '^pay_[0-9a-hjkmnp-tv-z]+$' AND length(id) = 28);
ALTER TABLE payments DROP CONSTRAINT payments_payment_method_check,
  ADD CONSTRAINT payments_payment_method_check
    CHECK (payment_method ~ '^pm_[A-Za-z0-9_]+$' AND length(payment_method) <= 67 AND payment_method !~ '[0-9]{12}');
ALTER TABLE payments DROP CONSTRAINT payments_failure_code_check,
  ADD CONSTRAINT payments_failure_code_check
    CHECK (failure_code IS NULL OR (failure_code ~ '^[a-z][a-z0-9_]*$' AND length(failure_code) <= 64));
ALTER TABLE payment_status_history DROP CONSTRAINT payment_status_history_traceparent_check,
  ADD CONSTRAINT payment_status_history_traceparent_check
    CHECK (traceparent IS NULL OR (traceparent ~ '^[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$' AND length(traceparent) = 55
           AND substr(traceparent, 3, 1) = '-' AND substr(traceparent, 36, 1) = '-' AND substr(traceparent, 53, 1) = '-'));

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_request_method_check,
  ADD CONSTRAINT idempotency_keys_request_method_check CHECK (request_method ~ '^[A-Z]+$' AND length(request_method) <= 16);
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_request_fingerprint_check,
  ADD CONSTRAINT idempotency_keys_request_fingerprint_check CHECK (request_fingerprint ~ '^[0-9a-f]+$' AND length(request_fingerprint) = 64);
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_recovery_point_check,
  ADD CONSTRAINT idempotency_keys_recovery_point_check CHECK (recovery_point ~ '^[a-z][a-z0-9_]*$' AND length(recovery_point) <= 64);

ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_payment_id_check,
  ADD CONSTRAINT webhook_deliveries_payment_id_check CHECK (payment_id ~ '^pay_[0-9a-hjkmnp-tv-z]+$' AND length(payment_id) = 28);
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_type_check,
  ADD CONSTRAINT webhook_deliveries_event_type_check CHECK (event_type ~ '^[a-z_]+$' AND length(event_type) <= 64);
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_refund_id_check,
  ADD CONSTRAINT webhook_deliveries_refund_id_check
    CHECK (refund_id IS NULL OR (refund_id ~ '^re_[0-9a-hjkmnp-tv-z]+$' AND length(refund_id) = 27));

ALTER TABLE refunds DROP CONSTRAINT refunds_id_check,
  ADD CONSTRAINT refunds_id_check CHECK (id ~ '^re_[0-9a-hjkmnp-tv-z]+$' AND length(id) = 27);
ALTER TABLE refunds DROP CONSTRAINT refunds_failure_code_check,
  ADD CONSTRAINT refunds_failure_code_check
    CHECK (failure_code IS NULL OR (failure_code ~ '^[a-z][a-z0-9_]*$' AND length(failure_code) <= 64));
