/**
 * Card numbers (PANs) where a merchant must not put them: in a payment method token, in a
 * description, in metadata (outside attack review F3). We never store card data: a PAN pasted by
 * mistake would sit in our database, our logs and every answer that shows the payment.
 *
 * Two rules, because the two places differ:
 * - a token (`payment_method`) holds no card number at all, so 12 digits with only separators
 *   between them are refused ({@link cardNumberLikePattern}), and a card number split into groups
 *   by letters ({@link tokenHoldsCardDigits});
 * - free text (`description`, metadata keys and values) holds order numbers, dates, phone
 *   numbers, where false positives matter more, so only what is plausibly a card number is
 *   refused: 13 to 19 digits that pass the Luhn check ({@link looksLikeCardNumber}).
 *
 * The database applies the same two rules (`migrations/0080_card_data_refused.sql`:
 * `payment_method_holds_card_digits`, `looks_like_card_number`); packages/payments/test
 * compares both on the same inputs.
 */

/**
 * Twelve digits or more with nothing but a run of the usual separators between them (`_ - .` and
 * space, any number: `pm_4242__4242__4242__4242`): a card number written as printed. Expressible
 * as a pattern, so the OpenAPI document states it (`not: { pattern }`); the database's copy is
 * `payment_method_holds_card_digits` in 0080's trigger (0076's CHECK did it for `_`, the one
 * separator the column's alphabet allows, until 0084 dropped it).
 */
export const cardNumberLikePattern = "[0-9](?:[-_. ]*[0-9]){11}"
const cardNumberLike = new RegExp(cardNumberLikePattern, "u")

/**
 * Digit groups of four or more joined by one or two other characters: a card number hidden
 * by letters (`pm_4242x4242x4242x4242`, `pm_4242_x4242_x4242_x4242`, `pm_3782x822463x10005`;
 * outside attack review F3). Refused only when the groups hold a plausible card number (13 to 19
 * digits passing the Luhn check, see {@link runHoldsCardNumber}): random hex tokens (a UUID) often
 * hold digits with single letters between them, and are not card numbers. With groups of one digit or more and no Luhn check, 60%
 * of random 32-hex tokens were refused; with this rule 1%, on top of the 3% that hold 12 digits
 * in a row (the rule above).
 */
export const letterGroupedRunPattern = "[0-9][0-9][0-9][0-9]+(?:[^0-9][^0-9]?[0-9][0-9][0-9][0-9]+)*"
const letterGroupedRun = new RegExp(letterGroupedRunPattern, "gu")
const nonDigits = /[^0-9]+/u

/** The length of a PAN (ISO/IEC 7812): 13 to 19 digits. */
export const CARD_NUMBER_DIGITS = { min: 13, max: 19 } as const

/**
 * What may stand between the digit groups of a card number written in text, one or two of them
 * (`4242  4242`): a space, `-`, `.`, `/` or `_`, any other Unicode space (U+00A0
 * no-break, U+2009 thin, U+202F narrow no-break, U+3000 ideographic, as word processors, locales
 * and input methods group digits), a Unicode dash or minus (U+2010-U+2015, U+2212), a middle dot or
 * bullet (U+00B7, U+2022, U+30FB, U+FF65), the Japanese long-vowel mark an input method types as a
 * dash (U+30FC, U+FF70), the fullwidth, small, vertical and leader forms of `-`, `.`, `/` and `_`
 * (U+FF0D-U+FF0F, U+FF3F, U+FE30-U+FE34, U+FE4D-U+FE4F, U+FE52, U+FE58, U+FE63, U+2024, U+2025: a
 * Japanese input method in fullwidth mode, among others), or a superscript or subscript minus
 * (U+207B, U+208B; outside re-tests). Not three: ` / ` and ` - ` join phone numbers and date ranges
 * (`020 7946 0958 / 020 7946 0959`), which three refused one time in three; not tabs (rows of
 * numbers pasted from a spreadsheet were refused one time in three); and not line breaks,
 * which joined a card on its own line to the numbers on the lines around it, where the run's first
 * and last groups are tried, not its middle (outside re-tests: both). The database's copy is 0120's
 * `looks_like_card_number`, character for character.
 */
const cardNumberSeparatorClass = " ./_\u00A0\u00B7\u1680\u2000-\u200A\u2010-\u2015\u2022\u2024\u2025\u202F\u205F\u207B\u208B\u2212\u3000\u30FB\u30FC\uFE30-\uFE34\uFE4D-\uFE4F\uFE52\uFE58\uFE63\uFF0D-\uFF0F\uFF3F\uFF65\uFF70-"

