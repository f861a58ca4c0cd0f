import { BodyTooLarge, BodyUnreadable, InvalidRequest, MalformedJson, REQUEST_BODY_BYTES_MAX, REQUEST_BODY_NESTING_MAX, UnsupportedMediaType } from "@pay/api"
import { metadataKeyNotEchoed } from "@pay/domain"
import { ByteSize, Effect, Result, Schema, SchemaIssue } from "effect"
import { HttpServerRequest } from "effect/http"

export type BodyError = BodyTooLarge | BodyUnreadable | UnsupportedMediaType | MalformedJson | InvalidRequest

/** The body's declared length (`Content-Length`, 0 when absent). */
const declaredBodyBytes = (request: HttpServerRequest.HttpServerRequest): number => Number(request.headers["content-length"] ?? "0")

/** Reads under the body's bound: a chunked body is cut off at it. */
const withinBodyBound = Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.bytes(REQUEST_BODY_BYTES_MAX))

/**
 * Reads the body, bounded: a declared Content-Length over the limit is refused before reading;
 * a chunked body is cut off at the limit. A refusal is answered, never stored (nothing executed yet).
 */
export const readJsonBody = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<Schema.Json | undefined, BodyError> =>
  Effect.gen(function* () {
    const declared = declaredBodyBytes(request)
    if (declared > REQUEST_BODY_BYTES_MAX) {
      return yield* new BodyTooLarge({ limit_bytes: REQUEST_BODY_BYTES_MAX, declared_bytes: declared })
    }
    const contentType = request.headers["content-type"] ?? ""
    // Node's parser decodes `chunked` and passes any other transfer coding through as if absent:
    // a body sent as `gzip, chunked` would be read as plain (RFC 9112 §6.1: a coding the server
    // does not understand is refused).
    const transferEncoding = request.headers["transfer-encoding"]?.trim().toLowerCase()
    if (transferEncoding !== undefined && transferEncoding !== "chunked") {
      return yield* new InvalidRequest({ detail: "Transfer-Encoding: only chunked is supported", field: "Transfer-Encoding" })
    }
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
    // No body: no bytes, or JSON's own whitespace only (RFC 8259 §2: space, tab, LF, CR). Not
    // `trim()`, which also drops every Unicode space: a settle whose body was one U+00A0 ran as
    // "no body", a full capture, and a refund's U+3000 with no Content-Type a full refund
    // (outside contract fuzz).
    if (text !== undefined && jsonWhitespaceOnly.test(text)) return undefined
    // A coded body (gzip, …) would be read as if it were not: refused (RFC 9110 §8.4.1 allows 415).
    // `identity` is the absence of a coding.
    const contentEncoding = request.headers["content-encoding"]?.trim().toLowerCase()
    if (contentEncoding !== undefined && contentEncoding !== "" && contentEncoding !== "identity") {
      return yield* new UnsupportedMediaType({ contentType: contentType.slice(0, 200), contentEncoding: contentEncoding.slice(0, 100) })
    }
    if (!isJsonUtf8(contentType)) return yield* new UnsupportedMediaType({ contentType: contentType.slice(0, 200) })
    // JSON between systems is UTF-8 (RFC 8259 §8.1): a byte sequence that is not would be stored
    // with U+FFFD in place of what the client sent, so it is refused instead.
    if (text === undefined) return yield* new MalformedJson({ reason: "it is not UTF-8" })
    return yield* Effect.fromResult(parseJsonBody(text))
  }).pipe(withinBodyBound)

/**
 * Receives the body (bounded as `readJsonBody` reads it) before the request takes one of its
 * merchant's places (MerchantInFlight.ts): a client still uploading held a place while nothing
 * ran, and ten stalled uploads made the merchant's other requests 429 for up to the request timeout
 * (outside retrying client's review). The request caches what it read; `readJsonBody` then takes
 * the bytes, or the read's failure, from that cache and answers it as before: so the outcome here
 * is not looked at (a refusal is the handler's to answer, with its code). A declared length over
 * the limit is not read at all (refused unread by the handler).
 */
export const receiveBodyFirst = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<void> =>
  declaredBodyBytes(request) > REQUEST_BODY_BYTES_MAX ? Effect.void : request.arrayBuffer.pipe(Effect.exit, Effect.asVoid, withinBodyBound)

/**
 * A body field's name for `field`: its members joined with dots (`metadata.order_id`, an array
 * element by its index), except a member whose name would read as more than one (empty, or with
 * `.`, `[`, `]` or `"`: a metadata key may hold any of them), written in brackets as a JSON string
 * (`metadata["a.b"]`, `metadata[""]`), so that a client can map `field` back to one member.
 */
