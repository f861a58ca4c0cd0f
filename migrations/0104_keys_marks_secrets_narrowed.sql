-- The outside database adversary's review (.scratch/sqladv/report.md, 2026-12-05), findings F3, F4,
-- F5 and F8, each reproduced as the role named and closed here as far as the database can tell the
-- application's own statements from the attack. What stays open is said in docs/security.md,
-- docs/invariants.md and docs/idempotency.md.
--
--   * F3: pay_app deleted a finished idempotency key and put it back finished with a forged answer
--     (another merchant's payment, SETTLED), or planted a finished key for a request never made:
--     the merchant's retry, or first request, was "replayed" that answer. Now, as pay_app:
--       - a row is never inserted already finished, except the one the application writes that way:
--         a create's key (`runAtOnce`, KeyStore.insertFinished) whose 201 answer names the payment
--         of the key's merchant that the same transaction created (its `payment_created` event
--         stamped with this transaction, below), as the payment row says (CREATED, amount,
--         currency). Checked after the statement: the application writes the key, the payment and
--         its event in ONE statement, the key's CTE first (PaymentRepository.createGated);
--       - a finished key is not deleted in its first minute (refused at COMMIT). The reaper deletes `finished_at <
--         statement_timestamp() - IDEMPOTENCY_RETENTION_MS`, and that setting is at least 1 minute
--         (idempotencyOptionBounds.retention_ms.min, packages/idempotency/src/Model.ts): the database
--         does not know the configured retention (24 h by default), only its lower bound, so this
--         refuses nothing the reaper does under any configuration.
--     Not closed (the database cannot tell them from the application's own path): a key inserted
--     unfinished and finished by a later statement with any answer (`storeResponse` does exactly
--     that), and a finished key deleted once a minute old, then written again that way.
--   * F4: a transaction that inserted an outbox row marked it published itself, so its event was
--     never sent. Each row now records the top-level transaction that inserted it
--     (`created_xact_id`, as `transactions.created_xact_id` (0002) and 0098's `warned_xact_id`;
--     pg_current_xact_id() is the top-level id inside savepoints too), and pay_app may not mark a
--     row published in that transaction. The publisher claims and marks rows committed before.
--   * F5: pay_consumer holds UPDATE (secret) for the reseal and replaced an endpoint's secret with
--     another endpoint's (or any plain one). Now it may only seal a plain secret or re-seal a sealed
--     one under another key id: never write a plain secret, never write a form under the key id the
--     row already has. The sealing binds the endpoint id (AES-GCM additional data,
--     SecretSealing.ts), so a sealed form copied from another endpoint does not open: its
--     signatures stop (a denial of service), none is forged.
--   * F8: outbox_events took any aggregate type, and the truth checks (0093-0099) fire only for
--     `payment`. The application writes no other (PaymentTrail, RefundEventsOut, ExpiryWarning);
--     pay_app may now write no other. A trigger, not a CHECK: the outbox package's own tests, as the
--     owner, use an aggregate of theirs so as not to need a payment (packages/outbox/test).
--
-- Role guards ask acts_as_role (0100): the role and its members, superusers aside.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), as 0087-0102.

-- F4 first: F3's create check reads the stamp.
-- Nullable, no default at ADD (instant, no rewrite); existing rows stay NULL and are never refused.
-- The default then stamps every new row; the trigger below fires only when a caller wrote another
-- value, and overwrites it: the application's inserts pay for no PL/pgSQL call.
ALTER TABLE outbox_events ADD COLUMN created_xact_id xid8;
ALTER TABLE outbox_events ALTER COLUMN created_xact_id SET DEFAULT pg_current_xact_id();

CREATE FUNCTION outbox_events_stamp_writer() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  NEW.created_xact_id := pg_current_xact_id();
  RETURN NEW;
END $$;
CREATE TRIGGER outbox_events_stamp_writer BEFORE INSERT ON outbox_events
  FOR EACH ROW WHEN (NEW.created_xact_id IS DISTINCT FROM pg_current_xact_id())
  EXECUTE FUNCTION outbox_events_stamp_writer();

-- The stamp is part of the event's facts (0004's message: only delivery bookkeeping may change).
-- pay_app has no UPDATE on the column; this holds for the owner too.
CREATE TRIGGER outbox_events_writer_fixed BEFORE UPDATE OF created_xact_id ON outbox_events
  FOR EACH ROW WHEN (NEW.created_xact_id IS DISTINCT FROM OLD.created_xact_id)
  EXECUTE FUNCTION outbox_events_immutable();

-- Named to sort after 0087's outbox_events_published_after_created and 0088's
-- outbox_events_mark_not_backdated: a mark they refuse keeps their message. The WHEN clause keeps
-- the publisher's mark (rows of earlier transactions) free of any PL/pgSQL call.
CREATE FUNCTION outbox_events_writer_never_marks() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF acts_as_role('pay_app') THEN
    RAISE EXCEPTION 'outbox event % (% of %/%) cannot be marked published by the transaction that wrote it: its event would never be sent',
      OLD.id, OLD.event_type, OLD.aggregate_type, OLD.aggregate_id
      USING ERRCODE = 'integrity_constraint_violation',
            HINT = 'the publisher marks rows committed before its claim, after the broker acknowledged them';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER outbox_events_writer_never_marks BEFORE UPDATE OF published_at ON outbox_events
  FOR EACH ROW WHEN (OLD.published_at IS NULL AND NEW.published_at IS NOT NULL
                     AND OLD.created_xact_id = pg_current_xact_id())
  EXECUTE FUNCTION outbox_events_writer_never_marks();

