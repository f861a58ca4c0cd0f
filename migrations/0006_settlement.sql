-- Settlement: when a payment goes AUTHORIZED -> SETTLED, one ledger transaction moves its money:
--   debit  acquirer:receivable:<CUR>            gross   (asset: the acquirer owes us the amount)
--   credit merchant:<merchant id>:payable:<CUR>  net     (liability: we owe the merchant)
--   credit platform:fees:<CUR>                   fee     (revenue)
-- in the same database transaction as the status change and its history row.

-- The fee a merchant pays, per currency (a fixed fee only means something in one currency).
-- A merchant without a row pays the platform default (configuration, see docs/settlement.md).
CREATE TABLE merchant_fee_schedules (
  merchant_id text NOT NULL REFERENCES merchants (id),
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  fee_bps integer NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
  fee_fixed_minor bigint NOT NULL CHECK (fee_fixed_minor BETWEEN 0 AND 99999999999),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (merchant_id, currency)
);

-- One row per settled payment: the guard that makes a second settlement posting impossible
-- (primary key on payment_id), tied to the one ledger transaction that moved the money, with the
-- fee terms that were applied (a later change of schedule never rewrites history).
CREATE TABLE payment_settlements (
  payment_id text PRIMARY KEY REFERENCES payments (id),
  ledger_transaction_id bigint NOT NULL UNIQUE REFERENCES transactions (id),
  currency text NOT NULL,
  gross_minor bigint NOT NULL CHECK (gross_minor > 0),
  fee_minor bigint NOT NULL CHECK (fee_minor >= 0),
  net_minor bigint NOT NULL CHECK (net_minor >= 0),
  fee_bps integer NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
  fee_fixed_minor bigint NOT NULL CHECK (fee_fixed_minor >= 0),
  settled_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT payment_settlements_fee_plus_net CHECK (fee_minor + net_minor = gross_minor)
);

-- Append-only, like the ledger it points to.
CREATE FUNCTION payment_settlements_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'payment_settlements is append-only: % rejected', TG_OP
    USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER payment_settlements_no_update BEFORE UPDATE OR DELETE ON payment_settlements
  FOR EACH ROW EXECUTE FUNCTION payment_settlements_reject_change();
CREATE TRIGGER payment_settlements_no_truncate BEFORE TRUNCATE ON payment_settlements
  FOR EACH STATEMENT EXECUTE FUNCTION payment_settlements_reject_change();

-- A settlement row must describe its payment and its ledger transaction truthfully, checked at
-- commit (the payment's status change and the posting happen in the same transaction):
-- the payment is SETTLED, gross and currency are the payment's, and the ledger transaction is the
-- payment's settlement posting (reference payment:<id>:settlement).
CREATE FUNCTION payment_settlements_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_payment payments%ROWTYPE;
  v_reference text;
BEGIN
  SELECT * INTO v_payment FROM payments WHERE id = NEW.payment_id;
  IF v_payment.status IS DISTINCT FROM 'SETTLED' THEN
    RAISE EXCEPTION 'settlement of payment % recorded but the payment is %', NEW.payment_id, v_payment.status
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF v_payment.amount_minor <> NEW.gross_minor OR v_payment.currency <> NEW.currency THEN
    RAISE EXCEPTION 'settlement of payment % is % % but the payment is % %',
      NEW.payment_id, NEW.gross_minor, NEW.currency, v_payment.amount_minor, v_payment.currency
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  SELECT reference INTO v_reference FROM transactions WHERE id = NEW.ledger_transaction_id;
  IF v_reference IS DISTINCT FROM 'payment:' || NEW.payment_id || ':settlement' THEN
    RAISE EXCEPTION 'settlement of payment % points at ledger transaction % (%), not its settlement posting',
      NEW.payment_id, NEW.ledger_transaction_id, v_reference
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER payment_settlements_check AFTER INSERT ON payment_settlements
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION payment_settlements_check();
