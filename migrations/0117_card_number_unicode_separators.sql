-- A card number in free text (descriptions, metadata, endpoints' descriptions: 0080, 0081) written
-- with look-alike separators passed (outside re-tests, 2026-12-05): `4242\u00A04242\u00A04242\u00A04242`
-- (no-break spaces, as word processors and some locales group digits), two spaces, tabs, en dashes,
-- zero-width spaces, fullwidth digits (`４２４２…`, as a Japanese input method types them) were
-- stored. `looks_like_card_number` now reads the text in Unicode's compatibility form (NFKC:
-- fullwidth, circled and superscript digits are the digits they show), and takes as separators
-- between digit groups, one to three of them, a space or a tab, . / _ -, every other Unicode space
-- (U+00A0, U+1680, U+2000-U+200A, U+202F, U+205F, U+3000), the invisible joiners (U+200B-U+200D,
-- U+2060, U+FEFF), a soft hyphen and the Unicode dashes and minus (U+00AD, U+2010-U+2015, U+2212),
-- as the code's `looksLikeCardNumber` (packages/domain/src/CardNumber.ts), character for character
-- (packages/payments/test/PaymentTriggers.test.ts compares both on generated inputs). Rows stored
-- before are not re-checked (as 0080 said of its own).
CREATE OR REPLACE FUNCTION looks_like_card_number(value text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_text text := normalize(value, NFKC);
  run text[];
BEGIN
  IF length(v_text) - length(translate(v_text, '0123456789', '')) < 13 THEN
    RETURN false;
  END IF;
  FOR run IN SELECT regexp_matches(v_text, '[A-Za-z]?[0-9]+(?:[ \t./_\u00A0\u00AD\u1680\u2000-\u200D\u2010-\u2015\u202F\u205F\u2060\u2212\u3000\uFEFF-]{1,3}[0-9]+)*[A-Za-z]?', 'g') LOOP
    CONTINUE WHEN run[1] ~ '^[A-Za-z]|[A-Za-z]$';
    IF digit_groups_hold_card_number(regexp_split_to_array(run[1], '[ \t./_\u00A0\u00AD\u1680\u2000-\u200D\u2010-\u2015\u202F\u205F\u2060\u2212\u3000\uFEFF-]+')) THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END $$;
