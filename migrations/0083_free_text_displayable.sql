-- No hidden characters in a merchant's free text (outside attack review F4): the C0 controls other
-- than tab, line feed and carriage return, DEL and the C1 controls (U+007F-U+009F: an escape
-- sequence in an operator's terminal or log viewer), and the bidirectional embeddings, overrides
-- and isolates (U+202A-U+202E, U+2066-U+2069: "Trojan Source", text that reads in another order
-- than it is stored in a dashboard or an export). The API refuses them first, with a 400 naming
-- the field and the code point (packages/domain/src/StorableText.ts, `hiddenCharacterReason`, the
-- same class); this is the second line, against raw SQL and bugs.
--
-- Triggers on the columns, not CHECKs, for 0080's reasons: a CHECK (valid or NOT VALID) runs
-- again on every UPDATE of the row, so a payment stored before this rule with such a character
-- could no longer change status. `BEFORE INSERT OR UPDATE OF` the text columns only; named to fire
-- after the card-data triggers and before the tables' `*_guard_*` triggers (name order), so a raw
-- UPDATE that writes a hidden character is refused for what it writes. Existing rows are not
-- re-checked: find them with `WHERE text_has_hidden_character(description)` (or
-- `metadata_has_hidden_character(metadata)`). pay_app owns none of these tables, so it cannot
-- disable the triggers. Errors: SQLSTATE 23514 (check_violation), constraint
-- `<table>_free_text_displayable`, the column; never the value.

-- The triggers' SHARE ROW EXCLUSIVE locks (0084: ACCESS EXCLUSIVE) wait behind any open
-- transaction on the tables, and every later statement on them would queue behind that wait while
-- other instances serve: bounded, the start-up fails (and is retried) instead of stalling them.
SET LOCAL lock_timeout = '5s';

-- One character class, no repetition (0072: a bounded repetition costs on every evaluation).
CREATE FUNCTION text_has_hidden_character(value text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
  SELECT value ~ '[\u0001-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]'
$$;

-- Metadata (a jsonb object of strings): a key or a value with a hidden character. Not an object:
-- left to the table's CHECK (jsonb_typeof), which refuses it. The printed form first, one regex
-- over it: jsonb prints every C0 control as an escape (a backslash), and DEL, C1 and the
-- bidirectional characters as they are, so metadata with neither a backslash nor one of those
-- holds no hidden character and is not taken apart (3.6 µs a call instead of 18.5 µs with the
-- walk alone, 10^5 rows of two-member metadata); only then each member, unescaped, by the exact
-- rule. The prefilter's verdicts are held to the code's in PaymentTriggers.test.ts.
CREATE FUNCTION metadata_has_hidden_character(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
  SELECT CASE
    WHEN jsonb_typeof(value) <> 'object' THEN false
    WHEN value::text !~ '[\\\u007F-\u009F\u202A-\u202E\u2066-\u2069]' THEN false
    ELSE EXISTS (SELECT 1 FROM jsonb_each_text(value) AS member
                 WHERE text_has_hidden_character(member.key) OR text_has_hidden_character(member.value))
  END
$$;

CREATE FUNCTION payments_refuse_hidden_characters() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF text_has_hidden_character(NEW.description) THEN
    RAISE EXCEPTION 'payments_free_text_displayable: payments.description holds a control character (other than tab, line feed, carriage return) or a bidirectional override or isolate'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'payments_free_text_displayable', TABLE = 'payments', COLUMN = 'description';
  END IF;
  IF metadata_has_hidden_character(NEW.metadata) THEN
    RAISE EXCEPTION 'payments_free_text_displayable: payments.metadata has a key or a value with a control character (other than tab, line feed, carriage return) or a bidirectional override or isolate'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'payments_free_text_displayable', TABLE = 'payments', COLUMN = 'metadata';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payments_free_text_displayable BEFORE INSERT OR UPDATE OF description, metadata ON payments
  FOR EACH ROW EXECUTE FUNCTION payments_refuse_hidden_characters();

CREATE FUNCTION refunds_refuse_hidden_characters() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF metadata_has_hidden_character(NEW.metadata) THEN
    RAISE EXCEPTION 'refunds_free_text_displayable: refunds.metadata has a key or a value with a control character (other than tab, line feed, carriage return) or a bidirectional override or isolate'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_free_text_displayable', TABLE = 'refunds', COLUMN = 'metadata';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refunds_free_text_displayable BEFORE INSERT OR UPDATE OF metadata ON refunds
  FOR EACH ROW EXECUTE FUNCTION refunds_refuse_hidden_characters();

CREATE FUNCTION webhook_endpoints_refuse_hidden_characters() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF text_has_hidden_character(NEW.description) THEN
    RAISE EXCEPTION 'webhook_endpoints_free_text_displayable: webhook_endpoints.description holds a control character (other than tab, line feed, carriage return) or a bidirectional override or isolate'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'webhook_endpoints_free_text_displayable', TABLE = 'webhook_endpoints', COLUMN = 'description';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER webhook_endpoints_free_text_displayable BEFORE INSERT OR UPDATE OF description ON webhook_endpoints
  FOR EACH ROW EXECUTE FUNCTION webhook_endpoints_refuse_hidden_characters();
