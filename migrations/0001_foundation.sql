-- Foundation: a place for platform-wide settings. Later migrations add the ledger, payments,
-- idempotency keys and the outbox.
CREATE TABLE platform_info (
  key text PRIMARY KEY,
  value text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO platform_info (key, value) VALUES ('schema_owner', 'payments-ledger-platform');
