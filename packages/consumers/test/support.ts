import {
  defaultKafkaAdminTimeouts,
  defaultKafkaConsumerOptions,
  defaultKafkaProducerLimits,
  KafkaAdmin,
  KafkaConsumer,
  KafkaProducer,
  type KafkaRecord,
  type ProducerMessage
} from "@pay/infra"
import { toEventRecord } from "@pay/outbox/CloudEvents"
import { OutboxTopics } from "@pay/outbox/OutboxTopics"
import { makeTestDatabase, shortId, testRun } from "@pay/testkit"
import { Duration, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { randomUUID } from "node:crypto"
import { type ConsumerOptions, defaultConsumerOptions } from "../src/ConsumerConfig.ts"
import { behindTarget, runConsumer } from "../src/ConsumerRunner.ts"
import { deadLetterTopic } from "../src/ConsumersProcess.ts"
import { makeSettlementProjection, type ProjectionRow, settlementConsumerName } from "../src/SettlementProjection.ts"

export const run = testRun()

/** The broker's minimum: a killed instance's partitions move on after 6 s, not 10. */
export const testSession = { sessionTimeout_ms: 6_000, rebalanceTimeout_ms: 15_000, heartbeatInterval_ms: 1_000 }

export const kafkaTestClients = (clientId: string) =>
  Layer.mergeAll(
    KafkaAdmin.layerWith({ brokers: run.kafkaBrokers, clientId: `${clientId}-admin`, ...defaultKafkaAdminTimeouts }),
    KafkaProducer.layerWith({ brokers: run.kafkaBrokers, clientId: `${clientId}-producer`, ...defaultKafkaProducerLimits }),
    KafkaConsumer.layerWith({ brokers: run.kafkaBrokers, clientId: `${clientId}-consumer`, ...defaultKafkaConsumerOptions, ...testSession })
  )

export const ConsumerTestLayer = (clientId: string) => kafkaTestClients(clientId).pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 8 })))

/** Small bounds so that retries and parking happen within a test's time. */
export const testOptions: ConsumerOptions = {
  ...defaultConsumerOptions,
  batch_max: 50,
  pollTimeout_ms: 200,
  attempt_max: 3,
  backoffBase_ms: 10,
  backoffMax_ms: 50,
  restartBackoffMax_ms: 500,
  lagInterval_ms: 1_000
}

/** `<run prefix><random>.payments.events` (3 partitions) and its DLQ topic. */
export const freshTopics = Effect.gen(function* () {
  const prefix = `${run.kafkaTopicPrefix}${shortId()}.`
  const ready = yield* OutboxTopics.ensure(prefix)
  const admin = yield* KafkaAdmin
  yield* admin.createTopic({ topic: deadLetterTopic(prefix), partitions: 1 })
  return { prefix, topic: ready.topic, dlqTopic: deadLetterTopic(prefix) }
})

const hex = "0123456789abcdefghjkmnpqrstvwxyz"
const randomBody = () => Array.from({ length: 24 }, () => hex[Math.floor(Math.random() * hex.length)]).join("")
export const paymentId = () => `pay_${randomBody()}`
export const merchantId = () => `mer_${randomBody()}`

export interface TestEvent {
  readonly eventId: string
  readonly message: ProducerMessage
  readonly payload: Record<string, unknown>
}

/** An event as the outbox publisher would send it (same `toEventRecord`), with a fresh ce_id. */
export const eventMessage = (topic: string, payload: Record<string, unknown>, eventId: string = randomUUID()): TestEvent => {
  const paymentIdValue = String(payload["payment_id"])
  const record = toEventRecord({
    id: eventId,
    position: 0n,
    aggregate_type: "payment",
    aggregate_id: paymentIdValue,
    event_type: String(payload["type"]),
    event_version: 1,
    payload,
    headers: { correlation_id: `corr-${shortId()}` },
    created_at: new Date(),
    attempt_count: 0
  })
  return { eventId, payload, message: { topic, key: record.key, value: record.value, headers: record.headers } }
}

let clock_ms = Date.parse("2026-12-01T00:00:00.000Z")
const nextInstant = () => new Date((clock_ms += 1_000)).toISOString()

