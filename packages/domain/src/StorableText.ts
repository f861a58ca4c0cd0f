import { Schema } from "effect"

/**
 * Text as PostgreSQL stores it and JSON Schema counts it. PostgreSQL's `text` and `jsonb` cannot
 * hold U+0000, and UTF-8 cannot encode a lone UTF-16 surrogate: either reached the database as an
 * encoding error, answered as a 503 that told clients to retry forever. Lengths are counted in
 * code points, as PostgreSQL's `length()` and JSON Schema's `maxLength` count them (JavaScript's
 * `.length` counts UTF-16 units: 300 emoji were "over 500 characters").
 *
 * The pattern is the same rule for a JSON Schema validator (ECMA-262 with the `u` flag, as
 * JSON Schema 2020-12 validators compile patterns): no NUL, no surrogate code point (in `u` mode
 * a well-formed pair is one code point above U+FFFF, so only lone surrogates match the class).
 */
export const storablePattern = /^[^\u0000\uD800-\uDFFF]*$/u

/** Code points, as PostgreSQL `length()` and JSON Schema `minLength`/`maxLength` count them. */
export const codePointLength = (text: string): number => {
  let count = 0
  for (const _ of text) count++
  return count
}

/** Why a text cannot be stored, or `undefined` when it can. */
export const unstorableReason = (text: string): string | undefined => {
  if (text.includes("\u0000")) return "must not contain NUL (U+0000)"
  if (!storablePattern.test(text)) return "must be well-formed Unicode (a lone UTF-16 surrogate cannot be stored)"
  return undefined
}

/**
 * A string of `min`..`max` code points that PostgreSQL can store; `name` starts the message
 * (`description must be at most 500 characters`).
 */
export const StorableText = (name: string, length: TextLength) =>
  Schema.String.check(
    Schema.makeFilter(
      (text: string) => storableTextProblem(name, length, text) ?? true,
      {
        expected: `text of ${length.min} to ${length.max} characters without NUL or lone surrogates`,
        toJsonSchema: () => storableTextJsonSchema(length)
      }
    )
  )

export interface TextLength {
  readonly min: number
  readonly max: number
}

/** Why `text` is not a storable text of `length` (the message StorableText fails with), or undefined. */
export const storableTextProblem = (name: string, length: TextLength, text: string): string | undefined => {
  const reason = unstorableReason(text)
  if (reason !== undefined) return `${name} ${reason}`
  const count = codePointLength(text)
  if (count < length.min || count > length.max) {
    return length.min === 0 ? `${name} must be at most ${length.max} characters` : `${name} must be ${length.min} to ${length.max} characters`
  }
  return undefined
}

/**
 * Characters a reader of the text does not see but that change what it shows (outside attack
 * review F4): the C0 controls other than tab, line feed and carriage return, DEL and the C1
 * controls (U+007F-U+009F: a terminal escape sequence in an operator's log viewer), and the
 * bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069: "Trojan
 * Source", CVE-2021-42574, text in a dashboard or an export that reads in another order than it
 * is stored). The marks a right-to-left language needs (U+200E, U+200F, U+061C) stay allowed.
 * A merchant's free text refuses them (DisplayableText); what is already stored still reads back.
 * Migration 0083 is the database's copy of this class.
 */
const hiddenCharacterClass = "\\u0001-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069"
const hiddenCharacter = new RegExp(`[${hiddenCharacterClass}]`, "u")

// With the `u` flag a surrogate range matches lone surrogates only (a pair is one code point).
const hiddenCharacters = new RegExp(`[${hiddenCharacterClass}\\u0000\\uD800-\\uDFFF]`, "gu")

/**
 * `text` with every hidden character (the class above, NUL, and a lone surrogate, which as a JSON
 * `\ud800` escape strict parsers such as serde_json refuse) written as `\u{XXXX}`: for echoing
 * what a client sent (a path, a query parameter's name) in a problem's `detail` or a log line,
 * which an operator's terminal or a merchant's dashboard would otherwise obey (outside attack review).
 */
export const showingHiddenCharacters = (text: string): string =>
  text.replace(hiddenCharacters, (found) => `\\u{${(found.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}}`)

/**
 * Storable and displayable, for a JSON Schema validator: no NUL, no lone surrogate, no hidden
 * character (the class above).
 */
export const displayablePattern = new RegExp(`^[^\\u0000${hiddenCharacterClass}\\uD800-\\uDFFF]*$`, "u")

/** Why `text` holds a character its reader would not see, or `undefined`; the code point is named, never the text. */
export const hiddenCharacterReason = (text: string): string | undefined => {
  const found = hiddenCharacter.exec(text)?.[0]
  if (found === undefined) return undefined
  const codePoint = found.codePointAt(0) ?? 0
  const named = `U+${codePoint.toString(16).toUpperCase().padStart(4, "0")}`
  return codePoint >= 0x202a
    ? `must not contain bidirectional override or isolate characters (U+202A-U+202E, U+2066-U+2069; found ${named})`
    : `must not contain control characters other than tab, line feed and carriage return (found ${named})`
}

/**
 * Text a merchant sends: storable (StorableText) and displayable (no hidden character). The
 * stored form stays StorableText, so that rows written before this rule read back.
 */
export const DisplayableText = (name: string, length: TextLength) =>
  StorableText(name, length).check(displayable(name))

/** The hidden-character rule as a check, `name` starting the message; JSON Schema: the pattern. */
export const displayable = (name: string) =>
  Schema.makeFilter(
    (text: string) => {
      const reason = hiddenCharacterReason(text)
      return reason === undefined ? true : `${name} ${reason}`
    },
    { toJsonSchema: () => ({ pattern: displayablePattern.source }) }
  )

/** Why `text` is not a displayable text of `length`, or undefined. */
export const displayableTextProblem = (name: string, length: TextLength, text: string): string | undefined => {
  const problem = storableTextProblem(name, length, text)
  if (problem !== undefined) return problem
  const hidden = hiddenCharacterReason(text)
  return hidden === undefined ? undefined : `${name} ${hidden}`
}

/** The same rule for a JSON Schema validator. */
export const storableTextJsonSchema = (length: TextLength) => ({
  pattern: storablePattern.source,
  maxLength: length.max,
  ...(length.min > 0 ? { minLength: length.min } : {})
})
