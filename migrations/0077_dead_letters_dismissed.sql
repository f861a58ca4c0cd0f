-- A parked record that must never be applied (a producer's bug, a test event in production) can be
-- dismissed by an operator with a reason (`pnpm cli dlq dismiss <id> "<reason>"`): it leaves the open
-- list and can no longer be re-driven; the row and its record stay, as evidence. Before this, such
-- a row stayed in `dlq list` for ever (found by an outside on-call rehearsal).
ALTER TABLE dead_letter_events
  ADD COLUMN dismissed_at timestamptz,
  ADD COLUMN dismiss_reason text,
  ADD CONSTRAINT dead_letter_events_dismissal_whole
    CHECK ((dismissed_at IS NULL) = (dismiss_reason IS NULL)),
  ADD CONSTRAINT dead_letter_events_dismiss_reason_length
    CHECK (dismiss_reason IS NULL OR length(dismiss_reason) BETWEEN 1 AND 500),
  ADD CONSTRAINT dead_letter_events_redriven_or_dismissed
    CHECK (redriven_at IS NULL OR dismissed_at IS NULL);

-- A dismissal is final: once set, neither it nor its reason changes (the code only sets it on an
-- open row; this holds against raw SQL with the app's grants).
CREATE FUNCTION dead_letter_events_dismissal_final() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF OLD.dismissed_at IS NOT NULL AND (NEW.dismissed_at IS DISTINCT FROM OLD.dismissed_at OR NEW.dismiss_reason IS DISTINCT FROM OLD.dismiss_reason) THEN
    RAISE EXCEPTION 'dead letter % was dismissed: the dismissal is final', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER dead_letter_events_dismissal_final BEFORE UPDATE ON dead_letter_events
  FOR EACH ROW EXECUTE FUNCTION dead_letter_events_dismissal_final();

DROP INDEX dead_letter_events_open;
CREATE INDEX dead_letter_events_open ON dead_letter_events (consumer, id) WHERE redriven_at IS NULL AND dismissed_at IS NULL;
