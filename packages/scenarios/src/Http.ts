import { Effect, Schema } from "effect"

/** Every scenario request is cut off after this unless the call says otherwise. */
export const requestTimeout_ms = 15_000

export class HttpCallError extends Schema.TaggedError<HttpCallError>()("HttpCallError", {
  method: Schema.String,
  path: Schema.String,
  message: Schema.String
}) {}

export interface Answer {
  readonly status: number
  /** The exact body (replays are compared byte for byte). */
  readonly text: string
  readonly replayed: boolean
  readonly elapsed_ms: number
}

export interface CallOptions {
  readonly apiKey?: string
  readonly idempotencyKey?: string
  readonly json?: unknown
  readonly timeout_ms?: number
}

/** One HTTP call with Node's fetch, bounded by `AbortSignal.timeout`; a socket error is an HttpCallError. */
export const call = (baseUrl: string, method: string, path: string, options: CallOptions = {}) =>
  Effect.tryPromise({
    try: async (): Promise<Answer> => {
      const headers: Record<string, string> = {}
      if (options.apiKey !== undefined) headers["authorization"] = `Bearer ${options.apiKey}`
      if (options.idempotencyKey !== undefined) headers["idempotency-key"] = options.idempotencyKey
      if (options.json !== undefined) headers["content-type"] = "application/json"
      const started = performance.now()
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers,
        ...(options.json === undefined ? {} : { body: JSON.stringify(options.json) }),
        signal: AbortSignal.timeout(options.timeout_ms ?? requestTimeout_ms)
      })
      const text = await response.text()
      return {
        status: response.status,
        text,
        replayed: response.headers.get("idempotent-replayed") === "true",
        elapsed_ms: Math.round(performance.now() - started)
      }
    },
    catch: (cause) => new HttpCallError({ method, path, message: cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause) })
  })

const decodeObject = Schema.decodeUnknownOption(Schema.fromJsonString(Schema.Record(Schema.String, Schema.Unknown)))

/** A field of a JSON answer, as a string ("" when absent or not a string). */
export const field = (answer: Answer, name: string): string => {
  const body = decodeObject(answer.text)
  if (body._tag === "None") return ""
  const value = body.value[name]
  return typeof value === "string" ? value : ""
}

/** `201 pay_… CREATED`-style one-liner for evidence. */
export const brief = (answer: Answer): string =>
  `${answer.status}${answer.replayed ? " (replayed)" : ""} ${field(answer, "code") || field(answer, "status")} ${field(answer, "id")}`.trim()
