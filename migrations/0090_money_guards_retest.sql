-- What an outside re-test of 0087/0088 still broke as pay_app (each reproduced; the application
-- never does any of it, so each refusal costs it nothing):
--
--   * R1: an in-flight refund key could not be deleted any more (0087), but it could be marked
--     finished by hand, with a made-up answer, and then deleted (a finished key may be: the
--     reaper's retention): the same request then refunded again at the acquirer while the first
--     refund stayed PENDING for ever. A key at `refund_requested` is now finished only with its
--     refund decided (SUCCEEDED or FAILED) by COMMIT, as 0079 does for authorizations: the
--     application completes the refund and finishes the key in one transaction
--     (RefundPayment.ts). Captures and voids have no such rule: a declined capture or void leaves
--     the payment AUTHORIZED, so "decided" cannot be read from the payment (docs/invariants.md).
--   * R3: 0087 tied an account's type to its code, not its currency: `merchant:<id>:payable:CHF`
--     created holding EUR made every CHF settle of that merchant capture at the acquirer and then
--     fail, for good (accounts never change). The platform's accounts now end in their currency.
--   * R2: an outbox row dated in the future (created_at 2100) could not be marked published
--     (0087: not before its creation), so the publisher re-sent its batch for ever and published
--     nothing else. A row is created at the time of its insert (the column's default,
--     clock_timestamp()): 0010 refuses one before its transaction began, this one after the
--     insert (a default taken before this BEFORE trigger runs is never later than its clock).
--   * R4: 0087 tied only merchants' payables to a settlement or refund reference; a posting under
--     any other reference could still move the platform's own accounts (5,000 of fee revenue out
--     of nothing, unseen by ledger_verify() and reconcile). The fees and the acquirer's receivable
--     are now tied the same way: the platform posts nothing else to them.
--
-- Errors: SQLSTATE 23000 (integrity_constraint_violation); 23514 from the CHECK.

-- R1, at COMMIT (deferred, as 0079's): the refund the key names is no longer PENDING.
CREATE FUNCTION idempotency_keys_refund_decided() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM refunds WHERE id = NEW.recovery_data ->> 'refund_id' AND status = 'PENDING') THEN
    RAISE EXCEPTION 'idempotency key % finished its refund % without deciding it (the refund is still PENDING)',
      NEW.id, NEW.recovery_data ->> 'refund_id'
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'a refund in flight is finished by its retry or the completer, which decide the refund in the same transaction';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER idempotency_keys_refund_decided AFTER UPDATE ON idempotency_keys
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (OLD.recovery_point = 'refund_requested' AND NEW.finished_at IS NOT NULL AND OLD.finished_at IS NULL)
  EXECUTE FUNCTION idempotency_keys_refund_decided();

-- R3. NOT VALID then VALIDATE, as 0087 (the migrator's single transaction holds the lock until it commits).
ALTER TABLE accounts ADD CONSTRAINT accounts_currency_follows_code CHECK (
  (code NOT LIKE 'merchant:mer\_%:payable:%' AND code NOT LIKE 'acquirer:receivable:%' AND code NOT LIKE 'platform:fees:%')
  OR right(code, 4) = ':' || currency) NOT VALID;
ALTER TABLE accounts VALIDATE CONSTRAINT accounts_currency_follows_code;

-- R2.
CREATE FUNCTION outbox_events_reject_future() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'outbox event % is dated in the future: created_at % is after its insert', NEW.id, NEW.created_at
    USING ERRCODE = 'integrity_constraint_violation',
          HINT = 'created_at takes its default, clock_timestamp()';
END $$;
CREATE TRIGGER outbox_events_not_future BEFORE INSERT ON outbox_events
  FOR EACH ROW WHEN (NEW.created_at > clock_timestamp())
  EXECUTE FUNCTION outbox_events_reject_future();

-- R4: 0087's check, for the platform's fees and receivable too (same trigger, same cost: the
-- accounts are read only under a reference that is neither a settlement's nor a refund's).
CREATE OR REPLACE FUNCTION ledger_entries_merchant_payable_reference() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_transaction bigint;
  v_reference text;
  v_account text;
BEGIN
  FOR v_transaction IN SELECT DISTINCT n.transaction_id FROM new_entries n LOOP
    SELECT t.reference INTO v_reference FROM transactions t WHERE t.id = v_transaction;
    CONTINUE WHEN v_reference LIKE 'payment:%:settlement' OR v_reference LIKE 'payment:%:refund:%';
    SELECT a.code INTO v_account
    FROM new_entries n JOIN accounts a ON a.id = n.account_id
    WHERE n.transaction_id = v_transaction
      AND (a.code LIKE 'merchant:mer\_%:payable:%' OR a.code LIKE 'platform:fees:%' OR a.code LIKE 'acquirer:receivable:%')
    LIMIT 1;
    IF FOUND THEN
      RAISE EXCEPTION 'ledger transaction % (%) touches %: only a settlement (payment:<id>:settlement) or a refund (payment:<id>:refund:<id>) moves a merchant''s payable, the platform''s fees or the acquirer''s receivable',
        v_transaction, v_reference, v_account
        USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END LOOP;
  RETURN NULL;
END $$;
