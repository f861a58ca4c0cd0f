-- Webhook signing secrets sealed at rest (packages/webhooks/src/SecretSealing.ts): with
-- WEBHOOK_SECRETS_KEY set, a secret is stored as `sealed:v1:<key id>:<base64 of IV | ciphertext |
-- tag>` (AES-256-GCM, the endpoint's id as additional data; 12 + 50 + 16 = 78 bytes, 104 base64
-- characters), no longer as `whsec_…`, so a dump of this table cannot sign webhooks. Both forms are
-- accepted: secrets stored before the key was set stay valid until the sender seals them at its
-- next start. Nothing else can be stored.
ALTER TABLE webhook_endpoint_secrets DROP CONSTRAINT webhook_endpoint_secrets_secret_check;
ALTER TABLE webhook_endpoint_secrets ADD CONSTRAINT webhook_endpoint_secrets_secret_form CHECK (
  secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' OR secret ~ '^sealed:v1:[0-9a-f]{16}:[A-Za-z0-9+/]{104}$'
);
