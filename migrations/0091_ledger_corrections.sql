-- The runbook's correction of a ledger discrepancy (docs/runbook.md, "`ledger_verify()` returns
-- rows": a new, reversing transaction whose reference names the incident) was refused by 0087/0090
-- for every account of the platform: only a settlement's or a refund's reference may move a
-- merchant's payable, the fees or the acquirer's receivable (outside review of the session's diff).
-- A correction is now a reference `correction:<incident>` posted by an operator's role: not by the
-- application's role `pay_app`, which never posts one (so an attacker holding pay_app's grants
-- still cannot move money under it). Same check otherwise, same cost.
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
    CONTINUE WHEN v_reference LIKE 'correction:_%' AND current_user <> 'pay_app';
    SELECT a.code INTO v_account
    FROM new_entries n JOIN accounts a ON a.id = n.account_id
    WHERE n.transaction_id = v_transaction
      AND (a.code LIKE 'merchant:mer\_%:payable:%' OR a.code LIKE 'platform:fees:%' OR a.code LIKE 'acquirer:receivable:%')
    LIMIT 1;
    IF FOUND THEN
      RAISE EXCEPTION 'ledger transaction % (%) touches %: only a settlement (payment:<id>:settlement) or a refund (payment:<id>:refund:<id>) moves a merchant''s payable, the platform''s fees or the acquirer''s receivable; an operator''s correction is correction:<incident>, not by the application''s role',
        v_transaction, v_reference, v_account
        USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END LOOP;
  RETURN NULL;
END $$;
