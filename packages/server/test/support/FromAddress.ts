import { Effect, Option, Schema } from "effect"
import { request } from "node:http"

export class FromAddressError extends Schema.TaggedError<FromAddressError>()("FromAddressError", { message: Schema.String }) {}

export interface SourcedAnswer {
  readonly status: number
  /** The problem document's `code`, when the body is one. */
  readonly code: string | undefined
  readonly body: string
}

const problemCode = Schema.decodeUnknownOption(Schema.fromJsonString(Schema.Struct({ code: Schema.String })))

/**
 * `GET path` on a connection of its own from `localAddress`: on Linux every address of
 * 127.0.0.0/8 is the loopback interface, so a test picks the source address the server sees
 * (one per "client", one for a "proxy"). Bounded by `timeout_ms`; the connection is closed after.
 */
export const getFrom = (
  localAddress: string,
  port: number,
  path: string,
  options: { readonly apiKey?: string; readonly headers?: Readonly<Record<string, string>>; readonly timeout_ms?: number } = {}
) =>
  Effect.callback<SourcedAnswer, FromAddressError>((resume) => {
    const headers: Record<string, string> = { ...options.headers }
    if (options.apiKey !== undefined) headers["authorization"] = `Bearer ${options.apiKey}`
    const outgoing = request(
      { host: "127.0.0.1", port, path, method: "GET", localAddress, agent: false, headers, signal: AbortSignal.timeout(options.timeout_ms ?? 15_000) },
      (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("error", (error) => resume(Effect.fail(new FromAddressError({ message: error.message }))))
        response.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8")
          resume(Effect.succeed({
            status: response.statusCode ?? 0,
            code: Option.getOrUndefined(Option.map(problemCode(body), (problem) => problem.code)),
            body
          }))
        })
      }
    )
    outgoing.on("error", (error) => resume(Effect.fail(new FromAddressError({ message: `${localAddress} → ${path}: ${error.message}` }))))
    outgoing.end()
    return Effect.sync(() => void outgoing.destroy())
  })
