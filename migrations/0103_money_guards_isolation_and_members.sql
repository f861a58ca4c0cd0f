-- An outside database review (2026-12-05, raw SQL with the application's credentials) moved money
-- past three guards and froze a payment with a fourth:
--
--   * F1, the refund cap: `refunds_guard_insert` (0047) locks the payment row, then sums its refunds
--     with a plain SELECT. At READ COMMITTED that SELECT reads after the lock is granted and sees a
--     refund committed meanwhile; at REPEATABLE READ or SERIALIZABLE it reads the transaction's
--     snapshot, taken before, and a lock alone raises no serialization failure. Two pay_app sessions
--     (one at REPEATABLE READ) refunded 20000 of a 10000 capture, both SUCCEEDED and posted. The
--     refund's insert now requires READ COMMITTED, as 0079 made the cancel's check require it (the
--     application never runs another level). `refunds_insert_fee_returned` (0062) sums the same way
--     on the same insert: covered by the same trigger, which fires before both (trigger names sort).
--   * F2, corrections: 0100 made the role guards of 0098/0099 ask `acts_as_role` (a login role that
--     is a MEMBER of pay_app holds its grants), but 0091's correction rule still compared
--     `current_user` with 'pay_app': a member role posted `correction:` credits to any merchant's
--     payable (+1,000,000). Same check now, by membership.
--   * F6, a payment dated in the future: `payments_guard_update` refuses `updated_at` moving back but
--     set no upper bound, so a raw transition dated 2999 froze the payment (its settle was refused on
--     every retry after the acquirer captured). The application writes `updated_at` from its own clock
--     (the state machine), so the bound allows that clock to run ahead of the database's by up to
--     five minutes (a server further ahead fails its transitions, loudly, until its clock is fixed;
--     docs/runbook.md): what a raw write can still do is hold a payment for five minutes.
--   * F7, fee terms: a settlement row kept terms (290 bps + 30) that do not give its fee (0); the
--     fee now follows the terms kept, by the one rounding rule (packages/settlement/src/Fees.ts:
--     the percentage rounded half up, the fixed part added, capped at the gross).
--
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), like 0047, 0079, 0091; F7 a CHECK (23514).

-- F1.
CREATE FUNCTION refunds_reject_isolation() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'refund % of payment % can be created only at READ COMMITTED (not %): the refund cap must see refunds committed after the transaction began',
    NEW.id, NEW.payment_id, current_setting('transaction_isolation')
    USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER refunds_at_read_committed BEFORE INSERT ON refunds
  FOR EACH ROW WHEN (current_setting('transaction_isolation') <> 'read committed')
  EXECUTE FUNCTION refunds_reject_isolation();

-- F2: 0091's function, the correction rule by membership (acts_as_role, 0100); nothing else changed.
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
    CONTINUE WHEN v_reference LIKE 'correction:_%' AND NOT acts_as_role('pay_app');
    SELECT a.code INTO v_account
    FROM new_entries n JOIN accounts a ON a.id = n.account_id
    WHERE n.transaction_id = v_transaction
      AND (a.code LIKE 'merchant:mer\_%:payable:%' OR a.code LIKE 'platform:fees:%' OR a.code LIKE 'acquirer:receivable:%')
    LIMIT 1;
    IF FOUND THEN
      RAISE EXCEPTION 'ledger transaction % (%) touches %: only a settlement (payment:<id>:settlement) or a refund (payment:<id>:refund:<id>) moves a merchant''s payable, the platform''s fees or the acquirer''s receivable; an operator''s correction is correction:<incident>, not by the application''s role or a member of it',
        v_transaction, v_reference, v_account
        USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END LOOP;
  RETURN NULL;
END $$;

-- F6. `payments_dated_*` sorts before `payments_guard_*`: the date is refused before anything else is read.
CREATE FUNCTION payments_reject_future() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'payment % is dated % , more than 5 minutes after the database''s clock (%)', NEW.id, NEW.updated_at, clock_timestamp()
    USING ERRCODE = 'integrity_constraint_violation',
          HINT = 'updated_at comes from the server''s clock: check its time against the database''s (docs/runbook.md)';
END $$;
CREATE TRIGGER payments_dated_not_future BEFORE INSERT OR UPDATE ON payments
  FOR EACH ROW WHEN (NEW.updated_at > clock_timestamp() + interval '5 minutes')
  EXECUTE FUNCTION payments_reject_future();

-- F7. NOT VALID then VALIDATE, as 0087 (every row the application wrote follows its terms). Its name sorts
-- after the older CHECKs, which PostgreSQL evaluates first (by name): a negative fee still says so.
ALTER TABLE payment_settlements ADD CONSTRAINT payment_settlements_terms_give_fee CHECK (
  fee_minor = least(gross_minor, (gross_minor * fee_bps + 5000) / 10000 + fee_fixed_minor)) NOT VALID;
ALTER TABLE payment_settlements VALIDATE CONSTRAINT payment_settlements_terms_give_fee;
