import { CodedError } from "@pay/domain"
import { Effect, Result, Schema } from "effect"

/**
 * The `Idempotency-Key` request header.
 *
 * Two spellings name the same key, so clients of either convention interoperate:
 * - the plain token Stripe documents: `Idempotency-Key: 8e03978e-40d5-43e8-bc93-6894a57f9324`
 * - the quoted Structured Field string (RFC 8941 sf-string) of the IETF draft "The
 *   Idempotency-Key HTTP Header Field": `Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`
 *   (inside the quotes, `\"` and `\\` are the only escapes).
 *
 * The key (after unquoting) must be 1 to 255 characters of printable ASCII (0x20-0x7E). Control
 * characters are refused because they corrupt logs and are what header-injection attempts look
 * like; other non-ASCII characters are refused because proxies and HTTP stacks decode them
 * inconsistently (obs-text), so the same client key could arrive as two different strings.
 * Surrounding spaces/tabs (HTTP's optional whitespace) are not part of the key.
 */
export const IDEMPOTENCY_KEY_LENGTH_MAX = 255

export const IdempotencyKey = Schema.String.check(
  Schema.isPattern(/^[\x20-\x7e]{1,255}$/, {
    message: "an idempotency key is 1 to 255 printable ASCII characters"
  })
).pipe(Schema.brand("IdempotencyKey"))
export type IdempotencyKey = typeof IdempotencyKey.Type

/** A POST arrived without an `Idempotency-Key` header. */
export class IdempotencyKeyMissing extends CodedError<IdempotencyKeyMissing>()(
  "idempotency_key_missing",
  "IdempotencyKeyMissing",
  {},
  () => "every POST requires an Idempotency-Key header (1 to 255 printable ASCII characters)"
) {}

export const IdempotencyKeyInvalidReason = Schema.Literals([
  "empty",
  "too_long",
  "control_character",
  "non_ascii",
  "malformed_quoted_string"
])
export type IdempotencyKeyInvalidReason = typeof IdempotencyKeyInvalidReason.Type

/** The header is present but is not an acceptable key. */
export class IdempotencyKeyInvalid extends CodedError<IdempotencyKeyInvalid>()(
  "idempotency_key_invalid",
  "IdempotencyKeyInvalid",
  { reason: IdempotencyKeyInvalidReason, detail: Schema.String },
  (e) => `invalid Idempotency-Key (${e.reason}): ${e.detail}`
) {}

const invalid = (reason: IdempotencyKeyInvalidReason, detail: string) =>
  Result.fail(new IdempotencyKeyInvalid({ reason, detail }))

/** HTTP optional whitespace: spaces and horizontal tabs only. */
const trimOws = (value: string): string => value.replace(/^[ \t]+|[ \t]+$/g, "")

/**
 * RFC 8941 §4.2.5 sf-string: DQUOTE *( %x20-21 / %x23-5B / %x5D-7E / "\" DQUOTE / "\\" ) DQUOTE.
 * Returns the unescaped content, or a reason. Nothing may follow the closing quote (the draft
 * defines no parameters, and ignoring trailing text would let two different headers name one key).
 */
const unquote = (value: string): Result.Result<string, IdempotencyKeyInvalid> => {
  let out = ""
  for (let i = 1; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === 0x5c /* \ */) {
      const next = value[i + 1]
      if (next !== '"' && next !== "\\") {
        return invalid("malformed_quoted_string", "inside quotes, a backslash may only escape \" or \\")
      }
      out += next
      i++
    } else if (c === 0x22 /* " */) {
      if (i !== value.length - 1) {
        return invalid("malformed_quoted_string", "nothing may follow the closing quote")
      }
      return Result.succeed(out)
    } else {
      out += value[i]
    }
  }
  return invalid("malformed_quoted_string", "the quoted string has no closing quote")
}

const checkCharacters = (key: string): Result.Result<IdempotencyKey, IdempotencyKeyInvalid> => {
  if (key.length === 0) return invalid("empty", "the key is empty")
  if (key.length > IDEMPOTENCY_KEY_LENGTH_MAX) {
    return invalid("too_long", `the key has ${key.length} characters; at most ${IDEMPOTENCY_KEY_LENGTH_MAX} are allowed`)
  }
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) {
      return invalid("control_character", `control character 0x${c.toString(16).padStart(2, "0")} at position ${i}`)
    }
    if (c > 0x7e) return invalid("non_ascii", `non-ASCII character at position ${i}`)
  }
  return Result.succeed(IdempotencyKey.make(key))
}

/**
 * Parses the raw header value (`undefined` when the header is absent). Pure; see
 * {@link parseIdempotencyKey} for the Effect form.
 */
export const parseIdempotencyKeyResult = (
  header: string | undefined
): Result.Result<IdempotencyKey, IdempotencyKeyMissing | IdempotencyKeyInvalid> => {
  if (header === undefined) return Result.fail(new IdempotencyKeyMissing())
  const value = trimOws(header)
  if (value.startsWith('"')) {
    const unquoted = unquote(value)
    return Result.isFailure(unquoted) ? Result.fail(unquoted.failure) : checkCharacters(unquoted.success)
  }
  return checkCharacters(value)
}

/** The header value as a key, or a typed 400 naming the reason. */
export const parseIdempotencyKey = (
  header: string | undefined
): Effect.Effect<IdempotencyKey, IdempotencyKeyMissing | IdempotencyKeyInvalid> =>
  Effect.fromResult(parseIdempotencyKeyResult(header))
