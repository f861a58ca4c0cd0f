-- Cancel before authorization: a merchant can cancel a CREATED payment (the customer left the
-- checkout). Before this, a CREATED payment could only be authorized or declined: an abandoned one
-- stayed CREATED for ever (found by two outside reviews). No money was reserved at the issuer, so
-- nothing is voided at the acquirer and nothing moves in the ledger: CREATED -> CANCELED with
-- `payment_canceled`.
--
-- The danger is an authorization in flight: its intent is committed (an idempotency key at the
-- recovery point `authorization_requested`, packages/payments/src/PaymentOperation.ts) and the
-- issuer may be reserving the funds right now. A cancel that won then would leave the payer's money
-- held behind a CANCELED payment that nothing voids. The two are made mutually exclusive on the
-- payment's row lock, by the code (AcquirerGate.ts, CancelBeforeAuthorization.ts) and, here, by the
-- database against raw SQL:
--
--   * a key reaching `authorization_requested` takes the payment's row FOR SHARE and requires it
--     CREATED (a cancel that committed first is seen; one in progress is waited for);
--   * CREATED -> CANCELED is refused while an unfinished key of the payment is at
--     `authorization_requested` (a key that committed first is seen: the cancel's UPDATE waits for
--     the FOR SHARE lock, then its trigger reads with a fresh snapshot).
--
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), like 0003.

ALTER TABLE payment_transitions DISABLE TRIGGER payment_transitions_immutable;
INSERT INTO payment_transitions (from_status, to_status) VALUES
  ('CREATED', 'CANCELED');  -- cancel before authorization
ALTER TABLE payment_transitions ENABLE TRIGGER payment_transitions_immutable;

-- The cancel's check reads only the (few) unfinished authorization keys, by payment.
CREATE INDEX idempotency_keys_authorization_in_flight ON idempotency_keys ((recovery_data ->> 'payment_id'))
  WHERE finished_at IS NULL AND recovery_point = 'authorization_requested';

CREATE FUNCTION idempotency_keys_authorization_needs_created() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  PERFORM 1 FROM payments WHERE id = NEW.recovery_data ->> 'payment_id' AND status = 'CREATED' FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'idempotency key % cannot request the authorization of payment %: it is not CREATED (canceled, or decided, or unknown)',
      NEW.id, NEW.recovery_data ->> 'payment_id'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
-- WHEN clauses, so that the other keys (a create's, on the hot path) never call the function.
CREATE TRIGGER idempotency_keys_authorization_needs_created BEFORE INSERT ON idempotency_keys
  FOR EACH ROW WHEN (NEW.recovery_point = 'authorization_requested')
  EXECUTE FUNCTION idempotency_keys_authorization_needs_created();
CREATE TRIGGER idempotency_keys_authorization_needs_created_update BEFORE UPDATE OF recovery_point ON idempotency_keys
  FOR EACH ROW WHEN (NEW.recovery_point = 'authorization_requested' AND OLD.recovery_point IS DISTINCT FROM NEW.recovery_point)
  EXECUTE FUNCTION idempotency_keys_authorization_needs_created();

CREATE FUNCTION payments_cancel_needs_no_authorization_in_flight() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  in_flight uuid;
BEGIN
  SELECT id INTO in_flight FROM idempotency_keys
  WHERE recovery_data ->> 'payment_id' = OLD.id AND finished_at IS NULL AND recovery_point = 'authorization_requested'
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'payment % cannot be canceled while its authorization is in flight (idempotency key %)', OLD.id, in_flight
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payments_cancel_needs_no_authorization_in_flight BEFORE UPDATE ON payments
  FOR EACH ROW WHEN (OLD.status = 'CREATED' AND NEW.status = 'CANCELED')
  EXECUTE FUNCTION payments_cancel_needs_no_authorization_in_flight();