-- F8.
CREATE FUNCTION outbox_events_payment_aggregate_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF acts_as_role('pay_app') THEN
    RAISE EXCEPTION 'outbox event % of aggregate %: the application writes events of the payment aggregate only (the others escape the truth checks)',
      NEW.id, NEW.aggregate_type
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER outbox_events_payment_aggregate_only BEFORE INSERT ON outbox_events
  FOR EACH ROW WHEN (NEW.aggregate_type <> 'payment')
  EXECUTE FUNCTION outbox_events_payment_aggregate_only();

-- F3. A row inserted finished (any column of a finished row set: the CHECK
-- idempotency_keys_finished_iff_response sets them together) is a create's, written with its
-- payment. After the statement, when the payment's CTE has run.
CREATE FUNCTION idempotency_keys_finished_with_its_create() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_body jsonb;
BEGIN
  IF NOT acts_as_role('pay_app') THEN
    RETURN NULL;
  END IF;
  BEGIN
    v_body := NEW.response_body::jsonb;
  EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
    v_body := NULL;
  END;
  IF NEW.response_status = 201 AND jsonb_typeof(v_body) = 'object'
     AND v_body ->> 'object' = 'payment' AND v_body ->> 'status' = 'CREATED'
     AND EXISTS (
       SELECT 1 FROM payments p
       JOIN outbox_events o ON o.aggregate_type = 'payment' AND o.aggregate_id = p.id AND o.event_type = 'payment_created'
       WHERE p.id = v_body ->> 'id' AND p.merchant_id = NEW.merchant_id
         AND p.status = 'CREATED' AND p.version = 1
         AND v_body -> 'amount' = to_jsonb(p.amount_minor) AND v_body ->> 'currency' = p.currency
         AND o.created_xact_id = pg_current_xact_id()) THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'idempotency key % of merchant % cannot be inserted finished: only a create''s key is, with the payment its own statement creates (answer % naming %)',
    NEW.idempotency_key, NEW.merchant_id, NEW.response_status, coalesce(v_body ->> 'id', 'no payment')
    USING ERRCODE = 'integrity_constraint_violation',
          HINT = 'a key is inserted unfinished and finished by the work''s transaction (storeResponse), or with its create (runAtOnce)';
END $$;
CREATE TRIGGER idempotency_keys_finished_with_its_create AFTER INSERT ON idempotency_keys
  FOR EACH ROW WHEN (NEW.finished_at IS NOT NULL OR NEW.recovery_point = 'finished' OR NEW.response_status IS NOT NULL
                     OR NEW.response_body IS NOT NULL OR NEW.response_content_type IS NOT NULL)
  EXECUTE FUNCTION idempotency_keys_finished_with_its_create();

-- F3. The least retention the reaper can be configured with (IDEMPOTENCY_RETENTION_MS >= 60000),
-- against the same statement_timestamp() its cut-off uses (MaintenanceScans.ts): its deletes never
-- queue the trigger. A constraint trigger's WHEN is decided when the row is deleted, so the age and
-- the role are those of the DELETE; the refusal itself waits for COMMIT (it cannot be spent: once
-- queued, it refuses whenever it fires), so a check of the same transaction queued before it, such
-- as 0090's idempotency_keys_refund_decided, answers first with its own reason.
CREATE FUNCTION idempotency_keys_finished_kept() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'idempotency key % of merchant % finished at %: a finished key is kept at least 1 minute (the least IDEMPOTENCY_RETENTION_MS) before the reaper deletes it',
    OLD.idempotency_key, OLD.merchant_id, OLD.finished_at
    USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE CONSTRAINT TRIGGER idempotency_keys_finished_kept AFTER DELETE ON idempotency_keys
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (OLD.finished_at IS NOT NULL AND OLD.finished_at >= statement_timestamp() - interval '1 minute' AND acts_as_role('pay_app'))
  EXECUTE FUNCTION idempotency_keys_finished_kept();

-- F5. The reseal (resealSecrets, run by the sender at start as pay_consumer) turns a plain secret
-- into a sealed one, or one sealed under a previous key into one sealed under the current key: the
-- key id (the 16 hex digits after `sealed:v1:`) changes or appears, and the new form is sealed.
CREATE FUNCTION webhook_endpoint_secrets_reseal_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_old_key_id text := CASE WHEN OLD.secret LIKE 'sealed:v1:%' THEN substr(OLD.secret, 11, 16) END;
  v_new_key_id text := CASE WHEN NEW.secret LIKE 'sealed:v1:%' THEN substr(NEW.secret, 11, 16) END;
BEGIN
  IF acts_as_role('pay_consumer') AND (v_new_key_id IS NULL OR v_new_key_id IS NOT DISTINCT FROM v_old_key_id) THEN
    RAISE EXCEPTION 'webhook secret % of endpoint %: the sender only seals a plain secret or re-seals one under another key (% to %)',
      OLD.id, OLD.endpoint_id, coalesce(v_old_key_id, 'plain'), coalesce(v_new_key_id, 'plain')
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER webhook_endpoint_secrets_reseal_only BEFORE UPDATE OF secret ON webhook_endpoint_secrets
  FOR EACH ROW WHEN (NEW.secret IS DISTINCT FROM OLD.secret)
  EXECUTE FUNCTION webhook_endpoint_secrets_reseal_only();
