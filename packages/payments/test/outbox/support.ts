import { CreatePaymentInput, type Merchant, type PaymentCommand } from "@pay/domain"
import {
  defaultKafkaAdminTimeouts,
  defaultKafkaProducerLimits,
  KafkaAdmin,
  KafkaProducer,
  decodeRows
} from "@pay/infra"
import { makeTestDatabase, shortId, testRun } from "@pay/testkit"
import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { execFile } from "node:child_process"
import { createServer, type Socket } from "node:net"
// The payments package writes the outbox rows; it depends on this package, so the tests reach it
// by path instead of a (cyclic) workspace dependency.
import { MerchantRepository } from "@pay/merchants"
import { type ChangeContext, PaymentRepository } from "../../src/index.ts"
import { decodePaymentEventRecord } from "@pay/outbox/CloudEvents"
import { OutboxTopics, paymentsEventsTopic } from "@pay/outbox/OutboxTopics"
import { defaultPublisherOptions, OutboxPublisher, type PublisherOptions } from "@pay/outbox/Publisher"
import { OutboxStore } from "@pay/outbox/OutboxStore"
import { settlementServices } from "../support.ts"

export const run = testRun()

/** Kafka clients for one broker (the main one unless a test brings its own). */
export const kafkaClients = (brokers: string, clientId: string) =>
  Layer.mergeAll(
    KafkaAdmin.layerWith({ brokers, clientId: `${clientId}-admin`, ...defaultKafkaAdminTimeouts }),
    KafkaProducer.layerWith({ brokers, clientId: `${clientId}-producer`, ...defaultKafkaProducerLimits })
  )

/** Repositories and the outbox store on a fresh database of their own. */
export const OutboxTestLayer = (brokers: string, clientId: string) =>
  Layer.mergeAll(PaymentRepository.layer, MerchantRepository.layer, OutboxStore.layer, kafkaClients(brokers, clientId)).pipe(
    Layer.provideMerge(settlementServices),
    Layer.provideMerge(makeTestDatabase({ maxConnections: 12 }))
  )

export const context: ChangeContext = {
  actor: "test:outbox",
  correlationId: "corr-outbox-1",
  traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
}

export const authorize: PaymentCommand = { _tag: "authorize" }
export const settle: PaymentCommand = { _tag: "settle" }

export const paymentInput = (merchant: Merchant, amount_minor = 1999): CreatePaymentInput =>
  Schema.decodeUnknownSync(CreatePaymentInput)({
    merchant_id: merchant.id,
    amount_minor,
    currency: "EUR",
    payment_method: "pm_card_visa"
  })

/**
 * A topic of this test's own: `<run prefix><random>.payments.events`, 3 partitions, created the
 * way the platform creates it. Deleted with every other topic of the run at the end.
 */
export const freshTopic = Effect.gen(function* () {
  const prefix = `${run.kafkaTopicPrefix}${shortId()}.`
  const ready = yield* OutboxTopics.ensure(prefix)
  return { prefix, topic: ready.topic, partitions: ready.partitions }
})

export const publisherOptions = (topic: string, overrides: Partial<PublisherOptions> = {}): PublisherOptions => ({
  ...defaultPublisherOptions,
  topic,
  pollInterval_ms: 100,
  backoffBase_ms: 50,
  backoffMax_ms: 500,
  ...overrides
})

export const makePublisher = (options: PublisherOptions) => OutboxPublisher.make(options)

/** Publishes until a round claims nothing (bounded: at most `rounds_max` rounds). */
export const drain = (publisher: OutboxPublisher["Service"], rounds_max = 100) =>
  Effect.gen(function* () {
    let published = 0
    for (let round = 0; round < rounds_max; round++) {
      const result = yield* publisher.publishBatch
      published += result.published
      if (result.claimed === 0) return published
    }
    return yield* Effect.die(new Error(`outbox not drained after ${rounds_max} rounds`))
  })

export const OutboxEventRow = Schema.Struct({
  id: Schema.String,
  position: Schema.BigInt,
  aggregate_id: Schema.String,
  event_type: Schema.String,
  published_at: Schema.NullOr(Schema.Date),
  attempt_count: Schema.Number
})
export type OutboxEventRow = typeof OutboxEventRow.Type

