-- No card number (PAN) where a merchant writes text (outside attack review F3). The API refuses
-- it first, with a 400 naming the field (packages/domain/src/CardNumber.ts); this is the second
-- line, against raw SQL and bugs. Two rules, the code's own:
--
--   * payment_method, a token, holds no card number at all: 12 or more digits with nothing
--     between them but a run of `_` (0076's rule), or a card number in groups of four digits or
--     more split by one or two characters (`pm_4242x4242x4242x4242`, which 0076 let through): 13 to 19
--     digits passing the Luhn check, so that random hex tokens (digits and single letters) are
--     not taken for card numbers.
--   * description, and metadata's keys and values, are free text (order numbers, dates, phone
--     numbers): only a plausible card number is refused, 13 to 19 digits passing the Luhn check,
--     alone or in groups joined by one separator each (space . / _ -); see looks_like_card_number.
--
-- Triggers, not CHECKs, on purpose. A row's CHECKs run again on every UPDATE of it (0072), and a
-- NOT VALID CHECK too: a payment written before this rule with a card number in its description
-- could then no longer be authorized, captured, canceled or expired, and every status change would
-- scan the description and up to 32 KB of metadata again. `BEFORE INSERT OR UPDATE OF` the guarded
-- columns runs on every insert and on every update that sets one of them (which the tables' own
-- guards refuse anyway: these columns never change after the insert), and never on a status change.
-- Existing rows are not re-checked: a database may hold such values from before this rule; find them
-- with the same functions (`WHERE looks_like_card_number(description)`) and redact them by hand.
-- pay_app owns neither table, so it cannot disable the triggers.
--
-- The triggers are named to fire before the tables' `*_guard_*` triggers (BEFORE triggers fire in
-- name order), so a raw UPDATE that writes a card number is refused for what it writes.
-- Errors: SQLSTATE 23514 (check_violation), like 0076, with the constraint name
-- `payments_no_card_data` / `refunds_no_card_data` and the column; never the value (card data).

