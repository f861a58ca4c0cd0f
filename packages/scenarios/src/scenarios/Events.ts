import { domainEventTypes } from "@pay/domain/RefundEvents"
import { decodeRows, defaultKafkaConsumerOptions, defaultKafkaProducerLimits, KafkaConsumer, KafkaProducer } from "@pay/infra"
import { Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { ApiProcess } from "../ApiProcess.ts"
import { runCli } from "../Cli.ts"
import { countUntil, type ScenarioMerchant } from "../Evidence.ts"
import { authorizedPayment, checkBooks, checkMovedOnce, retryUntilDecided, tally } from "../Flows.ts"
import { field } from "../Http.ts"
import { readTopic, scanTopic } from "../Kafka.ts"
import { newKey, type Scenario, type ScenarioContext } from "../Scenario.ts"

/** Events after the commit: duplicates, poison, replay, several instances. */

const settledPayments = (ctx: ScenarioContext, api: ApiProcess, m: ScenarioMerchant, amounts: ReadonlyArray<number>) =>
  Effect.forEach(amounts, (amount) =>
    Effect.gen(function* () {
      const id = yield* authorizedPayment(ctx, api, m, amount)
      const settled = yield* ctx.post(api, m, `/v1/payments/${id}/settle`, newKey("settle"))
      yield* ctx.say.expect(settled.status === 200, `${id} settled`, settled.text)
      return id
    }))

/** Polls (bounded) until the live settlement consumer has processed every payment_settled outbox row. */
const awaitConsumed = (ctx: ScenarioContext, timeout_ms: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const left = yield* countUntil(sql`
      SELECT count(*) AS n FROM outbox_events e
      WHERE e.event_type = 'payment_settled'
        AND NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = e.id AND p.consumer = (SELECT consumer FROM settlement_projection_live))`,
      (lag) => lag === 0, { timeout_ms, step_ms: 500 })
    yield* ctx.say.expect(left === 0, "the settlement consumer processed every payment_settled event", `${left} not processed after ${timeout_ms} ms`)
  })

/** `pnpm cli reconcile`: projection (events) vs ledger vs payments; exit 0 when they agree. */
const reconcile = (ctx: ScenarioContext) =>
  Effect.gen(function* () {
    const result = yield* runCli(ctx.stack, ["reconcile"])
    yield* ctx.say.evidence(`pnpm cli reconcile (exit ${result.exitCode})`, result.output.split("\n").slice(-6).join(" | "))
    yield* ctx.say.expect(result.exitCode === 0, "the projection built from Kafka equals the ledger and the payments table", result.output.slice(-800))
  })

/** consumer_offsets' sums (numeric) `::text` for the evidence; the counts compared are int4 (numbers). */
const TallyRow = Schema.Struct({
  consumer: Schema.String,
  applied: Schema.String,
  duplicates: Schema.String,
  parked: Schema.String,
  claimed: Schema.Number,
  processed: Schema.Number,
  outbox: Schema.Number
})

/** Per consumer (as consumer_offsets names them): processed_events rows, claims counted new (applied + stale), and the outbox's payment events. */
const consumerTallies = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return yield* decodeRows(TallyRow)(sql`
    SELECT c.consumer, c.applied::text AS applied, c.duplicates::text AS duplicates, c.parked::text AS parked, c.claimed::int AS claimed,
      (SELECT count(*)::int FROM processed_events p WHERE p.consumer = c.consumer) AS processed,
      (SELECT count(*)::int FROM outbox_events o WHERE o.event_type IN ${sql.in([...domainEventTypes])}) AS outbox
    FROM (SELECT consumer, sum(applied_count) AS applied, sum(duplicate_count) AS duplicates, sum(parked_count) AS parked,
            sum(applied_count + stale_count) AS claimed
          FROM consumer_offsets GROUP BY consumer) c ORDER BY c.consumer`)
})

const EventCountRow = Schema.Struct({ event_type: Schema.String, outbox: Schema.Number, counted: Schema.Number })

