import { BodyTooLarge, BodyUnreadable, InvalidRequest, MalformedJson, REQUEST_BODY_BYTES_MAX, REQUEST_BODY_NESTING_MAX, UnsupportedMediaType } from "@pay/api"
import { ByteSize, Effect, Result, Schema, SchemaIssue } from "effect"
import { HttpServerRequest } from "effect/http"

export type BodyError = BodyTooLarge | BodyUnreadable | UnsupportedMediaType | MalformedJson | InvalidRequest

/**
 * Reads the body, bounded: a declared Content-Length over the limit is refused before reading;
 * a chunked body is cut off at the limit. A refusal is answered, never stored (nothing executed yet).
 */
export const readJsonBody = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<Schema.Json | undefined, BodyError> =>
  Effect.gen(function* () {
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > REQUEST_BODY_BYTES_MAX) {
      return yield* new BodyTooLarge({ limit_bytes: REQUEST_BODY_BYTES_MAX, declared_bytes: declared })
    }
    const contentType = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? ""
    // A chunked body has no Content-Length to refuse up front: the read stops at MaxBodySize and
    // fails with reason BodyTooLarge, which is the client's 413, not an unreadable body.
    const bytes = yield* request.arrayBuffer.pipe(
      Effect.mapError((error) =>
        error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
          ? new BodyTooLarge({ limit_bytes: REQUEST_BODY_BYTES_MAX })
          : new BodyUnreadable()
      )
    )
    if (bytes.byteLength > REQUEST_BODY_BYTES_MAX) return yield* new BodyTooLarge({ limit_bytes: REQUEST_BODY_BYTES_MAX })
    const text = utf8Text(bytes)
    if (text?.trim() === "") return undefined
    if (contentType !== "application/json") return yield* new UnsupportedMediaType({ contentType })
    // JSON between systems is UTF-8 (RFC 8259 §8.1): a byte sequence that is not would be stored
    // with U+FFFD in place of what the client sent, so it is refused instead.
    if (text === undefined) return yield* new MalformedJson({ reason: "it is not UTF-8" })
    return yield* Effect.fromResult(parseJsonBody(text))
  }).pipe(Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.bytes(REQUEST_BODY_BYTES_MAX)))

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/** The body as text, or undefined when its bytes are not UTF-8 (a leading BOM is dropped, as before). */
const utf8Text = (bytes: ArrayBuffer): string | undefined => {
  try {
    return strictUtf8.decode(bytes)
  } catch {
    return undefined
  }
}

const decodeJson = Schema.decodeUnknownResult(Schema.Json)

/**
 * JSON text → a JSON value, refusing what JSON.parse lets through but means two things to two
 * readers: a member given twice in one object (JSON.parse keeps the last; a proxy may read the
 * first: `{"amount":5,"amount":99999999999}`), and a number too large for a double (`1E400` parses
 * as Infinity): each a 400 naming the member. A body nested deeper than REQUEST_BODY_NESTING_MAX is
 * a 400 before anything walks it (ten thousand `[` in 20 KB overflowed the stack of the
 * recursive walks below: a 500).
 */
export const parseJsonBody = (text: string): Result.Result<Schema.Json, MalformedJson | InvalidRequest> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return Result.fail(new MalformedJson())
  }
  if (nestingDepth(text) > REQUEST_BODY_NESTING_MAX) {
    return Result.fail(new InvalidRequest({ detail: `the body is nested deeper than ${REQUEST_BODY_NESTING_MAX} levels` }))
  }
  const infinite = nonFinitePath(parsed, [])
  if (infinite !== undefined) {
    const field = infinite.join(".")
    return Result.fail(
      field === ""
        ? new InvalidRequest({ detail: "a number is out of range" })
        : new InvalidRequest({ detail: `${field}: the number is out of range`, field })
    )
  }
  const duplicate = duplicateMember(text)
  if (duplicate !== undefined) {
    return Result.fail(new InvalidRequest({ detail: `${duplicate}: the member is given more than once`, field: duplicate }))
  }
  const decoded = decodeJson(parsed)
  return Result.isSuccess(decoded) ? Result.succeed(decoded.success) : Result.fail(new MalformedJson())
}

/** How deep containers nest in a valid JSON text (a loop over the text: no recursion, any depth). */
export const nestingDepth = (text: string): number => {
  let depth = 0
  let deepest = 0
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    if (char === "{" || char === "[") deepest = Math.max(deepest, ++depth)
    else if (char === "}" || char === "]") depth--
    else if (char === "\"") {
      i++
      while (i < text.length && text[i] !== "\"") i += text[i] === "\\" ? 2 : 1
    }
  }
  return deepest
}

/** The path of the first number that is not finite (JSON.parse of `1E400`), if any. */
const nonFinitePath = (value: unknown, path: ReadonlyArray<string>): ReadonlyArray<string> | undefined => {
  if (typeof value === "number") return Number.isFinite(value) ? undefined : path
  if (typeof value !== "object" || value === null) return undefined
  for (const [key, member] of Object.entries(value)) {
    const found = nonFinitePath(member, [...path, key])
    if (found !== undefined) return found
  }
  return undefined
}

/** The first member name given twice in one object of a valid JSON text (escapes compared decoded). */
export const duplicateMember = (text: string): string | undefined => {
  // One entry per open container: the member names seen so far (objects) or undefined (arrays).
  const open: Array<Set<string> | undefined> = []
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    if (char === "{") open.push(new Set())
    else if (char === "[") open.push(undefined)
    else if (char === "}" || char === "]") open.pop()
    else if (char === "\"") {
      let end = i + 1
      while (text[end] !== "\"") end += text[end] === "\\" ? 2 : 1
      let next = end + 1
      while (text[next] === " " || text[next] === "\t" || text[next] === "\n" || text[next] === "\r") next++
      const names = open.at(-1)
      if (text[next] === ":" && names !== undefined) {
        const name: unknown = JSON.parse(text.slice(i, end + 1))
        if (typeof name === "string") {
          if (names.has(name)) return name
          names.add(name)
        }
      }
      i = end
    }
  }
  return undefined
}

/**
 * Decodes a value with a schema: unknown fields are errors, and the first issue names the field
 * and the reason (`amount: must be an integer …`).
 */
export const decodeBody = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, value: unknown) =>
  Schema.decodeUnknownEffect(schema)(value, { onExcessProperty: "error" }).pipe(
    Effect.mapError((error) => {
      const { field, message } = firstIssue(error.issue)
      return field === undefined
        ? new InvalidRequest({ detail: message })
        : new InvalidRequest({ detail: `${field}: ${message}`, field })
    })
  )

export const firstIssue = (issue: SchemaIssue.Issue): { readonly field: string | undefined; readonly message: string } => {
  const formatted = SchemaIssue.makeFormatterStandardSchemaV1()(issue).issues[0]
  if (formatted === undefined) return { field: undefined, message: String(issue) }
  const path = (formatted.path ?? []).map((segment) => String(typeof segment === "object" && segment !== null && "key" in segment ? segment.key : segment))
  return { field: path.length === 0 ? undefined : path.join("."), message: formatted.message }
}