-- The Luhn checksum (ISO/IEC 7812-1) of a string of ASCII digits.
CREATE FUNCTION luhn_valid(digits text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  total integer := 0;
  digit integer;
  position integer;
  digit_count integer := length(digits);
BEGIN
  IF digits !~ '^[0-9]+$' THEN
    RETURN false;
  END IF;
  -- From the right: the check digit as it is, every second digit doubled (less 9 above 9).
  FOR position IN 0 .. digit_count - 1 LOOP
    digit := ascii(substr(digits, digit_count - position, 1)) - 48;
    IF position % 2 = 1 THEN
      digit := digit * 2;
      IF digit > 9 THEN
        digit := digit - 9;
      END IF;
    END IF;
    total := total + digit;
  END LOOP;
  RETURN total % 10 = 0;
END $$;

-- Digit groups (in order) whose first groups or last groups hold 13 to 19 digits passing the Luhn
-- check (the code's `runHoldsCardNumber`): a card number followed by its expiry
-- (`4242 4242 4242 4242 12/28`) or preceded by another number is found; a window in the middle of a
-- long run is not tried.
CREATE FUNCTION digit_groups_hold_card_number(groups text[]) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  candidate text := '';
  i integer;
BEGIN
  FOR i IN 1 .. cardinality(groups) LOOP
    candidate := candidate || groups[i];
    EXIT WHEN length(candidate) > 19;
    IF length(candidate) >= 13 AND luhn_valid(candidate) THEN
      RETURN true;
    END IF;
  END LOOP;
  candidate := '';
  FOR i IN REVERSE cardinality(groups) .. 2 LOOP
    candidate := groups[i] || candidate;
    EXIT WHEN length(candidate) > 19;
    IF length(candidate) >= 13 AND luhn_valid(candidate) THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END $$;

-- Free text holding a plausible card number (the code's `looksLikeCardNumber`): a run of digit
-- groups joined by one separator each, not glued to an ASCII letter (`BE68 5390 0754 7034` is an
-- IBAN, `INV2026000123456789` a code), whose first groups or last groups hold 13 to 19 digits
-- passing the Luhn check. Text with fewer than 13 digits in all (almost all) costs one
-- translate(); no bounded repetition (0072: its cost in this regex engine grows with the bound).
-- The regex is greedy as a whole (its first quantifier is), so each match is a whole run.
CREATE FUNCTION looks_like_card_number(value text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  run text[];
BEGIN
  IF length(value) - length(translate(value, '0123456789', '')) < 13 THEN
    RETURN false;
  END IF;
  FOR run IN SELECT regexp_matches(value, '[A-Za-z]?[0-9]+(?:[ ./_-][0-9]+)*[A-Za-z]?', 'g') LOOP
    CONTINUE WHEN run[1] ~ '^[A-Za-z]|[A-Za-z]$';
    IF digit_groups_hold_card_number(regexp_split_to_array(run[1], '[ ./_-]')) THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END $$;

-- A payment method token holding a card number (the code's `tokenHoldsCardDigits`): 12 or more
-- digits with only separators between them (`cardNumberLikePattern`, character for character), or
-- groups of four digits or more joined by one or two characters holding a plausible card number
-- (`letterGroupedRunPattern`). Tokens with fewer than 12 digits (every test method:
-- `pm_card_visa`) cost one translate().
CREATE FUNCTION payment_method_holds_card_digits(value text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  run text[];
BEGIN
  IF length(value) - length(translate(value, '0123456789', '')) < 12 THEN
    RETURN false;
  END IF;
  IF value ~ '[0-9](?:[-_. ]*[0-9]){11}' THEN
    RETURN true;
  END IF;
  FOR run IN SELECT regexp_matches(value, '[0-9][0-9][0-9][0-9]+(?:[^0-9][^0-9]?[0-9][0-9][0-9][0-9]+)*', 'g') LOOP
    IF digit_groups_hold_card_number(regexp_split_to_array(run[1], '[^0-9]+')) THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END $$;

-- Metadata (a jsonb object of strings) with a card number in a key or a value. Not an object: left
-- to the table's CHECK (jsonb_typeof), which refuses it.
CREATE FUNCTION metadata_holds_card_number(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
  SELECT CASE
    WHEN jsonb_typeof(value) <> 'object' THEN false
    WHEN length(value::text) - length(translate(value::text, '0123456789', '')) < 13 THEN false
    ELSE EXISTS (SELECT 1 FROM jsonb_each_text(value) AS member
                 WHERE looks_like_card_number(member.key) OR looks_like_card_number(member.value))
  END
$$;

CREATE FUNCTION payments_refuse_card_data() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF payment_method_holds_card_digits(NEW.payment_method) THEN
    RAISE EXCEPTION 'payments_no_card_data: payments.payment_method must be a token, not a card number: 12 or more digits with only separators between them, or a card number in groups of 4 or more digits split by one or two characters'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'payments_no_card_data', TABLE = 'payments', COLUMN = 'payment_method';
  END IF;
  IF looks_like_card_number(NEW.description) THEN
    RAISE EXCEPTION 'payments_no_card_data: payments.description looks like a card number (13 to 19 digits passing the Luhn check); card data must not be stored'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'payments_no_card_data', TABLE = 'payments', COLUMN = 'description';
  END IF;
  IF metadata_holds_card_number(NEW.metadata) THEN
    RAISE EXCEPTION 'payments_no_card_data: payments.metadata has a key or a value that looks like a card number (13 to 19 digits passing the Luhn check); card data must not be stored'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'payments_no_card_data', TABLE = 'payments', COLUMN = 'metadata';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER payments_card_data_refused BEFORE INSERT OR UPDATE OF payment_method, description, metadata ON payments
  FOR EACH ROW EXECUTE FUNCTION payments_refuse_card_data();

-- Refunds carry metadata (no description, no payment method).
CREATE FUNCTION refunds_refuse_card_data() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF metadata_holds_card_number(NEW.metadata) THEN
    RAISE EXCEPTION 'refunds_no_card_data: refunds.metadata has a key or a value that looks like a card number (13 to 19 digits passing the Luhn check); card data must not be stored'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_no_card_data', TABLE = 'refunds', COLUMN = 'metadata';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refunds_card_data_refused BEFORE INSERT OR UPDATE OF metadata ON refunds
  FOR EACH ROW EXECUTE FUNCTION refunds_refuse_card_data();
