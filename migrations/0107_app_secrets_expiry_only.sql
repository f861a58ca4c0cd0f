-- A re-test of 0104 (2026-12-05): 0104 let `pay_consumer` only seal or re-seal a webhook secret,
-- but the API's role `pay_app` still held UPDATE on every column of `webhook_endpoint_secrets`
-- (0030): it copied merchant A's secret onto merchant B's endpoint (B's webhooks then signed with
-- A's secret, refused by B's receiver), and with sealing on could write a plain secret of its
-- choice over a sealed one. The application's role only ever updates `expires_at` (a rotation's
-- grace period, packages/webhooks/src/Endpoints.ts); the sender re-seals as pay_consumer.
REVOKE UPDATE ON webhook_endpoint_secrets FROM pay_app;
GRANT UPDATE (expires_at) ON webhook_endpoint_secrets TO pay_app;
