-- Refund events (issue 19): `refund_created`, `refund_succeeded`, `refund_failed` go through the
-- outbox in the same transaction as the refund's change, like a payment's (0010), and the
-- consumers learn them (docs/events.md "Refund events", docs/refunds.md).
--
--   * Every committed refund change has its event: at COMMIT, an inserted refund has its outbox row
--     `refund_created` (aggregate 'payment', the payment's id: refund events travel on the
--     payment's key; payload refund_id = the refund, version 1), and a refund whose status changed
--     has `refund_<status>` (version 2: a refund changes exactly once, 0047).
--   * The settlement projection counts the refunded money, from `refund_succeeded` events only:
--     refunded_minor, refund_count (and fee_returned_minor, the part of the fee given back when the
--     merchant's fee is returned on refund, 0061).
--   * Webhooks deliver refund events: a refund's delivery names its refund (refund_id, never
--     changed after) and carries the refund's version in payment_version; endpoints may subscribe
--     to the refund events (and to payment_expiring, 0061), at most 16 types.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation).

CREATE FUNCTION refunds_have_event() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_type text := CASE WHEN TG_OP = 'INSERT' THEN 'refund_created' ELSE 'refund_' || lower(NEW.status) END;
  v_version int := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE 2 END;
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM outbox_events o
    WHERE o.aggregate_type = 'payment' AND o.aggregate_id = NEW.payment_id
      AND o.event_type = v_type
      AND o.payload ->> 'refund_id' = NEW.id
      AND o.payload -> 'version' = to_jsonb(v_version)
  ) THEN
    RAISE EXCEPTION 'refund % (payment %) became % without its outbox event %', NEW.id, NEW.payment_id, NEW.status, v_type
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'write the outbox row in the same transaction as the change (RefundEventsOut.ts)';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refunds_created_has_event AFTER INSERT ON refunds
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  EXECUTE FUNCTION refunds_have_event();
CREATE CONSTRAINT TRIGGER refunds_completed_has_event AFTER UPDATE ON refunds
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (NEW.status IS DISTINCT FROM OLD.status)
  EXECUTE FUNCTION refunds_have_event();

ALTER TABLE settlement_projection
  ADD COLUMN refunded_minor bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
  ADD COLUMN fee_returned_minor bigint NOT NULL DEFAULT 0 CHECK (fee_returned_minor >= 0),
  ADD COLUMN refund_count bigint NOT NULL DEFAULT 0 CHECK (refund_count >= 0);

ALTER TABLE webhook_deliveries
  ADD COLUMN refund_id text CHECK (refund_id IS NULL OR refund_id ~ '^re_[0-9a-hjkmnp-tv-z]{24}$');

CREATE FUNCTION webhook_deliveries_refund_fixed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'webhook delivery % is immutable: its refund_id never changes', OLD.id
    USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER webhook_deliveries_refund_fixed BEFORE UPDATE ON webhook_deliveries
  FOR EACH ROW WHEN (NEW.refund_id IS DISTINCT FROM OLD.refund_id)
  EXECUTE FUNCTION webhook_deliveries_refund_fixed();

ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_event_types_check;
ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_event_types_check CHECK (
  cardinality(event_types) BETWEEN 1 AND 16
  AND event_types <@ ARRAY['*', 'payment_created', 'payment_authorized', 'payment_settled', 'payment_failed',
                           'payment_canceled', 'payment_expired', 'payment_expiring',
                           'refund_created', 'refund_succeeded', 'refund_failed']::text[]);
