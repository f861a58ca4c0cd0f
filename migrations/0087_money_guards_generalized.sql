-- Closing the raw-SQL paths of the money review (.scratch/review-money.md, F1-F6 and F8; each
-- reproduced as pay_app, F6 as the owner). Each part below refuses something the application never
-- does, so it costs the application nothing:
--
--   * F1: an unfinished idempotency key past `started` (refund_requested, capture_requested,
--     void_requested, authorization_requested, or any operation's point) could be deleted,
--     re-pointed (`recovery_data` rewritten) or moved to another point by pay_app: the same request
--     then ran again, refunding twice at the acquirer while the first refund stayed PENDING forever.
--     0079 refused it for `authorization_requested` only; now for every point. The application
--     deletes only finished keys (the reaper) or keys still at `started` (release, the reaper); a
--     run writes its recovery point and data once, from `started` (`advance`), and afterwards only
--     finishes the key (`recovery_point = 'finished'`) or touches its lease (release, a takeover),
--     its parking (the completer, `pnpm cli idempotency retry`) and `last_run_at`/`run_count`.
--   * F6: TRUNCATE idempotency_keys (the owner) fires no row trigger; now refused like the other
--     money tables' `*_no_truncate`. Nothing of ours truncates the table (tests clone a template).
--   * F2: a refund's reversal posting had its reference and total checked (0047) and its
--     platform-fees debit (0062), not its accounts: pay_app could refund merchant A's payment from
--     merchant B's payable. Now its legs are compared, as 0011 compares a settlement's: debit
--     merchant:<refund's merchant>:payable:<CUR> the refund less the fee returned, debit
--     platform:fees:<CUR> the fee returned, credit acquirer:receivable:<CUR> the refund, nothing
--     else (a zero leg is absent), which is exactly what RefundPosting.post writes.
--   * F3: a balanced posting under a free reference moved money between merchants. A posting that
--     touches a merchant's payable (`merchant:mer_…:payable:…`: a code naming a merchant id, the
--     form merchants.id must have) is now refused unless its reference is a settlement's
--     (`payment:%:settlement`, tied to its payment_settlements row and legs by 0011) or a refund's
--     (`payment:%:refund:%`, tied to its SUCCEEDED refund by 0047 and to its legs above). The
--     platform posts nothing else. Codes of no merchant (the ledger's own tests use
--     `merchant:1:payable:USD`, `merchant:funds:…`) are not a merchant's money and stay free. Cost
--     on the settle and refund paths: one primary-key probe of `transactions` per entries
--     statement; the accounts are looked at only under any other reference.
--   * F4: an account's terms follow its code: a merchant's payable is a liability that may not go
--     negative, `acquirer:receivable:*` an asset, `platform:fees:*` revenue, none negative (the
--     terms of `packages/settlement/src/Accounts.ts`). A squatted payable with other terms made every
--     settle of that merchant and currency capture at the acquirer, then fail.
--   * F5: an outbox row is never inserted already published (the publisher skips it, so its event
--     never left), and a mark of publication on an unpublished row is not before the row's
--     creation (the publisher marks with clock_timestamp(), after the row committed; re-queueing
--     sets NULL; 0088 refuses marks before the marking transaction). A row published by an earlier
--     transaction may still be moved (the retention tests age rows that way). What stays possible
--     for pay_app: marking an unpublished row "now" and deleting it after retention in a later
--     transaction (the publisher needs that grant): docs/invariants.md, docs/security.md.
--   * F8: merchant_fee_schedules.currency was any three capitals; now the supported list, the one
--     payments_currency_check holds (a test compares the two).
--
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), like 0079 and 0011; 23514 from the CHECKs.

