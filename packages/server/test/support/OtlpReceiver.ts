import { Effect, Schema } from "effect"
import { createServer } from "node:http"

/**
 * An OTLP/HTTP receiver (JSON encoding) on loopback, started by the test: the server under test
 * exports its spans here exactly as it would to a collector. Bounded: at most 64 MiB kept.
 */
const ReceivedLink = Schema.Struct({ traceId: Schema.String, spanId: Schema.String })
const ReceivedSpan = Schema.Struct({
  traceId: Schema.String,
  spanId: Schema.String,
  parentSpanId: Schema.optional(Schema.String),
  name: Schema.String,
  kind: Schema.Number,
  links: Schema.optional(Schema.Array(ReceivedLink)),
  /** OTLP JSON attributes; the string ones are what the tests read (`stringAttribute`). */
  attributes: Schema.optional(Schema.Array(Schema.Struct({ key: Schema.String, value: Schema.Struct({ stringValue: Schema.optional(Schema.String) }) })))
})
export type ReceivedSpan = typeof ReceivedSpan.Type

/** A span's string attribute, undefined when absent or not a string. */
export const stringAttribute = (span: ReceivedSpan | undefined, key: string): string | undefined =>
  span?.attributes?.find((attribute) => attribute.key === key)?.value.stringValue
const ExportRequest = Schema.Struct({
  resourceSpans: Schema.Array(Schema.Struct({ scopeSpans: Schema.Array(Schema.Struct({ spans: Schema.Array(ReceivedSpan) })) }))
})
const decodeExport = Schema.decodeUnknownSync(Schema.fromJsonString(ExportRequest))

const received_bytes_max = 64 * 1024 * 1024

export interface OtlpReceiver {
  readonly url: string
  readonly spans: () => ReadonlyArray<ReceivedSpan>
  /** Bodies that were not OTLP JSON traces (the test fails on any). */
  readonly rejected: () => ReadonlyArray<string>
}

export const otlpReceiver = Effect.acquireRelease(
  Effect.callback<{ receiver: OtlpReceiver; close: () => void }>((resume) => {
    const spans: Array<ReceivedSpan> = []
    const rejected: Array<string> = []
    let total_bytes = 0
    const server = createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => {
        total_bytes += chunk.length
        if (total_bytes <= received_bytes_max) chunks.push(chunk)
      })
      request.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8")
        if (request.url === "/v1/traces") {
          try {
            for (const resource of decodeExport(body).resourceSpans) for (const scope of resource.scopeSpans) spans.push(...scope.spans)
          } catch (error) {
            rejected.push(`${String(error)}: ${body.slice(0, 300)}`)
          }
        } else rejected.push(`unexpected path ${request.url ?? ""}`)
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({
        receiver: { url: `http://127.0.0.1:${port}`, spans: () => [...spans], rejected: () => [...rejected] },
        close: () => server.close()
      }))
    })
  }),
  ({ close }) => Effect.sync(close)
).pipe(Effect.map(({ receiver }) => receiver))
