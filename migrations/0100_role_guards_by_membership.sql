-- A re-test of 0098 (2026-12-05): the role guards of 0098/0099 compared `current_user` with a role's
-- name, so a login role that is a MEMBER of `pay_app` (holding its grants) escaped them: with a
-- temporary member role the re-test marked a delivery `delivered` and due at `infinity`. They now
-- ask whether the session acts with that role's privileges (`pg_has_role(…, 'USAGE')`: the role
-- itself or a member that inherits it), superusers aside (they are not restricted by grants either).

CREATE FUNCTION acts_as_role(p_role text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp
AS $$ SELECT NOT r.rolsuper AND pg_has_role(current_user, p_role, 'USAGE') FROM pg_roles r WHERE r.rolname = current_user $$;

CREATE OR REPLACE FUNCTION webhook_deliveries_app_requeue_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF acts_as_role('pay_app') AND (
       NEW.status <> 'pending' OR NEW.finished_at IS NOT NULL OR NEW.failed_reason IS NOT NULL
       OR NEW.round_attempt_count <> 0 OR NEW.next_attempt_at > clock_timestamp()) THEN
    RAISE EXCEPTION 'webhook delivery %: the application may only send it again now (pending, due, counts reset)', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION webhook_endpoints_fixed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.merchant_id IS DISTINCT FROM OLD.merchant_id THEN
    RAISE EXCEPTION 'webhook endpoint %: its id and merchant never change', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS DISTINCT FROM OLD.deleted_at THEN
    RAISE EXCEPTION 'webhook endpoint %: deleted, for good', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF acts_as_role('pay_consumer') AND NEW.status = 'enabled' AND OLD.status IS DISTINCT FROM 'enabled' THEN
    RAISE EXCEPTION 'webhook endpoint %: the sender disables an endpoint, it never enables one', OLD.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF acts_as_role('pay_consumer') AND OLD.status = 'disabled'
     AND (NEW.status, NEW.disabled_reason, NEW.disabled_at) IS DISTINCT FROM (OLD.status, OLD.disabled_reason, OLD.disabled_at) THEN
    RAISE EXCEPTION 'webhook endpoint %: disabled (%); the sender changes nothing of it', OLD.id, OLD.disabled_reason
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