-- F1. An unfinished key past `started` keeps its point and its data until it is finished, and is
-- not deleted. (0079's trigger, sorted first by name, still answers for authorization keys.)
CREATE FUNCTION idempotency_keys_in_flight_kept() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'idempotency key % cannot be deleted: its work is in flight at % (%)', OLD.id, OLD.recovery_point, OLD.recovery_data
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'an unfinished key is resumed by a retry or the completer; parked keys: pnpm cli idempotency parked';
  END IF;
  IF NEW.recovery_point IS DISTINCT FROM OLD.recovery_point AND NEW.recovery_point IS DISTINCT FROM 'finished' THEN
    RAISE EXCEPTION 'idempotency key % is in flight at % (%): it can only be finished, not moved to %',
      OLD.id, OLD.recovery_point, OLD.recovery_data, NEW.recovery_point
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.recovery_data IS DISTINCT FROM OLD.recovery_data THEN
    RAISE EXCEPTION 'idempotency key % is in flight at % (%): its recovery data cannot change (to %)',
      OLD.id, OLD.recovery_point, OLD.recovery_data, NEW.recovery_data
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER idempotency_keys_in_flight_kept BEFORE UPDATE OR DELETE ON idempotency_keys
  FOR EACH ROW WHEN (OLD.finished_at IS NULL AND OLD.recovery_point <> 'started')
  EXECUTE FUNCTION idempotency_keys_in_flight_kept();

-- F6.
CREATE FUNCTION idempotency_keys_reject_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'TRUNCATE on idempotency_keys is not allowed: keys in flight and stored answers would be lost'
    USING ERRCODE = 'integrity_constraint_violation',
          HINT = 'the reaper deletes finished keys past the retention and keys that never started';
END $$;
CREATE TRIGGER idempotency_keys_no_truncate BEFORE TRUNCATE ON idempotency_keys
  FOR EACH STATEMENT EXECUTE FUNCTION idempotency_keys_reject_truncate();

-- F2. A SUCCEEDED refund's posting has exactly the legs of its refund (sorted lists of
-- [side, account, amount, currency], as 0011). Sorted after refunds_guard_fee_returned and
-- refunds_guard_update by name, so their own refusals (reference, total, fee share) come first.
CREATE FUNCTION refunds_posting_legs() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_expected jsonb;
  v_actual jsonb;
BEGIN
  SELECT coalesce(jsonb_agg(jsonb_build_array(l.side, l.account, l.amount_minor::text, NEW.currency::text)
                            ORDER BY l.side, l.account, l.amount_minor), '[]'::jsonb)
  INTO v_expected
  FROM (VALUES ('debit', 'merchant:' || NEW.merchant_id || ':payable:' || NEW.currency, NEW.amount_minor - NEW.fee_returned_minor),
               ('debit', 'platform:fees:' || NEW.currency, NEW.fee_returned_minor),
               ('credit', 'acquirer:receivable:' || NEW.currency, NEW.amount_minor)) AS l(side, account, amount_minor)
  WHERE l.amount_minor > 0;
  SELECT coalesce(jsonb_agg(jsonb_build_array(e.side::text, a.code, e.amount_minor::text, e.currency::text)
                            ORDER BY e.side::text, a.code, e.amount_minor), '[]'::jsonb)
  INTO v_actual
  FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
  WHERE e.transaction_id = NEW.ledger_transaction_id;
  IF v_actual IS DISTINCT FROM v_expected THEN
    RAISE EXCEPTION 'refund % of payment %: posting % has legs %, a refund of % % (fee returned %) of merchant % has %',
      NEW.id, NEW.payment_id, NEW.ledger_transaction_id, v_actual, NEW.amount_minor, NEW.currency, NEW.fee_returned_minor,
      NEW.merchant_id, v_expected
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refunds_posting_legs BEFORE UPDATE ON refunds
  FOR EACH ROW WHEN (NEW.status = 'SUCCEEDED')
  EXECUTE FUNCTION refunds_posting_legs();

