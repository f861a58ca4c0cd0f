import { Effect, Schema } from "effect"

/** Every request in these tests is cut off after this: a hung server fails the test, never the suite. */
export const requestTimeout_ms = 10_000

export class HttpCallError extends Schema.TaggedError<HttpCallError>()("HttpCallError", {
  method: Schema.String,
  path: Schema.String,
  message: Schema.String
}) {}

export interface Answer {
  readonly status: number
  readonly headers: Headers
  /** The exact body text (replays are compared byte for byte). */
  readonly text: string
  readonly contentType: string
  readonly elapsed_ms: number
}

export interface RequestOptions {
  readonly apiKey?: string | undefined
  readonly idempotencyKey?: string | undefined
  /** Serialized with JSON.stringify and sent as application/json. */
  readonly json?: unknown
  /** Sent as is (malformed JSON, oversized bodies). */
  readonly rawBody?: string | undefined
  /** Sent chunked, without Content-Length. */
  readonly stream?: ReadableStream<Uint8Array> | undefined
  readonly contentType?: string | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly timeout_ms?: number | undefined
}

/** One HTTP call with Node's fetch, bounded by `AbortSignal.timeout`. */
export const call = (baseUrl: string, method: string, path: string, options: RequestOptions = {}) =>
  Effect.tryPromise({
    try: async (): Promise<Answer> => {
      const headers: Record<string, string> = { ...options.headers }
      if (options.apiKey !== undefined) headers["authorization"] = `Bearer ${options.apiKey}`
      if (options.idempotencyKey !== undefined) headers["idempotency-key"] = options.idempotencyKey
      const body = options.stream ?? options.rawBody ?? (options.json === undefined ? undefined : JSON.stringify(options.json))
      if (body !== undefined) headers["content-type"] = options.contentType ?? "application/json"
      const started = performance.now()
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers,
        // A stream body needs half duplex (fetch sends it chunked).
        ...(body === undefined ? {} : { body, duplex: "half" }),
        signal: AbortSignal.timeout(options.timeout_ms ?? requestTimeout_ms)
      })
      const text = await response.text()
      return {
        status: response.status,
        headers: response.headers,
        text,
        contentType: response.headers.get("content-type") ?? "",
        elapsed_ms: performance.now() - started
      }
    },
    catch: (cause) => new HttpCallError({ method, path, message: cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause) })
  })

/** The body as JSON; a body that is not JSON fails the test with the text it got. */
export const jsonOf = (answer: Answer): { readonly [field: string]: unknown } => decodeJsonObject(answer.text)

const decodeJsonObject = Schema.decodeUnknownSync(Schema.fromJsonString(Schema.Record(Schema.String, Schema.Unknown)))

export const stringField = (answer: Answer, field: string): string => {
  const value = jsonOf(answer)[field]
  if (typeof value !== "string") throw new Error(`expected "${field}" to be a string in ${answer.text.slice(0, 500)}`)
  return value
}