/** The live settlement generation's count per event type against the outbox's (an event applied twice, or lost, changes one). */
const projectionCounts = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return yield* decodeRows(EventCountRow)(sql`
    WITH o AS (SELECT event_type, count(*)::int AS n FROM outbox_events GROUP BY event_type),
         c AS (SELECT event_type, sum(event_count)::int AS n FROM settlement_projection_event_counts
               WHERE generation = (SELECT generation FROM settlement_projection_live) GROUP BY event_type)
    SELECT t.event_type, coalesce(o.n, 0) AS outbox, coalesce(c.n, 0) AS counted
    FROM unnest(${[...domainEventTypes]}::text[]) AS t(event_type) LEFT JOIN o USING (event_type) LEFT JOIN c USING (event_type)
    WHERE coalesce(o.n, 0) <> coalesce(c.n, 0)`)
})

/**
 * Each consumer applied each event once. processed_events' primary key is (consumer, event_id), so
 * looking for a pair twice could never find one. What can fail instead: per consumer, its
 * processed_events rows are as many as the outbox's payment events (none lost), and its claims
 * counted as new (applied + stale in consumer_offsets, counted in the record's own transaction)
 * are as many as those rows (a claim counted twice, or an effect without its row, breaks it); and
 * the settlement projection counted each event type exactly as often as the outbox holds it.
 * Polled (bounded) first: the webhooks consumer may still be catching up.
 */
const exactlyOnce = (ctx: ScenarioContext) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 30_000
    const settled = (rows: ReadonlyArray<{ processed: number; outbox: number }>) => rows.length > 0 && rows.every((r) => r.processed >= r.outbox)
    let rows = yield* consumerTallies
    while (!settled(rows) && Date.now() < deadline) {
      yield* Effect.sleep(500)
      rows = yield* consumerTallies
    }
    yield* ctx.say.evidence("consumer_offsets and processed_events (per consumer)", rows)
    for (const r of rows) {
      yield* ctx.say.expect(r.processed === r.outbox && r.claimed === r.processed,
        `consumer ${r.consumer}: one processed_events row per outbox event, each claimed once (rows = outbox events = applied + stale)`,
        `rows ${r.processed}, outbox events ${r.outbox}, applied + stale ${r.claimed}`)
    }
    const projection = yield* projectionCounts
    yield* ctx.say.expect(projection.length === 0, "the settlement projection counted each event type as often as the outbox holds it (none applied twice)", projection)
    return rows
  })

const IdRow = Schema.Struct({ id: Schema.String })