-- F3. At the end of each statement that writes entries (they are sealed then, 0009, and a
-- transaction's reference never changes, 0002): per ledger transaction written, one probe of its
-- reference; only when it is neither a settlement's nor a refund's, a look for a merchant's payable
-- among its new entries.
CREATE FUNCTION ledger_entries_merchant_payable_reference() RETURNS trigger
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
    WHERE n.transaction_id = v_transaction AND a.code LIKE 'merchant:mer\_%:payable:%'
    LIMIT 1;
    IF FOUND THEN
      RAISE EXCEPTION 'ledger transaction % (%) touches the merchant payable %: only a settlement (payment:<id>:settlement) or a refund (payment:<id>:refund:<id>) moves a merchant''s money',
        v_transaction, v_reference, v_account
        USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END LOOP;
  RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_merchant_payable_reference AFTER INSERT ON ledger_entries
  REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_merchant_payable_reference();

-- F4. NOT VALID then VALIDATE, the same verdict as a plain CHECK. The migrator applies every
-- pending file in one transaction, so the locks these statements and the triggers above take are
-- held until it commits: small tables, and the servers migrate before they serve.
ALTER TABLE accounts ADD CONSTRAINT accounts_terms_follow_code CHECK (
  (code NOT LIKE 'merchant:mer\_%:payable:%' OR (type = 'liability' AND NOT allow_negative))
  AND (code NOT LIKE 'acquirer:receivable:%' OR (type = 'asset' AND NOT allow_negative))
  AND (code NOT LIKE 'platform:fees:%' OR (type = 'revenue' AND NOT allow_negative))) NOT VALID;
ALTER TABLE accounts VALIDATE CONSTRAINT accounts_terms_follow_code;

-- F5. Sorted after 0010's and 0088's outbox triggers by name, so their refusals come first.
CREATE FUNCTION outbox_events_reject_early_mark() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    RAISE EXCEPTION 'outbox event % cannot be inserted already published (published_at %): its event would never be sent', NEW.id, NEW.published_at
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'events are inserted unpublished; the publisher marks them after the broker acknowledged them';
  END IF;
  RAISE EXCEPTION 'outbox event %: its mark of publication % is before the event was created (%)', OLD.id, NEW.published_at, OLD.created_at
    USING ERRCODE = 'integrity_constraint_violation',
          HINT = 'the publisher marks rows with clock_timestamp(); re-queueing sets published_at to NULL';
END $$;
CREATE TRIGGER outbox_events_unpublished_at_insert BEFORE INSERT ON outbox_events
  FOR EACH ROW WHEN (NEW.published_at IS NOT NULL)
  EXECUTE FUNCTION outbox_events_reject_early_mark();
CREATE TRIGGER outbox_events_published_after_created BEFORE UPDATE OF published_at ON outbox_events
  FOR EACH ROW WHEN (OLD.published_at IS NULL AND NEW.published_at < OLD.created_at)
  EXECUTE FUNCTION outbox_events_reject_early_mark();

-- F8. The list of payments_currency_check (0003).
ALTER TABLE merchant_fee_schedules ADD CONSTRAINT merchant_fee_schedules_currency_supported CHECK (currency IN (
    'AED', 'ARS', 'AUD', 'BHD', 'BIF', 'BRL', 'CAD', 'CHF', 'CLP', 'CNY', 'COP', 'CZK', 'DJF', 'DKK',
    'EGP', 'EUR', 'GBP', 'GNF', 'HKD', 'HUF', 'IDR', 'ILS', 'INR', 'IQD', 'ISK', 'JOD', 'JPY', 'KES',
    'KMF', 'KRW', 'KWD', 'LYD', 'MAD', 'MXN', 'MYR', 'NGN', 'NOK', 'NZD', 'OMR', 'PEN', 'PHP', 'PKR',
    'PLN', 'PYG', 'QAR', 'RON', 'RSD', 'RWF', 'SAR', 'SEK', 'SGD', 'THB', 'TND', 'TRY', 'TWD', 'UAH',
    'UGX', 'USD', 'VND', 'VUV', 'XAF', 'XOF', 'XPF', 'ZAR')) NOT VALID;
ALTER TABLE merchant_fee_schedules VALIDATE CONSTRAINT merchant_fee_schedules_currency_supported;
