-- Card numbers in free text, after an outside re-test of 0119 (2026-12-05). `looks_like_card_number`
-- as the code's `cardDigitsAsShown` and `looksLikeCardNumber` (packages/domain/src/CardNumber.ts),
-- character for character (packages/payments/test/PaymentTriggers.test.ts compares both on
-- generated inputs), changed from 0119 in three ways:
-- - no line breaks between digit groups: they joined a card on its own line to the numbers on the
--   lines around it, hiding it in the middle of a run, where only a run's first and last groups are
--   tried (72 % of such notes were stored), and refused lists written one per line; no tabs either
--   (rows of numbers from a spreadsheet, refused one in three);
-- - no NFKC: its tables differ between Node's and PostgreSQL's versions, and a letter only Node's
--   knew made the code accept what the database refused (a 500); fullwidth digits come from the
--   explicit table of other scripts' digits instead (44 runs of ten, the subscript, mathematical,
--   segmented and outlined digits among them);
-- - the middle dots and bullets (U+00B7, U+2022, U+30FB, U+FF65), the Japanese long-vowel mark an
--   input method types as a dash (U+30FC, U+FF70), the fullwidth, small, vertical and leader forms
--   of - . / _ (U+FF0D-U+FF0F, U+FF3F, U+FE30-U+FE34, U+FE4D-U+FE4F, U+FE52, U+FE58, U+FE63,
--   U+2024, U+2025) and the superscript and subscript minus (U+207B, U+208B) separate groups.
-- Rows stored before are not re-checked (as 0080 said of its own).
CREATE OR REPLACE FUNCTION looks_like_card_number(value text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_text text := regexp_replace(
    translate(value,
      '０１２３４５６７８９₀₁₂₃₄₅₆₇₈₉𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗𝟘𝟙𝟚𝟛𝟜𝟝𝟞𝟟𝟠𝟡𝟢𝟣𝟤𝟥𝟦𝟧𝟨𝟩𝟪𝟫𝟬𝟭𝟮𝟯𝟰𝟱𝟲𝟳𝟴𝟵𝟶𝟷𝟸𝟹𝟺𝟻𝟼𝟽𝟾𝟿🯰🯱🯲🯳🯴🯵🯶🯷🯸🯹𜳰𜳱𜳲𜳳𜳴𜳵𜳶𜳷𜳸𜳹٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹߀߁߂߃߄߅߆߇߈߉०१२३४५६७८९০১২৩৪৫৬৭৮৯੦੧੨੩੪੫੬੭੮੯૦૧૨૩૪૫૬૭૮૯୦୧୨୩୪୫୬୭୮୯௦௧௨௩௪௫௬௭௮௯౦౧౨౩౪౫౬౭౮౯೦೧೨೩೪೫೬೭೮೯൦൧൨൩൪൫൬൭൮൯෦෧෨෩෪෫෬෭෮෯๐๑๒๓๔๕๖๗๘๙໐໑໒໓໔໕໖໗໘໙༠༡༢༣༤༥༦༧༨༩၀၁၂၃၄၅၆၇၈၉႐႑႒႓႔႕႖႗႘႙០១២៣៤៥៦៧៨៩᠐᠑᠒᠓᠔᠕᠖᠗᠘᠙᥆᥇᥈᥉᥊᥋᥌᥍᥎᥏᧐᧑᧒᧓᧔᧕᧖᧗᧘᧙᪀᪁᪂᪃᪄᪅᪆᪇᪈᪉᪐᪑᪒᪓᪔᪕᪖᪗᪘᪙᭐᭑᭒᭓᭔᭕᭖᭗᭘᭙᮰᮱᮲᮳᮴᮵᮶᮷᮸᮹᱀᱁᱂᱃᱄᱅᱆᱇᱈᱉᱐᱑᱒᱓᱔᱕᱖᱗᱘᱙꘠꘡꘢꘣꘤꘥꘦꘧꘨꘩꣐꣑꣒꣓꣔꣕꣖꣗꣘꣙꤀꤁꤂꤃꤄꤅꤆꤇꤈꤉꧐꧑꧒꧓꧔꧕꧖꧗꧘꧙꧰꧱꧲꧳꧴꧵꧶꧷꧸꧹꩐꩑꩒꩓꩔꩕꩖꩗꩘꩙꯰꯱꯲꯳꯴꯵꯶꯷꯸꯹',
      '01234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789'),
    '[\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u2800\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFF8\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0000-\U000E0FFF]', '', 'g');
  run text[];
BEGIN
  IF length(v_text) - length(translate(v_text, '0123456789', '')) < 13 THEN
    RETURN false;
  END IF;
  FOR run IN SELECT regexp_matches(v_text, '[A-Za-z]?[0-9]+(?:[ ./_\u00A0\u00B7\u1680\u2000-\u200A\u2010-\u2015\u2022\u2024\u2025\u202F\u205F\u207B\u208B\u2212\u3000\u30FB\u30FC\uFE30-\uFE34\uFE4D-\uFE4F\uFE52\uFE58\uFE63\uFF0D-\uFF0F\uFF3F\uFF65\uFF70-]{1,2}[0-9]+)*', 'g') LOOP
    CONTINUE WHEN run[1] ~ '^[A-Za-z]';
    IF digit_groups_hold_card_number(regexp_split_to_array(run[1], '[ ./_\u00A0\u00B7\u1680\u2000-\u200A\u2010-\u2015\u2022\u2024\u2025\u202F\u205F\u207B\u208B\u2212\u3000\u30FB\u30FC\uFE30-\uFE34\uFE4D-\uFE4F\uFE52\uFE58\uFE63\uFF0D-\uFF0F\uFF3F\uFF65\uFF70-]+')) THEN
      RETURN true;
    END IF;
  END LOOP;
  RETURN false;
END $$;
