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

/** The same rule for a JSON Schema validator. */
export const storableTextJsonSchema = (length: TextLength) => ({
  pattern: storablePattern.source,
  maxLength: length.max,
  ...(length.min > 0 ? { minLength: length.min } : {})
})