/**
 * Characters that display as nothing (Unicode's default-ignorable code points: zero-width spaces
 * and joiners, bidirectional marks, the soft hyphen, variation selectors, U+034F, the Hangul fillers,
 * tag characters…, and U+2800, the blank Braille pattern): dropped before the digits are read, as a
 * reader's eye drops them (outside re-tests stored `4242\u200E4242…` and `4242\u31644242…`).
 */
const invisibleCharacters = /[\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u2800\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFF8\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0000}-\u{E0FFF}]/gu

/**
 * The first code point of each run of ten decimal digits read as ASCII digits: fullwidth (`４２４２`,
 * as a Japanese input method types them), subscript, mathematical, segmented and outlined (`𝟒𝟐…`,
 * `🯴🯲…`), Arabic-Indic, Persian, Devanagari, Bengali, Thai, … (outside re-tests: `٤٢٤٢…` and
 * `𝟒𝟐…` were stored). An explicit table, not Unicode's compatibility normalization (NFKC), whose
 * tables differ between Node and PostgreSQL versions: a character only Node's knew made the code
 * accept what the database refused, a 500 (outside re-test).
 */
const otherScriptDigitZeros: ReadonlyArray<number> = [
  0xff10, 0x2080, 0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1fbf0, 0x1ccf0, 0x0660, 0x06f0, 0x07c0, 0x0966, 0x09e6, 0x0a66, 0x0ae6, 0x0b66, 0x0be6, 0x0c66, 0x0ce6, 0x0d66, 0x0de6, 0x0e50, 0x0ed0, 0x0f20,
  0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90, 0x1b50, 0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0,
  0xa9f0, 0xaa50, 0xabf0
]
const otherScriptDigit = new RegExp(`[${otherScriptDigitZeros.map((zero) => `\\u{${zero.toString(16)}}-\\u{${(zero + 9).toString(16)}}`).join("")}]`, "gu")
const asciiDigit = (digit: string): string => {
  const code = digit.codePointAt(0) ?? 0
  const zero = otherScriptDigitZeros.find((base) => code >= base && code <= base + 9) ?? code
  return String(code - zero)
}

/** Text as a reader sees its digits: fullwidth and other scripts' digits as ASCII, invisible characters dropped. */
export const cardDigitsAsShown = (text: string): string =>
  text.replace(otherScriptDigit, asciiDigit).replace(invisibleCharacters, "")

/**
 * Digit groups joined by one or two separators each, as card numbers are written by hand or
 * printed (`4242 4242 4242 4242`, `4242-4242-4242-4242`, `4242/4242/4242/4242`; the separators
 * above). Not `:` or `,` (clock times, amounts, lists) and not letters (words):
 * `2026-12-04 10:30:00` is runs of 10, 2 and 2 digits. The run is matched with the ASCII letter
 * glued to its start, if any: a run that starts glued to a letter is part of a code
 * (`BE68 5390 0754 7034`, an IBAN; `INV2026000123456789`), not a card number written in text. A
 * letter after it does not (outside re-test: `4242 4242 4242 4242x` was stored).
 */
export const cardNumberRunPattern = `[A-Za-z]?[0-9]+(?:[${cardNumberSeparatorClass}]{1,2}[0-9]+)*`
const cardNumberRun = new RegExp(cardNumberRunPattern, "gu")
const cardNumberRunSeparator = new RegExp(`[${cardNumberSeparatorClass}]+`, "u")
const gluedToLetter = /^[A-Za-z]/u

/** The Luhn checksum (ISO/IEC 7812-1) of a string of ASCII digits. */
export const luhnValid = (digits: string): boolean => {
  if (!/^[0-9]+$/u.test(digits)) return false
  let total = 0
  for (let index = 0; index < digits.length; index++) {
    const digit = digits.charCodeAt(digits.length - 1 - index) - 48
    const doubled = index % 2 === 1 ? digit * 2 : digit
    total += doubled > 9 ? doubled - 9 : doubled
  }
  return total % 10 === 0
}

const plausibleCardNumber = (digits: string): boolean =>
  digits.length >= CARD_NUMBER_DIGITS.min && digits.length <= CARD_NUMBER_DIGITS.max && luhnValid(digits)

/**
 * A run's candidates: its groups from the first one on (the whole run among them), and its groups
 * up to the last one. A card number followed by its expiry or code (`4242 4242 4242 4242 12/28`)
 * or preceded by another number (`#1234 4242 4242 4242 4242`) is found; a window in the middle of
 * a long run is not tried (two phone numbers side by side would hold a dozen, one in ten passing).
 */
