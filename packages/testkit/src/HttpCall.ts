import { Effect, Schema } from "effect"

/**
 * One HTTP client for everything that talks to the API from outside: the server's tests, the
 * drills (`pnpm scenario`) and the chaos run's clients. Node's fetch, every call bounded.
 */

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
  /** The answer carried `Idempotent-Replayed: true` (a stored answer sent again). */
  readonly replayed: boolean
  /** From the request's start to the whole body read, rounded to the millisecond. */
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
  /** The call is cut off after this: a hung server fails the caller, never hangs it. */
  readonly timeout_ms: number
}

/** One HTTP call with Node's fetch, bounded by `AbortSignal.timeout`; a socket error or timeout is an HttpCallError. */
export const call = (baseUrl: string, method: string, path: string, options: RequestOptions) =>
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
        signal: AbortSignal.timeout(options.timeout_ms)
      })
      const text = await response.text()
      return {
        status: response.status,
        headers: response.headers,
        text,
        contentType: response.headers.get("content-type") ?? "",
        replayed: response.headers.get("idempotent-replayed") === "true",
        elapsed_ms: Math.round(performance.now() - started)
      }
    },
    catch: (cause) => new HttpCallError({ method, path, message: cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause) })
  })

const decodeObject = Schema.decodeUnknownOption(Schema.fromJsonString(Schema.Record(Schema.String, Schema.Unknown)))

/** The body as a JSON object; undefined when it is not one. */
export const jsonObjectOf = (answer: Answer): { readonly [field: string]: unknown } | undefined => {
  const decoded = decodeObject(answer.text)
  return decoded._tag === "Some" ? decoded.value : undefined
}

/** A field of a JSON answer, as a string ("" when absent, not a string, or the body is not JSON). */
export const field = (answer: Answer, name: string): string => {
  const value = jsonObjectOf(answer)?.[name]
  return typeof value === "string" ? value : ""
}
