-- A card number in free text (descriptions, metadata, endpoints' descriptions: 0080, 0081) grouped
-- by a non-ASCII space or an invisible joiner passed: `4242\u00A04242\u00A04242\u00A04242` (no-break
-- spaces, as word processors and some locales group digits) was stored (outside re-test,
-- 2026-12-05). The separators between digit groups are now also every other Unicode space
-- (U+00A0, U+1680, U+2000-U+200A, U+202F, U+205F, U+3000) and the invisible joiners (U+200B-U+200D,
-- U+2060, U+FEFF), as the code's `cardNumberSeparatorClass` (packages/domain/src/CardNumber.ts),
-- character for character (packages/payments/test/PaymentTriggers.test.ts compares both on
-- generated inputs). Rows stored before are not re-checked (as 0080 said of its own).
CREATE OR REPLACE FUNCTION looks_like_card_number(value text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  run text[];
BEGIN
  IF length(value) - length(translate(value, '0123456789', '')) < 13 THEN
    RETURN false;
  END IF;
  FOR run IN SELECT regexp_matches(value, '[A-Za-z]?[0-9]+(?:[ ./_\u00A0\u1680\u2000-\u200D\u202F\u205F\u2060\u3000\uFEFF-][0-9]+)*[A-Za-z]?', 'g') LOOP
    CONTINUE WHEN run[1] ~ '^[A-Za-z]|[A-Za-z]$';
    IF digit_groups_hold_card_number(regexp_split_to_array(run[1], '[ ./_\u00A0\u1680\u2000-\u200D\u202F\u205F\u2060\u3000\uFEFF-]')) THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END $$;
