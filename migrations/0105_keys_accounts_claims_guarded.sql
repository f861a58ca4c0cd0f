-- An outside database review (2026-12-05, raw SQL with the application's and the consumers'
-- credentials) found three tables whose rows could be rewritten or made up, each without a guard:
--
--   * F9, API keys: `pay_app` holds UPDATE on `api_keys` (the revocation), and nothing limited it to
--     that: a key was moved to another merchant (its secret then authenticated as that merchant),
--     and a revoked key was brought back (`revoked_at = NULL`). The application writes one column of
--     a key after its insert, `revoked_at`, once, from NULL to the revocation's instant
--     (packages/merchants/src/ApiKeys.ts `revoke`; the lookup filters on it, the cache forgets a
--     revoked key within its TTL). Every other column is now fixed, and a revocation is final.
--   * F11, accounts: a currency was any three capitals (`accounts_currency_format`), so `ZZZ`
--     accounts could be opened, and `pay_app` opened `merchant:<id>:payable:USD` for merchants that
--     do not exist. An account's currency is now one of the supported ISO 4217 codes, the list of
--     `payments_currency_check` (0003) that `merchant_fee_schedules_currency_supported` (0087)
--     copies (a test compares the three). And the application's role opens a `merchant:<id>:…`
--     account only for a merchant of the `merchants` table: it opens a merchant's payable when it
--     posts that merchant's settlement (packages/settlement/src/Accounts.ts), whose payment
--     references the merchant. The owner (operators, the ledger's own tests, which name accounts
--     such as `merchant:42:payable:USD` without a merchant row) is not held to it: docs/ledger.md.
--   * F12, consumer claims: `pay_consumer` holds UPDATE on `processed_events`, for the one update the
--     consumers make (packages/consumers/src/ConsumerStore.ts `claim`): in the transaction that
--     inserted a claim as `applied`, marking it `stale` when the payment's version did not move.
--     Nothing limited it to that: a claim's `event_id` was rewritten (the event was then no longer a
--     duplicate on re-delivery; the version table alone stopped a second effect) and its outcome
--     changed. A claim is now fixed but for that one change, by the transaction that made it
--     (`processed_at` is `now()`, the claiming transaction's start, by its default). The batch path
--     (`consumer_claim_slice`, 0089) only inserts.
--
-- For everyone, the owner too, except F11's merchant rule (the application's role and its members,
-- `acts_as_role`, 0100). Errors: SQLSTATE 23000 (integrity_constraint_violation), like 0098-0103;
-- 23503 (foreign_key_violation) for an account of a merchant that does not exist, as the ledger's
-- own trigger-made foreign keys (0002, 0009); 23514 from the CHECK.

-- F9. BEFORE UPDATE: no UPDATE of the application's sets any other column, so none of them pays more
-- than this comparison (a revocation is rare).
CREATE FUNCTION api_keys_fixed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF (NEW.id, NEW.merchant_id, NEW.key_hash, NEW.prefix, NEW.created_at)
     IS DISTINCT FROM (OLD.id, OLD.merchant_id, OLD.key_hash, OLD.prefix, OLD.created_at) THEN
    RAISE EXCEPTION 'API key %: its id, merchant, secret hash, prefix and creation never change (only revoked_at, once)', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
    RAISE EXCEPTION 'API key %: revoked at %, for good', OLD.id, OLD.revoked_at
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER api_keys_fixed BEFORE UPDATE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION api_keys_fixed();

-- F11, currencies. NOT VALID then VALIDATE, as 0087 and 0090 (the migrator's single transaction
-- holds the lock until it commits). `accounts_currency_format` stays: it is implied, and harmless.
ALTER TABLE accounts ADD CONSTRAINT accounts_currency_supported CHECK (currency IN (
    'AED', 'ARS', 'AUD', 'BHD', 'BIF', 'BRL', 'CAD', 'CHF', 'CLP', 'CNY', 'COP', 'CZK', 'DJF', 'DKK',
    'EGP', 'EUR', 'GBP', 'GNF', 'HKD', 'HUF', 'IDR', 'ILS', 'INR', 'IQD', 'ISK', 'JOD', 'JPY', 'KES',
    'KMF', 'KRW', 'KWD', 'LYD', 'MAD', 'MXN', 'MYR', 'NGN', 'NOK', 'NZD', 'OMR', 'PEN', 'PHP', 'PKR',
    'PLN', 'PYG', 'QAR', 'RON', 'RSD', 'RWF', 'SAR', 'SEK', 'SGD', 'THB', 'TND', 'TRY', 'TWD', 'UAH',
    'UGX', 'USD', 'VND', 'VUV', 'XAF', 'XOF', 'XPF', 'ZAR')) NOT VALID;
ALTER TABLE accounts VALIDATE CONSTRAINT accounts_currency_supported;

-- F11, merchants' accounts. A row trigger on the `merchant:` codes only (the application's
-- `ensureAccount` inserts one at a settle, ON CONFLICT DO NOTHING: one primary-key probe of
-- `merchants` more). No lock on the merchant row, unlike a foreign key: `pay_app` cannot delete a
-- merchant (no grant), and the merchant's payments reference it.
CREATE FUNCTION accounts_merchant_exists() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF acts_as_role('pay_app') AND NOT EXISTS (SELECT 1 FROM merchants m WHERE m.id = split_part(NEW.code, ':', 2)) THEN
    RAISE EXCEPTION 'account %: merchant %, which does not exist', NEW.code, split_part(NEW.code, ':', 2)
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'the application opens a merchant''s accounts only for a merchant of the merchants table';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER accounts_merchant_exists BEFORE INSERT ON accounts
  FOR EACH ROW WHEN (NEW.code LIKE 'merchant:%')
  EXECUTE FUNCTION accounts_merchant_exists();

-- F12. BEFORE UPDATE only: the claims' INSERTs (the consumers' hot path, issue 14) pay nothing.
CREATE FUNCTION processed_events_claim_fixed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF (NEW.consumer, NEW.event_id, NEW.payment_id, NEW.payment_version, NEW.topic, NEW.partition, NEW."offset", NEW.processed_at)
     IS DISTINCT FROM (OLD.consumer, OLD.event_id, OLD.payment_id, OLD.payment_version, OLD.topic, OLD.partition, OLD."offset", OLD.processed_at) THEN
    RAISE EXCEPTION 'claim of event % by consumer %: a claim never changes (only its outcome, applied to stale, in the transaction that made it)',
      OLD.event_id, OLD.consumer
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.outcome IS DISTINCT FROM OLD.outcome
     AND NOT (OLD.outcome = 'applied' AND NEW.outcome = 'stale' AND OLD.processed_at = now()) THEN
    RAISE EXCEPTION 'claim of event % by consumer %: outcome % is final (only the claiming transaction marks its applied claim stale)',
      OLD.event_id, OLD.consumer, OLD.outcome
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER processed_events_claim_fixed BEFORE UPDATE ON processed_events
  FOR EACH ROW EXECUTE FUNCTION processed_events_claim_fixed();