export const duplicateEvents: Scenario = {
  name: "duplicate-events",
  summary: "a standalone publisher is killed between Kafka's ack and marking its rows; the next one re-sends them: duplicates on Kafka, each applied once",
  fast: false,
  run: (ctx) =>
    Effect.gen(function* () {
      yield* ctx.say.step("API with its in-process publisher off; three payments settled before any publisher runs (9 outbox rows waiting)")
      const api = yield* ctx.startApi("api-1", { OUTBOX_PUBLISHER_ENABLED: "false" })
      const m = yield* ctx.merchant("duplicates merchant")
      const ids = yield* settledPayments(ctx, api, m, [1_000, 2_000, 3_000])
      yield* ctx.say.step("a standalone publisher armed to SIGKILL itself after its first ack (OUTBOX_FAULT_CRASH_AFTER_ACK=1): its first batch holds every waiting row")
      const publisher = yield* ctx.startPublisher("publisher-1", { OUTBOX_FAULT_CRASH_AFTER_ACK: "1", OUTBOX_BATCH_SIZE: "100" })
      const crashed = yield* publisher.awaitExit(60_000)
      yield* ctx.say.expect(crashed, `the publisher (pid ${publisher.pid()}) killed itself after the broker acknowledged its batch`)
      const sql = yield* SqlClient.SqlClient
      const unmarked = yield* decodeRows(IdRow)(sql`SELECT id::text AS id FROM outbox_events WHERE published_at IS NULL`)
      // The topic read to its end offsets: which of the unmarked rows the broker already holds.
      const onKafka = new Set<string>()
      yield* scanTopic(ctx.stack.kafkaBrokers, ctx.stack.eventsTopic, 30_000, (record) => onKafka.add(record.eventId))
      const unmarkedOnKafka = unmarked.filter((row) => onKafka.has(row.id)).length
      yield* ctx.say.evidence("outbox rows not marked published", `${unmarked.length}; of them already on Kafka (acknowledged before the crash): ${unmarkedOnKafka}`)
      yield* ctx.say.expect(unmarkedOnKafka >= 1, "the crash left rows on Kafka that the outbox does not mark published", unmarkedOnKafka)
      yield* ctx.say.step("start the publisher again without the fault: it re-sends what it never marked")
      yield* publisher.restart({ OUTBOX_FAULT_CRASH_AFTER_ACK: "false" })
      const rows = yield* decodeRows(IdRow)(sql`SELECT id::text AS id FROM outbox_events ORDER BY position`)
      const deadline = Date.now() + 60_000
      let records = yield* readTopic(ctx.stack.kafkaBrokers, ctx.stack.eventsTopic, rows.length + 1, 5_000)
      while (records.length <= rows.length && Date.now() < deadline) records = yield* readTopic(ctx.stack.kafkaBrokers, ctx.stack.eventsTopic, rows.length + 1, 5_000)
      const copies = tally(records.map((r) => r.eventId)).split(", ").filter((entry) => !entry.startsWith("1 ×")).length
      yield* ctx.say.evidence("Kafka", `${records.length} records for ${rows.length} outbox rows; ${copies} event ids appear more than once`)
      yield* ctx.say.expect(records.length > rows.length, "the crash left duplicates on Kafka (at-least-once)", records.length)
      yield* awaitConsumed(ctx, 60_000)
      yield* exactlyOnce(ctx)
      for (const id of ids) yield* checkMovedOnce(ctx, id)
      yield* reconcile(ctx)
      yield* checkBooks(ctx)
    })
}

const poisonValue = "this is not an event {"

/**
 * The parked record on `<prefix>payments.events.dlq` (docs/consumers.md, poison records): its
 * original bytes, with the consumer's error and its source (topic/partition/offset) as headers.
 */
const onTheDlqTopic = (ctx: ScenarioContext, sources: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const reader = yield* KafkaConsumer.make({ brokers: ctx.stack.kafkaBrokers, clientId: "pay-scenario-dlq-reader", ...defaultKafkaConsumerOptions })
    const records = yield* reader.readFromBeginning({ topic: `${ctx.stack.eventsTopic}.dlq`, count: 1, timeout_ms: 15_000 })
    yield* ctx.say.evidence("payments.events.dlq", records.map((record) => ({
      value: record.value, dlq_consumer: record.headers["dlq_consumer"], dlq_source: record.headers["dlq_source"], dlq_error: (record.headers["dlq_error"] ?? "").slice(0, 120)
    })))
    const parked = records.filter((record) => sources.includes(record.headers["dlq_source"] ?? ""))
    yield* ctx.say.expect(parked.length >= 1 && parked.every((record) => record.value === poisonValue && (record.headers["dlq_error"] ?? "") !== ""),
      "the DLQ topic holds the poison record's original bytes, its source offset and the consumer's error", records.length)
  }).pipe(Effect.scoped)

const ParkedRow = Schema.Struct({ consumer: Schema.String, offset: Schema.String, error: Schema.String, attempt_count: Schema.Number })

