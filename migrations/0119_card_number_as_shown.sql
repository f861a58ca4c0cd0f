-- Card numbers in free text, after an outside re-test of 0117 (2026-12-05): `looks_like_card_number`
-- reads the text as a reader sees its digits, as the code's `cardDigitsAsShown` and
-- `looksLikeCardNumber` do (packages/domain/src/CardNumber.ts), character for character
-- (packages/payments/test/PaymentTriggers.test.ts compares both on generated inputs):
-- - compatibility forms folded (NFKC: fullwidth, circled, superscript digits), then the decimal
--   digits of other scripts that NFKC leaves alone (Arabic-Indic, Persian, Devanagari, Bengali, Thai,
--   … 35 runs of ten) read as ASCII digits, then the characters that display as nothing
--   (default-ignorable code points: zero-width spaces and joiners, bidirectional marks, the soft
--   hyphen, variation selectors, U+034F, Hangul fillers, tag characters; and U+2800) dropped:
--   `4242<U+200E>4242…`, `4242<U+3164>4242…` and `٤٢٤٢…` were stored;
-- - between digit groups one or two separators, now with the line breaks (LF, CR, U+2028, U+2029):
--   `4242<LF>4242…` was stored; and not three (0117): ` / ` and ` - ` joined phone pairs and date
--   ranges, refusing one in three (`020 7946 0958 / 020 7946 0959`, `02.01.2026 - 16.01.2026`);
-- - a run glued to a letter at its start is a code (an IBAN, `INV…`); a letter at its end no longer
--   exempts it (`4242 4242 4242 4242x` was stored).
-- Rows stored before are not re-checked (as 0080 said of its own).
CREATE OR REPLACE FUNCTION looks_like_card_number(value text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_text text := regexp_replace(
    translate(normalize(value, NFKC),
      '٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹߀߁߂߃߄߅߆߇߈߉०१२३४५६७८९০১২৩৪৫৬৭৮৯੦੧੨੩੪੫੬੭੮੯૦૧૨૩૪૫૬૭૮૯୦୧୨୩୪୫୬୭୮୯௦௧௨௩௪௫௬௭௮௯౦౧౨౩౪౫౬౭౮౯೦೧೨೩೪೫೬೭೮೯൦൧൨൩൪൫൬൭൮൯෦෧෨෩෪෫෬෭෮෯๐๑๒๓๔๕๖๗๘๙໐໑໒໓໔໕໖໗໘໙༠༡༢༣༤༥༦༧༨༩၀၁၂၃၄၅၆၇၈၉႐႑႒႓႔႕႖႗႘႙០១២៣៤៥៦៧៨៩᠐᠑᠒᠓᠔᠕᠖᠗᠘᠙᥆᥇᥈᥉᥊᥋᥌᥍᥎᥏᧐᧑᧒᧓᧔᧕᧖᧗᧘᧙᪀᪁᪂᪃᪄᪅᪆᪇᪈᪉᪐᪑᪒᪓᪔᪕᪖᪗᪘᪙᭐᭑᭒᭓᭔᭕᭖᭗᭘᭙᮰᮱᮲᮳᮴᮵᮶᮷᮸᮹᱀᱁᱂᱃᱄᱅᱆᱇᱈᱉᱐᱑᱒᱓᱔᱕᱖᱗᱘᱙꘠꘡꘢꘣꘤꘥꘦꘧꘨꘩꣐꣑꣒꣓꣔꣕꣖꣗꣘꣙꤀꤁꤂꤃꤄꤅꤆꤇꤈꤉꧐꧑꧒꧓꧔꧕꧖꧗꧘꧙꧰꧱꧲꧳꧴꧵꧶꧷꧸꧹꩐꩑꩒꩓꩔꩕꩖꩗꩘꩙꯰꯱꯲꯳꯴꯵꯶꯷꯸꯹',
      '01234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789'),
    '[\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u2800\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFF8\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0000-\U000E0FFF]', '', 'g');
  run text[];
BEGIN
  IF length(v_text) - length(translate(v_text, '0123456789', '')) < 13 THEN
    RETURN false;
  END IF;
  FOR run IN SELECT regexp_matches(v_text, '[A-Za-z]?[0-9]+(?:[ \t\n\r./_\u00A0\u1680\u2000-\u200A\u2010-\u2015\u2028\u2029\u202F\u205F\u2212\u3000-]{1,2}[0-9]+)*', 'g') LOOP
    CONTINUE WHEN run[1] ~ '^[A-Za-z]';
    IF digit_groups_hold_card_number(regexp_split_to_array(run[1], '[ \t\n\r./_\u00A0\u1680\u2000-\u200A\u2010-\u2015\u2028\u2029\u202F\u205F\u2212\u3000-]+')) THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END $$;
