import { Result, Schema } from "effect"
import { createHash } from "node:crypto"

/**
 * The request fingerprint: what "the same request" means for an idempotency key.
 *
 *     fingerprint = lowercase hex( SHA-256( METHOD + "\n" + path + "\n" + canonicalBody ) )
 *
 * - `METHOD` is upper case (`POST`).
 * - `path` is the routed path without the query string (`/v1/payments/pay_…/authorize`); our POST
 *   endpoints take no query parameters.
 * - `canonicalBody` is the JSON body with every object's keys sorted (recursively) and no
 *   insignificant whitespace, so two clients that serialize the same document differently (key
 *   order, spaces, newlines) produce the same fingerprint, while any difference in a value (a
 *   different amount, `1` vs `"1"`, an added field) produces a different one. An absent or empty
 *   body is the empty string. Keys are sorted by UTF-16 code units (JavaScript's default sort,
 *   as in RFC 8785 JCS); strings and numbers are written as `JSON.stringify` writes them; a
 *   `bigint` is written as a JSON integer; a property whose value is `undefined` is omitted and
 *   `undefined` in an array is `null` (as `JSON.stringify` does). Array order is significant.
 *   Numbers are compared as the doubles `JSON.parse` reads (`1`, `1.0` and `1e0` are the same);
 *   the API bounds its integers far below 2^53, where that is exact.
 *
 * The merchant is not part of the fingerprint because the key itself is scoped to the merchant.
 */
export type CanonicalJsonValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | ReadonlyArray<CanonicalJsonValue | undefined>
  | { readonly [key: string]: CanonicalJsonValue | undefined }

export const canonicalJson = (value: CanonicalJsonValue): string => {
  if (value === null) return "null"
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false"
    case "number":
      // JSON has no NaN/Infinity; JSON.stringify writes them as null, and so do we (a body parsed
      // from JSON never contains them).
      return Number.isFinite(value) ? JSON.stringify(value) : "null"
    case "bigint":
      return value.toString(10)
    case "string":
      return JSON.stringify(value)
  }
  if (isArray(value)) {
    return `[${value.map((item) => (item === undefined ? "null" : canonicalJson(item))).join(",")}]`
  }
  const entries: Array<string> = []
  for (const key of Object.keys(value).sort()) {
    const item = value[key]
    if (item !== undefined) entries.push(`${JSON.stringify(key)}:${canonicalJson(item)}`)
  }
  return `{${entries.join(",")}}`
}

const isArray = (
  value: CanonicalJsonValue
): value is ReadonlyArray<CanonicalJsonValue | undefined> => Array.isArray(value)

/** The canonical form of an optional body: `""` when there is none. */
export const canonicalBody = (body: CanonicalJsonValue | undefined): string =>
  body === undefined ? "" : canonicalJson(body)

/**
 * The canonical form of a raw body text: empty → `""`; valid JSON → {@link canonicalJson} of it;
 * anything else is fingerprinted byte for byte (it was not JSON, so there is nothing to normalize).
 */
export const canonicalBodyFromText = (text: string): string => {
  if (text.trim().length === 0) return ""
  const parsed = decodeJsonText(text)
  // Not JSON: the bytes themselves are the canonical form (documented above).
  return Result.isSuccess(parsed) ? canonicalJson(parsed.success) : text
}

const decodeJsonText = Schema.decodeUnknownResult(Schema.fromJsonString(Schema.Json))

export interface FingerprintInput {
  readonly method: string
  readonly path: string
  /** Already canonical (from {@link canonicalBody} or {@link canonicalBodyFromText}). */
  readonly canonicalBody: string
}

/** `sha256(METHOD "\n" path "\n" canonicalBody)`, 64 lowercase hex characters. */
export const fingerprint = (input: FingerprintInput): string =>
  createHash("sha256")
    .update(`${input.method.toUpperCase()}\n${input.path}\n${input.canonicalBody}`, "utf8")
    .digest("hex")

/** Convenience: the fingerprint of a method, a path and a (parsed) JSON body. */
export const fingerprintRequest = (request: {
  readonly method: string
  readonly path: string
  readonly body: CanonicalJsonValue | undefined
}): string => fingerprint({ method: request.method, path: request.path, canonicalBody: canonicalBody(request.body) })