/** Every outbox row, in insertion order. */
export const outboxRows = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return yield* decodeRows(OutboxEventRow)(sql`
    SELECT id, position, aggregate_id, event_type, published_at, attempt_count FROM outbox_events ORDER BY position`)
})

export const unpublishedCount = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* decodeRows(Schema.Struct({ count: Schema.BigInt }))(sql`SELECT count(*)::bigint AS count FROM outbox_events WHERE published_at IS NULL`)
  return Number(rows[0]?.count ?? 0n)
})

/** Polls (wall clock) until `check` holds, or fails after `timeout_ms`. */
export const eventually = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, timeout_ms: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout_ms
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out after ${timeout_ms} ms waiting for: ${what}`))
      yield* Effect.sleep("50 millis")
    }
  })

/**
 * A "broker" that accepts TCP connections and never answers: a hung Kafka. Requests to it time
 * out (unlike a closed port, which fails in milliseconds), so a send holds its batch for a while.
 */
export const silentBroker = Effect.acquireRelease(
  Effect.callback<{ readonly port: number; readonly close: () => void }>((resume) => {
    const sockets = new Set<Socket>()
    const server = createServer((socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({
        port,
        close: () => {
          for (const socket of sockets) socket.destroy()
          server.close()
        }
      }))
    })
  }),
  (broker) => Effect.sync(() => broker.close())
)

// --- reading back with kcat: a client that shares no code with ours (librdkafka) ---------------

export interface KcatRecord {
  readonly partition: number
  readonly offset: number
  readonly key: string | null
  readonly value: string
  readonly headers: Readonly<Record<string, string>>
}

const KcatLine = Schema.Struct({
  partition: Schema.Int,
  offset: Schema.Int,
  key: Schema.NullOr(Schema.String),
  payload: Schema.NullOr(Schema.String),
  headers: Schema.optionalKey(Schema.Array(Schema.String))
})
const decodeKcatLine = Schema.decodeUnknownSync(Schema.fromJsonString(KcatLine))

export class KcatFailed extends Schema.TaggedError<KcatFailed>()("KcatFailed", { message: Schema.String }) {}

/**
 * Every record of `topic`, read from the beginning to the current end of each partition with
 * Debian's `kcat` (-J: one JSON object per record, headers as a flat [name, value, …] list).
 * Sorted by partition, then offset.
 */
export const kcatReadAll = (brokers: string, topic: string) =>
  Effect.callback<ReadonlyArray<KcatRecord>, KcatFailed>((resume) => {
    const child = execFile(
      "kcat",
      ["-b", brokers, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q", "-X", "broker.address.family=v4"],
      { timeout: 30_000, killSignal: "SIGKILL", maxBuffer: 256 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null) {
          resume(Effect.fail(new KcatFailed({ message: `kcat failed (${error.message.split("\n")[0]}): ${stderr.slice(-2_000)}` })))
          return
        }
        try {
          const records = stdout
            .split("\n")
            .filter((line) => line.trim().length > 0)
            .map((line): KcatRecord => {
              const parsed = decodeKcatLine(line)
              const headers: Record<string, string> = {}
              const flat = parsed.headers ?? []
              for (let index = 0; index + 1 < flat.length; index += 2) {
                const name = flat[index]
                const value = flat[index + 1]
                if (name !== undefined && value !== undefined) headers[name] = value
              }
              return { partition: parsed.partition, offset: parsed.offset, key: parsed.key, value: parsed.payload ?? "", headers }
            })
            .sort((a, b) => a.partition - b.partition || a.offset - b.offset)
          resume(Effect.succeed(records))
        } catch (parseError) {
          resume(Effect.fail(new KcatFailed({ message: `unreadable kcat output: ${String(parseError)}` })))
        }
      }
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** Decodes each kcat record as a consumer would (envelope + shared schema + consistency). */
export const decodeAll = (records: ReadonlyArray<KcatRecord>) => Effect.forEach(records, decodePaymentEventRecord)

export { paymentsEventsTopic }
