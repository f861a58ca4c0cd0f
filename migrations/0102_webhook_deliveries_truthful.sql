-- A webhook delivery says what its columns say (outside refund attack, 2026-12-05): as
-- `pay_consumer`, a delivery inserted by hand for merchant B's endpoint carried merchant A's real
-- refund event, and the sender signed it with B's secret and sent it: one merchant's event read by
-- another. The endpoint's merchant was checked (webhook_deliveries_endpoint_merchant), the body was
-- not. Now, at INSERT (the body never changes after: webhook_deliveries_immutable):
-- - the body is the webhook envelope of the row's own event, `{id, type, timestamp, data}` and
--   nothing else, `data` flat, no member named twice in either: `id` is the row's event id, `type` its
--   event type, `data.merchant_id` its merchant, `data.payment_id` its payment, `data.refund_id`
--   its refund (or none), `data.version` its version;
-- - the payment, when it exists, is that merchant's, and the refund that payment's;
-- - while the outbox still holds the event (by id), the body's data is the outbox payload and the
--   type its type: a delivery cannot rewrite an event the platform published.
-- Left to `pay_consumer`, which the consumers are trusted with (docs/security.md): an event id the
-- outbox does not hold (never did, or no longer does past its retention) is not compared with the
-- rows, so a made-up event of the merchant's own payment or refund (another amount, a refund that
-- does not exist) can still be queued; it reaches only the merchant the row names. (Requiring the
-- outbox row would refuse a replayed webhooks consumer's old events.)

CREATE FUNCTION webhook_deliveries_truthful() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_body jsonb;
  v_owner text;
  v_refund_payment text;
  v_outbox_type text;
  v_outbox_payload jsonb;
BEGIN
  BEGIN
    v_body := NEW.body::jsonb;
  EXCEPTION WHEN invalid_text_representation THEN
    RAISE EXCEPTION 'webhook delivery %: the body is not JSON', NEW.id USING ERRCODE = 'integrity_constraint_violation';
  END;
  -- The envelope's four members and nothing else, `data` flat (events carry no nested object), and
  -- no member named twice in either: the sender sends the text as it is, and readers disagree on
  -- which of two members counts (jsonb keeps the last): a body carrying `"data"` twice passed a
  -- check of the parsed form with one merchant's event and reached a reader that takes the first
  -- with another's (outside re-test). Its timestamp is the event's instant.
  IF jsonb_typeof(v_body) IS DISTINCT FROM 'object' OR jsonb_typeof(v_body->'data') IS DISTINCT FROM 'object'
     OR (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(v_body) AS k) IS DISTINCT FROM ARRAY['data', 'id', 'timestamp', 'type']
     OR EXISTS (SELECT 1 FROM jsonb_each(v_body->'data') AS e WHERE jsonb_typeof(e.value) IN ('object', 'array')) THEN
    RAISE EXCEPTION 'webhook delivery %: the body is not the envelope of its own event (id %, type %, merchant %, payment %, refund %)',
      NEW.id, NEW.event_id, NEW.event_type, NEW.merchant_id, NEW.payment_id, coalesce(NEW.refund_id, 'none')
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF (SELECT count(*) <> 4 FROM json_object_keys(NEW.body::json))
     OR (SELECT count(*) FROM json_object_keys(NEW.body::json -> 'data')) <> (SELECT count(*) FROM jsonb_object_keys(v_body->'data')) THEN
    RAISE EXCEPTION 'webhook delivery %: the body names a member twice', NEW.id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  -- Every number of an event is an integer, written as one (`2.03e3`, `2030.0`, `-0` are refused:
  -- a receiver reading integers strictly would refuse them; outside re-test).
  IF EXISTS (SELECT 1 FROM json_each(NEW.body::json -> 'data') AS e
             WHERE json_typeof(e.value) = 'number' AND e.value::text !~ '^(0|-?[1-9][0-9]*)$') THEN
    RAISE EXCEPTION 'webhook delivery %: the body writes a number other than as a plain integer', NEW.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF v_body->>'timestamp' IS DISTINCT FROM v_body->'data'->>'occurred_at'
     OR v_body->>'id' IS DISTINCT FROM NEW.event_id::text
     OR v_body->>'type' IS DISTINCT FROM NEW.event_type
     OR v_body->'data'->>'merchant_id' IS DISTINCT FROM NEW.merchant_id
     OR v_body->'data'->>'payment_id' IS DISTINCT FROM NEW.payment_id
     OR v_body->'data'->>'refund_id' IS DISTINCT FROM NEW.refund_id
     OR v_body->'data'->>'version' IS DISTINCT FROM NEW.payment_version::text THEN
    RAISE EXCEPTION 'webhook delivery %: the body is not the envelope of its own event (id %, type %, merchant %, payment %, refund %)',
      NEW.id, NEW.event_id, NEW.event_type, NEW.merchant_id, NEW.payment_id, coalesce(NEW.refund_id, 'none')
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  SELECT p.merchant_id INTO v_owner FROM payments p WHERE p.id = NEW.payment_id;
  IF FOUND AND v_owner IS DISTINCT FROM NEW.merchant_id THEN
    RAISE EXCEPTION 'webhook delivery %: payment % is not merchant %''s', NEW.id, NEW.payment_id, NEW.merchant_id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.refund_id IS NOT NULL THEN
    SELECT r.payment_id INTO v_refund_payment FROM refunds r WHERE r.id = NEW.refund_id;
    IF FOUND AND v_refund_payment IS DISTINCT FROM NEW.payment_id THEN
      RAISE EXCEPTION 'webhook delivery %: refund % is not of payment %', NEW.id, NEW.refund_id, NEW.payment_id
        USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END IF;
  SELECT o.event_type, o.payload INTO v_outbox_type, v_outbox_payload FROM outbox_events o WHERE o.id = NEW.event_id;
  -- Compared as text (jsonb's canonical form): `257.000` equals 257 as a number, not as written.
  IF FOUND AND (v_outbox_type IS DISTINCT FROM NEW.event_type OR v_outbox_payload::text IS DISTINCT FROM (v_body->'data')::text) THEN
    RAISE EXCEPTION 'webhook delivery %: the body is not event % as the outbox holds it', NEW.id, NEW.event_id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER webhook_deliveries_truthful BEFORE INSERT ON webhook_deliveries
  FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_truthful();

-- The rest of a delivery's identity is as fixed as its bytes (outside re-test: `pay_consumer`
-- relabelled a `payment_settled` delivery `payment_failed` in the API's listing): its id and event
-- type join what 0030 fixed (its refund is 0060's).
CREATE OR REPLACE FUNCTION webhook_deliveries_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.endpoint_id IS DISTINCT FROM OLD.endpoint_id OR NEW.event_id IS DISTINCT FROM OLD.event_id
     OR NEW.event_type IS DISTINCT FROM OLD.event_type
     OR NEW.body IS DISTINCT FROM OLD.body OR NEW.payment_id IS DISTINCT FROM OLD.payment_id
     OR NEW.payment_version IS DISTINCT FROM OLD.payment_version OR NEW.merchant_id IS DISTINCT FROM OLD.merchant_id THEN
    RAISE EXCEPTION 'webhook delivery % is immutable: only its delivery state may change', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.attempt_count < OLD.attempt_count THEN
    RAISE EXCEPTION 'webhook delivery %: attempt_count never decreases', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