export const poisonEvent: Scenario = {
  name: "poison-event",
  summary: "a record that is not an event is produced onto the payments topic: parked in the dead-letter table, the partition goes on",
  fast: false,
  run: (ctx) =>
    Effect.gen(function* () {
      const api = yield* ctx.startApi("api-1", { CONSUMER_ATTEMPTS_MAX: "2", CONSUMER_BACKOFF_BASE_MS: "50" })
      const m = yield* ctx.merchant("poison merchant")
      const first = yield* settledPayments(ctx, api, m, [1_500])
      yield* awaitConsumed(ctx, 60_000)
      yield* ctx.say.step("produce a poison record (not JSON, no CloudEvents headers) on the payments topic, keyed like the first payment")
      const produced = yield* Effect.gen(function* () {
        const producer = yield* KafkaProducer.make({ brokers: ctx.stack.kafkaBrokers, clientId: "pay-scenario-poison", ...defaultKafkaProducerLimits })
        return yield* producer.send([{ topic: ctx.stack.eventsTopic, key: first[0] ?? "x", value: poisonValue, headers: { ce_type: "payment_settled" } }])
      }).pipe(Effect.scoped)
      yield* ctx.say.evidence("produced", produced.map((p) => `${p.partition}@${p.offset}`))
      yield* ctx.say.step("settle more payments after it: they must still be applied")
      const later = yield* settledPayments(ctx, api, m, [2_500, 3_500])
      yield* awaitConsumed(ctx, 60_000)
      const sql = yield* SqlClient.SqlClient
      const parked = yield* decodeRows(ParkedRow)(sql`
        SELECT consumer, "offset"::text AS offset, left(error, 200) AS error, attempt_count FROM dead_letter_events ORDER BY id`)
      yield* ctx.say.evidence("dead_letter_events", parked)
      yield* ctx.say.expect(parked.length >= 1, "the poison record is parked with its error")
      const dlq = yield* runCli(ctx.stack, ["dlq", "list"])
      yield* ctx.say.evidence("pnpm cli dlq list", dlq.output.split("\n").slice(0, 4).join(" | "))
      yield* onTheDlqTopic(ctx, produced.map((p) => `${ctx.stack.eventsTopic}/${p.partition}/${p.offset}`))
      yield* exactlyOnce(ctx)
      for (const id of [...first, ...later]) yield* checkMovedOnce(ctx, id)
      yield* reconcile(ctx)
      yield* checkBooks(ctx)
    })
}

/** A generation's rows; the money columns `::text` (exact), compared as JSON before and after the replay. */
const ProjectionRow = Schema.Struct({
  merchant_id: Schema.String,
  currency: Schema.String,
  settled_gross_minor: Schema.String,
  fees_minor: Schema.String,
  net_minor: Schema.String,
  payment_count: Schema.String
})
const GenerationRow = Schema.Struct({ generation: Schema.Number })

export const replayFromOffsetZero: Scenario = {
  name: "replay-from-offset-0",
  summary: "rebuild the settlement projection from offset 0 (pnpm cli replay settlement): the new generation equals the live one and the ledger",
  fast: false,
  run: (ctx) =>
    Effect.gen(function* () {
      const api = yield* ctx.startApi("api-1")
      const m = yield* ctx.merchant("replay merchant")
      yield* settledPayments(ctx, api, m, [1_000, 2_345, 9_999])
      yield* awaitConsumed(ctx, 60_000)
      const sql = yield* SqlClient.SqlClient
      const projection = (generation: number) => decodeRows(ProjectionRow)(sql`
        SELECT merchant_id, currency, settled_gross_minor::text AS settled_gross_minor, fees_minor::text AS fees_minor, net_minor::text AS net_minor, payment_count::text AS payment_count
        FROM settlement_projection WHERE generation = ${generation} ORDER BY merchant_id, currency`)
      const live = yield* decodeRows(GenerationRow)(sql`SELECT generation FROM settlement_projection_live`)
      const before = live[0]?.generation ?? 1
      const old = yield* projection(before)
      yield* ctx.say.evidence(`generation ${before} (live)`, old)
      yield* ctx.say.step("pnpm cli replay settlement: a fresh consumer reads the topic from offset 0 into the next generation")
      const replay = yield* runCli(ctx.stack, ["replay", "settlement"])
      yield* ctx.say.evidence(`replay (exit ${replay.exitCode})`, replay.output.split("\n").slice(-4).join(" | "))
      yield* ctx.say.expect(replay.exitCode === 0, "the replay finished", replay.output.slice(-600))
      const after = (yield* decodeRows(GenerationRow)(sql`SELECT generation FROM settlement_projection_live`))[0]?.generation ?? 0
      const rebuilt = yield* projection(after)
      yield* ctx.say.evidence(`generation ${after} (rebuilt, now live)`, rebuilt)
      yield* ctx.say.expect(after === before + 1 && JSON.stringify(rebuilt) === JSON.stringify(old), "the rebuilt projection equals the one it replaces")
      yield* reconcile(ctx)
      yield* checkBooks(ctx)
    })
}

