-- bench:api preload phase (issue 18: "cost stays flat as data grows"): :payments payments of
-- merchant :'merchant' (each with its history row, its published outbox event and its finished
-- idempotency key) and :entries ledger entries (two-leg balanced transactions between two
-- accounts of their own), written with SQL, not the API, into the benchmark's own database.
--
-- Consistent by construction, so the row triggers are off for the bulk inserts
-- (session_replication_role = replica: a superuser setting, this session only); the two accounts
-- are opened with triggers on (their balance rows), and their balances are then set to the sums
-- of the entries written, so ledger_verify() still holds.
\set ON_ERROR_STOP on

BEGIN;
INSERT INTO accounts (code, type, currency, allow_negative) VALUES
  ('preload:assets:USD', 'asset', 'USD', true),
  ('preload:funding:USD', 'liability', 'USD', true);
COMMIT;

SET session_replication_role = replica;

BEGIN;
INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, description, metadata,
                      status, failure_code, failure_message, version, created_at, updated_at)
SELECT 'pay_' || lpad(to_hex(g), 24, '0'), :'merchant', 1000 + g % 5000, 'USD', 'pm_card_visa', NULL, '{}'::jsonb,
       'CREATED', NULL, NULL, 1, now() - make_interval(secs => g), now() - make_interval(secs => g)
FROM generate_series(1, :payments) AS g;

INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, reason, correlation_id, traceparent, occurred_at)
SELECT 'pay_' || lpad(to_hex(g), 24, '0'), 1, NULL, 'CREATED', 'system:preload', NULL, 'preload', NULL, now() - make_interval(secs => g)
FROM generate_series(1, :payments) AS g;

INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers, created_at, published_at)
SELECT gen_random_uuid(), 'payment', 'pay_' || lpad(to_hex(g), 24, '0'), 'payment_created', 1, '{}'::jsonb,
       '{"correlation_id":"preload"}'::jsonb, now() - make_interval(secs => g), now() - make_interval(secs => g)
FROM generate_series(1, :payments) AS g;

INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint,
                              request_body, operation, recovery_point, response_status, response_body,
                              response_content_type, created_at, last_run_at, finished_at)
SELECT gen_random_uuid(), :'merchant', 'preload-' || g, 'POST', '/v1/payments', repeat('0', 64), NULL, NULL,
       'finished', 201, '{}', 'application/json', now(), now(), now()
FROM generate_series(1, :payments) AS g;
COMMIT;

BEGIN;
INSERT INTO transactions (reference, description)
SELECT 'preload:' || g, 'preload' FROM generate_series(1, (:entries) / 2) AS g;

INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency)
SELECT t.id, leg.n, a.id, leg.side::ledger_side, 100, 'USD'
FROM transactions t
CROSS JOIN (VALUES (1, 'debit', 'preload:assets:USD'), (2, 'credit', 'preload:funding:USD')) AS leg (n, side, code)
JOIN accounts a ON a.code = leg.code
WHERE t.reference LIKE 'preload:%';

-- Both accounts grow on their normal side by the same total (debit asset, credit liability).
UPDATE account_balances b SET balance_minor = ((:entries) / 2) * 100
FROM accounts a WHERE a.id = b.account_id AND a.code IN ('preload:assets:USD', 'preload:funding:USD');
COMMIT;

SET session_replication_role = origin;
ANALYZE;