const runHoldsCardNumber = (groups: ReadonlyArray<string>): boolean => {
  let prefix = ""
  for (const group of groups) {
    prefix += group
    if (prefix.length > CARD_NUMBER_DIGITS.max) break
    if (plausibleCardNumber(prefix)) return true
  }
  let suffix = ""
  for (let index = groups.length - 1; index > 0; index--) {
    suffix = `${groups[index] ?? ""}${suffix}`
    if (suffix.length > CARD_NUMBER_DIGITS.max) break
    if (plausibleCardNumber(suffix)) return true
  }
  return false
}

/**
 * Whether a payment method token holds a card number: 12 digits or more with only separators
 * between them ({@link cardNumberLikePattern}), or groups of four digits or more joined by one or two
 * characters that hold a plausible card number ({@link letterGroupedRunPattern}).
 */
export const tokenHoldsCardDigits = (token: string): boolean => {
  if (cardNumberLike.test(token)) return true
  for (const match of token.matchAll(letterGroupedRun)) {
    if (runHoldsCardNumber(match[0].split(nonDigits))) return true
  }
  return false
}

/**
 * Whether free text holds a plausible card number: in a run of {@link cardNumberRunPattern} not
 * glued to a letter, 13 to 19 digits (the run's first groups or its last ones) that pass the Luhn
 * check. A long order number passes the check one time in ten only; 12 digits or fewer are never
 * refused. Read as shown ({@link cardDigitsAsShown}): fullwidth digits (`４２４２`, as a Japanese
 * input method types them) and other scripts' digits are the digits they show, and invisible
 * characters between them are not there.
 */
export const looksLikeCardNumber = (text: string): boolean => {
  for (const match of cardDigitsAsShown(text).matchAll(cardNumberRun)) {
    const run = match[0]
    if (!gluedToLetter.test(run) && runHoldsCardNumber(run.split(cardNumberRunSeparator))) return true
  }
  return false
}

/** What {@link looksLikeCardNumber} found, `subject` first: the start of every such refusal. */
export const cardNumberFound = (subject: string): string =>
  `${subject} looks like a card number (${CARD_NUMBER_DIGITS.min} to ${CARD_NUMBER_DIGITS.max} digits passing the Luhn check)`

/** Why a payment's or a refund's free text that {@link looksLikeCardNumber} is refused. */
export const cardNumberInTextReason = (subject: string): string =>
  `${cardNumberFound(subject)}; card data must not be sent in description or metadata`

/** Where an echo may hold a card number: digit groups of four or more joined by one or two characters, or twelve digits or more joined by separators only. */
const echoedCardRun = new RegExp(`${letterGroupedRunPattern}|${cardNumberLikePattern}(?:[-_. ]*[0-9])*`, "gu")

/** What replaces a card number in an echo. */
export const cardNumberMask = "[card number]"

/**
 * `text` with every run that holds a plausible card number (13 to 19 digits passing the Luhn
 * check, as {@link tokenHoldsCardDigits} finds them, whether letters, separators or nothing join
 * the groups) written {@link cardNumberMask}. For what the server echoes of a request (a member's
 * or a query parameter's name in a problem's `field` and `detail`, a path id on a log line): the
 * refusal rules above decide what may be STORED; an echo of a refused request must not carry one
 * either (outside client review: a metadata key of 41 characters starting with a card number came
 * back in `field`).
 */
export const withoutCardNumbers = (text: string): string =>
  // A UUID is left whole: about 0.3 % of random ones hold such a run across their hex groups, and
  // an echoed delivery id came back masked (outside re-test). Only a whole token (nothing
  // alphanumeric glued to it: `4242424242424242-aaaa-…` was echoed whole), of RFC 9562's layout
  // (version 1-8, variant 8-b: `deadbeef-4242-4242-4242-4242…` is not one), holding a hex letter.
  text.split(uuidToken).map((part, index) => (index % 2 === 1 && /[a-fA-F]/u.test(part) ? part : maskCardRuns(part))).join("")

const maskCardRuns = (text: string): string =>
  text.replace(echoedCardRun, (run) => (runHoldsCardNumber(run.split(nonDigits)) ? cardNumberMask : run))
/** A UUID in its canonical form (8-4-4-4-12 hex digits, RFC 9562's version and variant), alone, captured so that `split` keeps it. */
const uuidToken = /(?<![0-9A-Za-z])([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12})(?![0-9A-Za-z])/u
