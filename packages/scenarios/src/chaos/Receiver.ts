import { createServer, type IncomingMessage, type Server } from "node:http"
import { Effect, Schema } from "effect"
import { Webhook } from "standardwebhooks"
import { seededRandom } from "./Schedule.ts"

export class ReceiverError extends Schema.TaggedError<ReceiverError>()("ReceiverError", { message: Schema.String }) {}

/** What the receiver applied once: the event a `webhook-id` carried. */
export interface Applied {
  readonly webhookId: string
  readonly eventId: string
  readonly type: string
  readonly paymentId: string
}

/**
 * A merchant's webhook receiver on loopback, as the docs tell merchants to write one: verify the
 * Standard Webhooks signature (the `standardwebhooks` package) over the raw body, refuse a bad one
 * (400), apply each `webhook-id` once (a redelivery is answered 200 and not applied again). It
 * answers a seeded share of first attempts 503 so the sender's retries are exercised.
 */
export interface WebhookReceiver {
  /** `http://127.0.0.1:<port>/m<merchant>`: one path per merchant endpoint. */
  readonly urlFor: (merchant: number) => string
  readonly setSecret: (merchant: number, secret: string) => void
  readonly applied: ReadonlyMap<string, Applied>
  /** Event ids (the body's `id`) applied under more than one `webhook-id`: must stay empty. */
  readonly appliedTwice: ReadonlyArray<string>
  readonly redeliveries: () => number
  readonly refusedSignatures: () => number
  readonly unavailableAnswers: () => number
}

const bodyLimit_bytes = 65_536
const unavailableShare = 0.05

const readBody = (request: IncomingMessage) =>
  new Promise<string | undefined>((resolve) => {
    const chunks: Array<Buffer> = []
    let size = 0
    request.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size <= bodyLimit_bytes) chunks.push(chunk)
    })
    request.on("end", () => resolve(size <= bodyLimit_bytes ? Buffer.concat(chunks).toString("utf8") : undefined))
    request.on("error", () => resolve(undefined))
  })

const EventBody = Schema.Struct({ id: Schema.String, type: Schema.String, data: Schema.Struct({ payment_id: Schema.String }) })
const decodeEventBody = Schema.decodeUnknownOption(Schema.fromJsonString(EventBody))

const header = (request: IncomingMessage, name: string) => {
  const value = request.headers[name]
  return typeof value === "string" ? value : ""
}

/** Starts the receiver (scoped: closed at the end). */
export const startReceiver = (seed: number) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly receiver: WebhookReceiver; readonly server: Server }, ReceiverError>((resume) => {
      const random = seededRandom(seed ^ 0x3eb)
      const secrets = new Map<string, Webhook>()
      const applied = new Map<string, Applied>()
      const byEvent = new Map<string, string>()
      const appliedTwice: Array<string> = []
      const answered = new Set<string>()
      let redeliveries = 0
      let refused = 0
      let unavailable = 0
      const server = createServer((request, response) => {
        void readBody(request).then((body) => {
          const webhook = secrets.get(request.url ?? "")
          const webhookId = header(request, "webhook-id")
          const headers = { "webhook-id": webhookId, "webhook-timestamp": header(request, "webhook-timestamp"), "webhook-signature": header(request, "webhook-signature") }
          let verified = false
          try {
            if (webhook !== undefined && body !== undefined) verified = webhook.verify(body, headers) !== undefined
          } catch {
            verified = false // WebhookVerificationError: a bad or missing signature, an old timestamp
          }
          const event = body === undefined ? undefined : decodeEventBody(body)
          if (!verified || event === undefined || event._tag === "None") {
            refused += 1
            return void response.writeHead(400).end("bad signature")
          }
          if (applied.has(webhookId)) {
            redeliveries += 1
            return void response.writeHead(200).end("already applied")
          }
          // A seeded share of first attempts fails: the sender must retry (same webhook-id).
          if (!answered.has(webhookId) && random() < unavailableShare) {
            answered.add(webhookId)
            unavailable += 1
            return void response.writeHead(503).end("try again")
          }
          answered.add(webhookId)
          const { id, type, data } = event.value
          const previous = byEvent.get(id)
          if (previous !== undefined && previous !== webhookId) appliedTwice.push(id)
          byEvent.set(id, webhookId)
          applied.set(webhookId, { webhookId, eventId: id, type, paymentId: data.payment_id })
          response.writeHead(200).end("ok")
        })
      })
      server.once("error", (error) => resume(Effect.fail(new ReceiverError({ message: error.message }))))
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        const receiver: WebhookReceiver = {
          urlFor: (merchant) => `http://127.0.0.1:${port}/m${merchant}`,
          setSecret: (merchant, secret) => void secrets.set(`/m${merchant}`, new Webhook(secret)),
          applied,
          appliedTwice,
          redeliveries: () => redeliveries,
          refusedSignatures: () => refused,
          unavailableAnswers: () => unavailable
        }
        resume(port > 0 ? Effect.succeed({ receiver, server }) : Effect.fail(new ReceiverError({ message: "no port" })))
      })
    }),
    ({ server }) => Effect.callback<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  ).pipe(Effect.map(({ receiver }) => receiver))
