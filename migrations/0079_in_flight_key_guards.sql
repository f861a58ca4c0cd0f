-- Closing the raw-SQL paths around 0078 (found by an outside review, each reproduced as pay_app).
-- 0078's cancel trigger looks for the payment's authorization in flight: an unfinished key at
-- `authorization_requested`. That holds only if such a key cannot be hidden from it, and if the
-- look sees keys committed after the cancel's transaction began:
--
--   * a CREATED -> CANCELED under REPEATABLE READ or SERIALIZABLE read the keys in a snapshot taken
--     before a key committed, and canceled (SSI does not help: the key's writer runs at READ
--     COMMITTED). The cancel now requires READ COMMITTED, as the application runs;
--   * pay_app may DELETE and UPDATE idempotency keys: an in-flight authorization key could be
--     deleted, re-pointed at another payment (`recovery_data.payment_id`), moved back to another
--     recovery point, or finished by hand while its payment is still CREATED. Each is refused now.
--     The application never does any of them: the reaper deletes finished or never-started keys,
--     and every finish of an authorization moves the payment off CREATED in the same transaction
--     (authorized, declined), checked at COMMIT (a deferred constraint trigger).
--
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), like 0003.

CREATE OR REPLACE FUNCTION payments_cancel_needs_no_authorization_in_flight() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  in_flight uuid;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'payment % can be canceled before authorization only at READ COMMITTED (not %): the check of its authorization in flight must see keys committed after the transaction began',
      OLD.id, current_setting('transaction_isolation')
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  SELECT id INTO in_flight FROM idempotency_keys
  WHERE recovery_data ->> 'payment_id' = OLD.id AND finished_at IS NULL AND recovery_point = 'authorization_requested'
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'payment % cannot be canceled while its authorization is in flight (idempotency key %)', OLD.id, in_flight
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;

-- An unfinished key at `authorization_requested` keeps its payment and its point until it is finished.
CREATE FUNCTION idempotency_keys_authorization_kept() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'idempotency key % cannot be deleted: its authorization of payment % is in flight', OLD.id, OLD.recovery_data ->> 'payment_id'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.recovery_data ->> 'payment_id' IS DISTINCT FROM OLD.recovery_data ->> 'payment_id' THEN
    RAISE EXCEPTION 'idempotency key % is authorizing payment %: its payment cannot change', OLD.id, OLD.recovery_data ->> 'payment_id'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.recovery_point NOT IN ('authorization_requested', 'finished') THEN
    RAISE EXCEPTION 'idempotency key % is authorizing payment %: it can only be finished, not moved back to %',
      OLD.id, OLD.recovery_data ->> 'payment_id', NEW.recovery_point
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER idempotency_keys_authorization_kept BEFORE UPDATE OR DELETE ON idempotency_keys
  FOR EACH ROW WHEN (OLD.recovery_point = 'authorization_requested' AND OLD.finished_at IS NULL)
  EXECUTE FUNCTION idempotency_keys_authorization_kept();

-- At COMMIT: a finished authorization moved its payment off CREATED (authorized or declined).
CREATE FUNCTION idempotency_keys_authorization_decided() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM payments WHERE id = NEW.recovery_data ->> 'payment_id' AND status = 'CREATED') THEN
    RAISE EXCEPTION 'idempotency key % finished its authorization of payment % without deciding it (the payment is still CREATED)',
      NEW.id, NEW.recovery_data ->> 'payment_id'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER idempotency_keys_authorization_decided AFTER UPDATE ON idempotency_keys
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (OLD.recovery_point = 'authorization_requested' AND NEW.finished_at IS NOT NULL AND OLD.finished_at IS NULL)
  EXECUTE FUNCTION idempotency_keys_authorization_decided();