export const twoInstances: Scenario = {
  name: "two-instances",
  summary: "two API instances (each with its publisher and consumers) share one database; settles race across both at the bank; one is killed -9 mid-stream",
  fast: false,
  run: (ctx) =>
    Effect.gen(function* () {
      // The bank takes 300 ms, so both instances' settles of a payment are at the bank together.
      const a = yield* ctx.startApi("api-a", { ACQUIRER_LATENCY_MS: "300" })
      const b = yield* ctx.startApi("api-b", { ACQUIRER_LATENCY_MS: "300" })
      const m = yield* ctx.merchant("two instances merchant")
      const ids = yield* Effect.forEach([1, 2, 3, 4, 5, 6], (i) => authorizedPayment(ctx, i % 2 === 0 ? a : b, m, 700 * i))
      yield* ctx.say.step("settle each payment through BOTH instances at once (different keys); once the bank has both instances' captures of every payment, kill -9 api-b")
      const keys = ids.map(() => [newKey("settle-a"), newKey("settle-b")] as const)
      const race = yield* Effect.forEach(ids, (id, i) =>
        Effect.all([
          Effect.result(ctx.post(a, m, `/v1/payments/${id}/settle`, keys[i]?.[0] ?? "")),
          Effect.result(ctx.post(b, m, `/v1/payments/${id}/settle`, keys[i]?.[1] ?? ""))
        ], { concurrency: 2 }), { concurrency: "unbounded" }).pipe(Effect.forkScoped)
      // A barrier on the bank's records: both instances' capture requests arrived (one reference
      // per payment, so one row each with request_count 2).
      const asked = yield* captureRequestsAtTheBank(ids, 2 * ids.length, 15_000)
      yield* ctx.say.expect(asked >= 2 * ids.length, "the bank received both instances' capture of every payment before the kill", asked)
      yield* b.kill9
      yield* ctx.say.note("api-b killed with SIGKILL")
      const answers = yield* Fiber.join(race)
      yield* ctx.say.evidence("answers", tally(answers.flat().map((r) => (r._tag === "Success" ? `${r.success.status} ${field(r.success, "code") || field(r.success, "status")}` : "no answer (api-b died)"))))
      yield* ctx.say.step("the surviving instance finishes: each client retries through api-a with its own key")
      for (const [i, id] of ids.entries()) {
        const finals: Array<string> = []
        for (const key of keys[i] ?? []) {
          const { answer } = yield* retryUntilDecided(ctx, a, m, `/v1/payments/${id}/settle`, key)
          finals.push(answer.status === 200 ? "200" : `${answer.status} ${field(answer, "code")}`)
        }
        // One capture reference for both keys: one of them settled, the other found it settled.
        yield* ctx.say.expect([...finals].sort().join(" + ") === "200 + 409 invalid_transition", `${id}: one key settled it, the other was refused (invalid_transition)`, finals)
        const facts = yield* checkMovedOnce(ctx, id)
        yield* ctx.say.expect(facts?.status === "SETTLED" && facts.captures_performed === 1 && facts.capture_requests >= 2, `${id} SETTLED, asked by both instances, captured once`, facts)
      }
      yield* awaitConsumed(ctx, 90_000)
      yield* exactlyOnce(ctx)
      yield* reconcile(ctx)
      yield* checkBooks(ctx)
    })
}

/** Waits (bounded, 50 ms steps) until the bank counted `target` capture requests for these payments; the count. */
const captureRequestsAtTheBank = (ids: ReadonlyArray<string>, target: number, timeout_ms: number) =>
  Effect.gen(function* () {
    const db = yield* SqlClient.SqlClient
    return yield* countUntil(db`SELECT coalesce(sum(request_count), 0) AS n FROM acquirer_sim.operations WHERE operation = 'capture' AND payment_id IN ${db.in(ids)}`,
      (asked) => asked >= target, { timeout_ms, step_ms: 50 })
  })

export const eventScenarios = [duplicateEvents, poisonEvent, replayFromOffsetZero, twoInstances]