export const fieldPath = (segments: ReadonlyArray<string>): string =>
  segments.reduce((path, segment, index) => {
    if (segment === "" || /[.[\]"]/.test(segment)) return `${path}[${JSON.stringify(segment)}]`
    return index === 0 ? segment : `${path}.${segment}`
  }, "")

/**
 * `application/json`, with no charset or `charset=utf-8` (quoted or not, any case): JSON between
 * systems is UTF-8 (RFC 8259 §8.1), and a body declared in another charset would be read as UTF-8
 * all the same, i.e. as something the client did not send: a 415. Other parameters are ignored.
 */
export const isJsonUtf8 = (header: string): boolean => {
  const [mediaType = "", ...parameters] = header.split(";")
  if (mediaType.trim().toLowerCase() !== "application/json") return false
  return parameters.every((parameter) => {
    const [name = "", value = ""] = parameter.split("=")
    if (name.trim().toLowerCase() !== "charset") return true
    const charset = value.trim().replace(/^"(.*)"$/u, "$1").toLowerCase()
    return charset === "utf-8" || charset === "utf8"
  })
}

const jsonWhitespaceOnly = /^[ \t\n\r]*$/u

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
    const field = fieldPath(infinite)
    return Result.fail(
      field === ""
        ? new InvalidRequest({ detail: "a number is out of range" })
        : new InvalidRequest({ detail: `${field}: the number is out of range`, field })
    )
  }
  const ambiguity = ambiguousToken(text)
  if (ambiguity !== undefined) return Result.fail(ambiguityProblem(ambiguity))
  const decoded = decodeJson(parsed)
  return Result.isSuccess(decoded) ? Result.succeed(decoded.success) : Result.fail(new MalformedJson())
}

/** The index of the quote that closes the JSON string opening at `start` (escapes skipped). */
const stringEnd = (text: string, start: number): number => {
  let end = start + 1
  while (end < text.length && text[end] !== "\"") end += text[end] === "\\" ? 2 : 1
  return end
}

/** How deep containers nest in a valid JSON text (a loop over the text: no recursion, any depth). */
export const nestingDepth = (text: string): number => {
  let depth = 0
  let deepest = 0
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    if (char === "{" || char === "[") deepest = Math.max(deepest, ++depth)
    else if (char === "}" || char === "]") depth--
    else if (char === "\"") i = stringEnd(text, i)
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

/**
 * What JSON.parse lets through but a reader of the text would not agree on: a member given twice in
 * one object, or a number written with a fraction or an exponent. Every number of every body of
 * this API is an integer (money in minor units, a duration in ms: `request-body.test.ts` checks the
 * document declares no other), and JSON.parse rounds to a double before any schema sees it:
 * `9999999999.99999999` became 10000000000 and `10.0`, `1e1` and `10` one request. An integer is
 * written as one, exactly.
 */
export type Ambiguity =
  | { readonly _tag: "DuplicateMember"; readonly path: string }
  | { readonly _tag: "InexactNumber"; readonly path: string; readonly token: string }

/** One entry per open container: the member names seen so far and the current one (objects), or the index (arrays). */
interface OpenContainer {
  readonly names: Set<string> | undefined
  member: string
  index: number
}

const pathOf = (open: ReadonlyArray<OpenContainer>): string =>
  fieldPath(open.map((container) => (container.names === undefined ? String(container.index) : container.member)))

const isDigit = (char: string | undefined) => char !== undefined && char >= "0" && char <= "9"
/** A number token starts with `-` or a digit (the `e` of `true` and `false` starts none). */
const isNumberChar = (char: string | undefined) => isDigit(char) || (char !== undefined && "-+.eE".includes(char))

/** The first ambiguity of a valid JSON text, with the dotted path of its member (escapes compared decoded). */
export const ambiguousToken = (text: string): Ambiguity | undefined => {
  const open: Array<OpenContainer> = []
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    const top = open.at(-1)
    if (char === "{" || char === "[") open.push({ names: char === "{" ? new Set() : undefined, member: "", index: 0 })
    else if (char === "}" || char === "]") open.pop()
    else if (char === "," && top !== undefined && top.names === undefined) top.index++
    else if (char === "\"") {
      const end = stringEnd(text, i)
      let next = end + 1
      while (text[next] === " " || text[next] === "\t" || text[next] === "\n" || text[next] === "\r") next++
      if (text[next] === ":" && top?.names !== undefined) {
        const name: unknown = JSON.parse(text.slice(i, end + 1))
        if (typeof name === "string") {
          top.member = name
          if (top.names.has(name)) return { _tag: "DuplicateMember", path: pathOf(open) }
          top.names.add(name)
        }
      }
      i = end
    } else if (char === "-" || isDigit(char)) {
      let end = i
      while (isNumberChar(text[end])) end++
      const token = text.slice(i, end)
      if (/[.eE]/u.test(token)) return { _tag: "InexactNumber", path: pathOf(open), token: token.slice(0, 40) }
      i = end - 1
    }
  }
  return undefined
}

const ambiguityProblem = (ambiguity: Ambiguity): InvalidRequest => {
  const { path } = ambiguity
  const reason = ambiguity._tag === "DuplicateMember"
    ? "the member is given more than once"
    : `must be an integer written without a fraction or an exponent (got ${ambiguity.token})`
  if (path !== "") return new InvalidRequest({ detail: `${path}: ${reason}`, field: path })
  // No path: the body itself is that number (every body of this API is an object), so say so,
  // as the schema says of a bare integer, string or array.
  return new InvalidRequest({ detail: `the body must be a JSON object (got the number ${ambiguity._tag === "InexactNumber" ? ambiguity.token : ""})` })
}

