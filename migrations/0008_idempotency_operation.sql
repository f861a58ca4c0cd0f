-- The operation a key runs, with its arguments, stored with the key at its first run, so that the
-- background completer can finish an abandoned key from data (decoded by the payments package's
-- schema, packages/payments/src/PaymentOperation.ts) instead of re-parsing the stored URL.
-- Like the request it belongs to, it never changes once written.
ALTER TABLE idempotency_keys ADD COLUMN operation jsonb
  CHECK (operation IS NULL OR (jsonb_typeof(operation) = 'object' AND operation ? '_tag'));

-- Keys still unfinished when this migration runs were written without it: derive it once from
-- what they stored (the payments API's three POSTs), so the completer can still finish them.
UPDATE idempotency_keys
SET operation = CASE
    WHEN request_path = '/v1/payments' THEN
      jsonb_build_object('_tag', 'create', 'amount_minor', request_body -> 'amount')
        || (coalesce(request_body, '{}'::jsonb) - 'amount')
    ELSE jsonb_build_object('_tag', split_part(request_path, '/', 5), 'payment_id', split_part(request_path, '/', 4))
  END
WHERE finished_at IS NULL AND request_method = 'POST'
  AND (request_path = '/v1/payments' OR request_path ~ '^/v1/payments/[^/]+/(authorize|settle)$');

CREATE OR REPLACE FUNCTION idempotency_keys_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.finished_at IS NOT NULL THEN
    RAISE EXCEPTION 'idempotency key % of merchant % is finished: its stored response is final',
      OLD.idempotency_key, OLD.merchant_id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.id IS DISTINCT FROM OLD.id
     OR NEW.merchant_id IS DISTINCT FROM OLD.merchant_id
     OR NEW.idempotency_key IS DISTINCT FROM OLD.idempotency_key
     OR NEW.request_method IS DISTINCT FROM OLD.request_method
     OR NEW.request_path IS DISTINCT FROM OLD.request_path
     OR NEW.request_fingerprint IS DISTINCT FROM OLD.request_fingerprint
     OR NEW.request_body IS DISTINCT FROM OLD.request_body
     OR NEW.operation IS DISTINCT FROM OLD.operation
     OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
    RAISE EXCEPTION 'idempotency key % of merchant %: the request it names is immutable',
      OLD.idempotency_key, OLD.merchant_id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