/** Events as the records a poll hands a partition handler: one partition of `topic`, offsets from `firstOffset`. */
export const recordsOf = (topic: string, events: ReadonlyArray<TestEvent>, firstOffset = 0n): Array<KafkaRecord> =>
  events.map((event, index) => ({
    topic,
    partition: 0,
    offset: firstOffset + BigInt(index),
    key: event.message.key,
    value: String(event.message.value),
    value_bytes: new TextEncoder().encode(String(event.message.value)),
    headers: event.message.headers ?? {},
    timestamp_ms: Date.now()
  }))

/** created → authorized → settled (fee 2 % rounded down) or → failed, as payloads. */
export const lifecycle = (merchant: string, currency: string, amount_minor: number, settles: boolean) => {
  const id = paymentId()
  const common = { payment_id: id, merchant_id: merchant, amount_minor, currency }
  const fee_minor = Math.floor(amount_minor / 50)
  const created = { type: "payment_created", ...common, version: 1, occurred_at: nextInstant(), status: "CREATED" }
  const authorized = { type: "payment_authorized", ...common, version: 2, occurred_at: nextInstant(), previous_status: "CREATED", status: "AUTHORIZED" }
  const last = settles
    ? { type: "payment_settled", ...common, version: 3, occurred_at: nextInstant(), previous_status: "AUTHORIZED", status: "SETTLED",
        fee_minor, net_minor: amount_minor - fee_minor }
    : { type: "payment_failed", ...common, version: 3, occurred_at: nextInstant(), previous_status: "AUTHORIZED", status: "FAILED",
        failure_code: "card_declined", failure_message: "The card was declined" }
  return [created, authorized, last] as const
}

export const send = (events: ReadonlyArray<TestEvent>) =>
  Effect.gen(function* () {
    const producer = yield* KafkaProducer
    // One send per event: keeps the order of `events` within each partition.
    for (const event of events) yield* producer.send([event.message])
  })

/** What the projection must hold for these settled payloads (computed here, independently). */
export const expectedProjection = (settled: ReadonlyArray<Record<string, unknown>>) => {
  const rows = new Map<string, { gross: bigint; fees: bigint; net: bigint; count: bigint }>()
  for (const payload of settled) {
    const key = `${String(payload["merchant_id"])}/${String(payload["currency"])}`
    const row = rows.get(key) ?? { gross: 0n, fees: 0n, net: 0n, count: 0n }
    row.gross += BigInt(Number(payload["amount_minor"]))
    row.fees += BigInt(Number(payload["fee_minor"]))
    row.net += BigInt(Number(payload["net_minor"]))
    row.count += 1n
    rows.set(key, row)
  }
  return [...rows.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, row]) => ({ key, ...row }))
}

export const projectionAsExpected = (rows: ReadonlyArray<ProjectionRow>) =>
  rows.map((row) => ({ key: `${row.merchant_id}/${row.currency}`, gross: row.settled_gross_minor, fees: row.fees_minor, net: row.net_minor, count: row.payment_count }))

/**
 * Runs the live generation's consumer in this test's process until its stored offsets reach the
 * topic's current end (bounded by `timeout_ms`).
 */
export const drainLive = (topics: { readonly prefix: string; readonly topic: string; readonly dlqTopic: string }, timeout_ms = 40_000) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const projection = makeSettlementProjection(sql)
    const live = yield* projection.live
    const kafka = yield* KafkaConsumer
    const target = yield* kafka.endOffsets(topics.topic)
    const handler = projection.handler(live.generation)
    yield* runConsumer({
      handler,
      topic: topics.topic,
      groupId: `${topics.prefix}${settlementConsumerName(live.generation)}`,
      dlqTopic: topics.dlqTopic,
      options: testOptions,
      keepGoing: behindTarget(sql, handler.name, topics.topic, target)
    }).pipe(Effect.timeoutOrElse({
      duration: Duration.millis(timeout_ms),
      orElse: () => Effect.die(new Error(`consumer did not reach ${target.join(",")} within ${timeout_ms} ms`))
    }))
    return live.generation
  })