/**
 * The body a POST with optional members decodes: none is `{}`; anything sent (JSON `null`
 * included) is decoded as sent, so a body that is not an object is refused, not read as "none".
 */
export const bodyOrEmpty = (body: Schema.Json | undefined): Schema.Json => (body === undefined ? {} : body)

/**
 * The body as an idempotency key's fingerprint covers it: `{}` is no body. Every POST reads no
 * body as `{}` (bodyOrEmpty), so a retry that sends one where the first try sent the other is the
 * same request, on every route (an HTTP library may drop an empty `{}`, or add one).
 */
export const bodyToFingerprint = (body: Schema.Json | undefined): Schema.Json | undefined =>
  body !== null && typeof body === "object" && !Array.isArray(body) && Object.keys(body).length === 0 ? undefined : body

/**
 * Decodes a value with a schema: unknown fields are errors, and the first issue names the field
 * and the reason (`amount: must be an integer …`).
 */
export const decodeBody = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, value: unknown) =>
  Schema.decodeUnknownEffect(schema)(value, { onExcessProperty: "error" }).pipe(
    Effect.mapError((error) => {
      const { field, message } = firstIssue(error.issue)
      if (field !== undefined) return new InvalidRequest({ detail: `${field}: ${message}`, field })
      // The whole body of the wrong type (`null`, an array, a string): say it is the body.
      return new InvalidRequest({ detail: error.issue._tag === "InvalidType" ? `the body must be a JSON object (got ${jsonKindOf(value)})` : message })
    })
  )

/**
 * The library's generic words for a missing or an unknown member ("Missing key", "Expected no
 * excess property") in a merchant's words; a schema's own message, and every other failure's, as
 * the library renders it (outside API review: the generic ones read as the library's, not ours).
 */
const leafHook: SchemaIssue.LeafHook = (issue) => {
  const message = SchemaIssue.defaultLeafHook(issue)
  if (issue._tag === "MissingKey" && message === "Missing key") return "is required"
  if (issue._tag === "UnexpectedKey") return "unknown field: this request does not take it"
  return message
}

/**
 * "Expected number" in a merchant's words: every number this API takes is an integer (outside
 * contract fuzz: `amount: "1050"` said "Expected number", where `1.5` says "must be an integer…"),
 * and a list of allowed values (`Expected "a" | "b" | null`) as "must be one of" them.
 */
const jsonTypeWords: Readonly<Record<string, string>> = {
  number: "an integer (a JSON number)",
  string: "a string",
  array: "an array",
  boolean: "true or false",
  null: "null",
  object: "an object"
}
const jsonKindOf = (value: unknown): string =>
  value === null ? "null" : Array.isArray(value) ? "an array" : typeof value === "string" ? "a string" : typeof value === "number" ? "a number" : typeof value === "boolean" ? "a boolean" : "another value"

const wrongTypeInWords = (message: string): string => {
  const expected = /^Expected ((?:[a-z]+|"[^"]*")(?: \| (?:[a-z]+|"[^"]*"))*)$/u.exec(message)?.[1]
  if (expected === undefined) return message
  const alternatives = expected.split(" | ")
  const words = alternatives.map((alternative) => (alternative.startsWith("\"") ? alternative : jsonTypeWords[alternative] ?? alternative))
  const listed = words.length === 1 ? words.join("") : `${words.slice(0, -1).join(", ")} or ${words.at(-1) ?? ""}`
  return alternatives.some((alternative) => alternative.startsWith("\"")) ? `must be one of ${listed}` : `must be ${listed}`
}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1({ leafHook })

export const firstIssue = (issue: SchemaIssue.Issue): { readonly field: string | undefined; readonly message: string } => {
  const formatted = formatter(issue).issues[0]
  if (formatted === undefined) return { field: undefined, message: String(issue) }
  const path = (formatted.path ?? []).map((segment) => String(typeof segment === "object" && segment !== null && "key" in segment ? segment.key : segment))
  const unsayable = unsayableMetadataKey(path)
  if (unsayable !== undefined) return { field: "metadata", message: unsayable }
  return { field: path.length === 0 ? undefined : fieldPath(path), message: wrongTypeInWords(formatted.message) }
}

/**
 * A value's issue is named by its key (`metadata.note`), and the schema checks values before the
 * keys' own rules: a key that must never be echoed (a card number, a hidden character) came back in
 * `field` when its value was refused too (outside review). Such a key's own problem instead,
 * under `metadata`, in the keys' rules' words (`metadataKeyNotEchoed`, Payment.ts).
 */
const unsayableMetadataKey = (path: ReadonlyArray<string>): string | undefined => {
  const key = path[0] === "metadata" ? path[1] : undefined
  return key === undefined ? undefined : metadataKeyNotEchoed(key)
}
