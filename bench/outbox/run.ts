/**
 * Outbox benchmark (a script, not a test): `node bench/outbox/run.ts` (or `pnpm bench:outbox`).
 *
 * Needs the local stack: Postgres, Redis, Kafka on 127.0.0.1 (`scripts/kafka/kafka.sh start`),
 * and Debian's `kcat` for the read-back. Everything it creates (a database `pay_bench_<id>`,
 * topics `bench.<id>.*`, Redis keys `bench:<id>:*`) is removed at the end.
 *
 * Four phases, on the same broker, in one run. The publisher under measurement is
 * `OutboxPublisher.run` in this process (the server runs with OUTBOX_PUBLISHER_ENABLED=false):
 * the "own process" deployment of `packages/outbox/src/main.ts`, with its exact latencies.
 *   A. raw producer: our KafkaProducer alone sends payment-sized records in batches of
 *      `OUTBOX_BATCH_SIZE` back to back: the reference throughput.
 *   B. publisher capacity: a backlog of rows is inserted, then the publisher loop drains it;
 *      events/s compared with A. A and B alternate for `BENCH_ROUNDS` rounds (medians reported).
 *   C. sustained API stream: `BENCH_CONCURRENCY` clients (a separate process, bench/outbox/load.ts)
 *      take payments through POST /v1/payments → /authorize → /settle on a real server process
 *      for `BENCH_DURATION_S` seconds while the publisher runs: API commit rate vs publisher rate,
 *      backlog over time, commit-to-ack p50/p99.
 *   D. repository stream: the same three transitions through `PaymentRepository` from this
 *      process (no HTTP), `BENCH_CONCURRENCY` fibers for `BENCH_DURATION_S` seconds: a higher write
 *      rate, and a commit-to-ack whose start (the outbox insert) is one statement from the commit.
 * Finally the whole topic is read back with kcat and compared with the outbox one for one by id,
 * in per-payment order.
 *
 * commit-to-ack is measured from the outbox row's `created_at` (clock_timestamp() at the insert,
 * inside the writing transaction) to the broker's ack: it includes the rest of that transaction
 * (in the API: storing the idempotent response, then COMMIT), so it overstates, never understates.
 *
 * Environment: DATABASE_URL (any database on the server; the bench creates its own),
 * KAFKA_BROKERS, REDIS_URL, BENCH_DURATION_S (20), BENCH_CONCURRENCY (8), BENCH_ROUNDS (3),
 * BENCH_RAW_MESSAGES and BENCH_BACKLOG_ROWS per round (10000), OUTBOX_BATCH_SIZE (200),
 * OUTBOX_WORKERS (2).
 */
import { CreatePaymentInput } from "../../packages/domain/src/index.ts"
import { MerchantRepository } from "../../packages/merchants/src/index.ts"
import { PaymentRepository } from "../../packages/payments/src/index.ts"
import { Ledger } from "../../packages/ledger/src/index.ts"
import { FeeSchedules, SettlementPosting } from "../../packages/settlement/src/index.ts"
import { Duration, Effect, Fiber, Layer, Logger, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { execFile, spawn } from "node:child_process"
import { randomBytes, randomUUID } from "node:crypto"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import {
  defaultKafkaAdminTimeouts,
  defaultKafkaProducerLimits,
  KafkaAdmin,
  KafkaProducer,
  postgresLayer,
  decodeRows
} from "../../packages/infra/src/index.ts"
import { cleanupKafkaPrefix } from "../../packages/testkit/src/cleanupKafka.ts"
import { freePort } from "../../packages/testkit/src/ThrowawayKafka.ts"
import { stopChild } from "../support/process.ts"
import { cleanupRedisPrefix } from "../../packages/testkit/src/cleanupRedis.ts"
import {
  type BatchResult,
  defaultPublisherOptions,
  OutboxPublisher,
  OutboxStore,
  OutboxTopics,
  paymentsEventsTopic,
  toEventRecord
} from "../../packages/outbox/src/index.ts"

const repositoryRoot = fileURLToPath(new URL("../../", import.meta.url))

const envInt = (name: string, fallback: number, min: number, max: number): number => {
  const raw = process.env[name]
  const value = raw === undefined ? fallback : Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer in ${min}..${max}, got ${raw}`)
  return value
}

const settings = {
  duration_s: envInt("BENCH_DURATION_S", 20, 1, 600),
  concurrency: envInt("BENCH_CONCURRENCY", 8, 1, 256),
  rounds: envInt("BENCH_ROUNDS", 3, 1, 20),
  rawMessages: envInt("BENCH_RAW_MESSAGES", 10_000, 200, 1_000_000),
  backlogRows: envInt("BENCH_BACKLOG_ROWS", 10_000, 200, 1_000_000),
  batchSize: envInt("OUTBOX_BATCH_SIZE", defaultPublisherOptions.batchSize, 1, 1_000),
  workers: envInt("OUTBOX_WORKERS", defaultPublisherOptions.workers, 1, 8)
}
const baseDatabaseUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/payments"
const brokers = process.env["KAFKA_BROKERS"] ?? "127.0.0.1:9092"
const redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379/0"
const runId = randomBytes(4).toString("hex")
const databaseName = `pay_bench_${runId}`
const topicPrefix = `bench.${runId}.`
const redisPrefix = `bench:${runId}:`
const topic = paymentsEventsTopic(topicPrefix)

const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}
const adminUrl = withDatabase(baseDatabaseUrl, "postgres")
const benchUrl = withDatabase(baseDatabaseUrl, databaseName)

// --- small tools ----------------------------------------------------------------------------------

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? Number.NaN : (sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN)

const round = (value: number, digits = 1) => Number(value.toFixed(digits))

const log = (message: string) => Effect.sync(() => console.error(`[bench] ${message}`))


const runCommand = (command: string, args: ReadonlyArray<string>, env: Record<string, string>, timeout_ms: number) =>
  Effect.promise(
    () =>
      new Promise<string>((resolve, reject) => {
        execFile(command, [...args], { cwd: repositoryRoot, env: { ...process.env, ...env }, timeout: timeout_ms, maxBuffer: 512 * 1024 * 1024 }, (error, stdout, stderr) => {
          if (error === null) resolve(stdout)
          else reject(new Error(`${command} ${args.join(" ")} failed: ${error.message}\n${stderr.slice(-2_000)}`))
        })
      })
  )

/** A child process killed (SIGTERM, then SIGKILL after 10 s) when the scope closes. */
const startProcess = (name: string, args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, [...args], { cwd: repositoryRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
      let tail = ""
      const keep = (chunk: Buffer) => {
        tail = (tail + chunk.toString("utf8")).slice(-8_000)
      }
      child.stdout.on("data", keep)
      child.stderr.on("data", keep)
      return { name, child, tail: () => tail }
    }),
    ({ child }) =>
      stopChild(child)
  )

// --- setup ----------------------------------------------------------------------------------------

const adminDatabase = postgresLayer({ url: Redacted.make(adminUrl), maxConnections: 1, applicationName: "pay-bench-admin" })

const createBenchDatabase = Effect.acquireRelease(
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`CREATE DATABASE ${databaseName}`)
  }).pipe(Effect.provide(adminDatabase)),
  () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`)
    }).pipe(Effect.provide(adminDatabase), Effect.orDie)
)

/** The CLI migrates the database and creates a merchant with an API key (printed once, as JSON). */
const createMerchant = Effect.gen(function* () {
  yield* runCommand(process.execPath, ["packages/cli/src/main.ts", "migrate"], { DATABASE_URL: benchUrl }, 60_000)
  const stdout = yield* runCommand(process.execPath, ["packages/cli/src/main.ts", "merchants", "create", "Bench merchant"], { DATABASE_URL: benchUrl }, 60_000)
  const parsed: unknown = JSON.parse(stdout)
  const apiKey = typeof parsed === "object" && parsed !== null ? Reflect.get(parsed, "api_key") : undefined
  if (typeof apiKey !== "string") return yield* Effect.die(new Error(`no api_key in CLI output: ${stdout}`))
  return apiKey
})

const waitForReady = (baseUrl: string, server: { readonly tail: () => string }) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 90_000
    let last = "no answer"
    while (Date.now() < deadline) {
      last = yield* Effect.promise(() =>
        fetch(`${baseUrl}/health/ready`, { signal: AbortSignal.timeout(2_000) }).then(
          async (response) => `${response.status} ${await response.text()}`,
          (error: unknown) => `fetch failed: ${String(error)} ${String(error instanceof Error ? error.cause : "")}`
        )
      )
      if (last.startsWith("200 ")) return
      yield* Effect.sleep("250 millis")
    }
    return yield* Effect.die(new Error(`server not ready after 90 s (${last}):\n${server.tail()}`))
  })

// --- phase A: the raw producer --------------------------------------------------------------------

const samplePayload = (index: number) => ({
  type: "payment_created",
  payment_id: `pay_${index.toString(36).padStart(24, "0")}`,
  merchant_id: "mer_000000000000000000000000",
  amount_minor: 1999,
  currency: "EUR",
  version: 1,
  occurred_at: new Date().toISOString(),
  status: "CREATED"
})

const rawTopic = `${topicPrefix}raw`

const rawRecord = (index: number) =>
  toEventRecord({
    id: randomUUID(),
    position: BigInt(index),
    aggregate_type: "payment",
    aggregate_id: samplePayload(index).payment_id,
    event_type: "payment_created",
    event_version: 1,
    payload: samplePayload(index),
    headers: { correlation_id: randomUUID(), traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
    created_at: new Date(),
    attempt_count: 0
  })

const rawProducerSetup = Effect.gen(function* () {
  const producer = yield* KafkaProducer
  yield* (yield* KafkaAdmin).createTopic({ topic: rawTopic, partitions: 3 })
  // Warm-up (connections, metadata, producer id), not measured.
  yield* producer.send(Array.from({ length: settings.batchSize }, (_, index) => ({ topic: rawTopic, ...rawRecord(index) })))
})

/** Batches of `batchSize` payment-sized records, sent back to back: what Kafka alone allows. */
const rawProducerRound = Effect.gen(function* () {
  const producer = yield* KafkaProducer
  const started_ms = performance.now()
  let sent = 0
  while (sent < settings.rawMessages) {
    const count = Math.min(settings.batchSize, settings.rawMessages - sent)
    yield* producer.send(Array.from({ length: count }, (_, index) => ({ topic: rawTopic, ...rawRecord(sent + index) })))
    sent += count
  }
  const elapsed_s = (performance.now() - started_ms) / 1_000
  return { messages: sent, elapsed_s: round(elapsed_s, 2), messages_per_s: round(sent / elapsed_s, 0) }
})

// --- phase B: publisher capacity on a backlog -----------------------------------------------------

const unpublished = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* decodeRows(Schema.Struct({ count: Schema.BigInt }))(sql`SELECT count(*)::bigint AS count FROM outbox_events WHERE published_at IS NULL`)
  return Number(rows[0]?.count ?? 0n)
})

/** Waits (bounded) until no row is unpublished; returns how long it took. */
const drained = (timeout_ms: number) =>
  Effect.gen(function* () {
    const started_ms = performance.now()
    while ((yield* unpublished) > 0) {
      if (performance.now() - started_ms > timeout_ms) return yield* Effect.die(new Error(`outbox not drained within ${timeout_ms} ms`))
      yield* Effect.sleep("10 millis")
    }
    return performance.now() - started_ms
  })

const publisherCapacity = (publisher: OutboxPublisher["Service"]) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // Distinct aggregates, payment-sized payloads: the per-payment guard does not limit the batch.
    // No payment rows behind them: the check that a payment's event has its payment (0095) is off
    // in this benchmark's own database (the publisher's cost is what is measured).
    yield* sql`ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_payment_exists`
    yield* sql`
      INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers)
      SELECT gen_random_uuid(), 'payment', 'pay_backlog_' || n, 'payment_created', 1,
             jsonb_build_object('type', 'payment_created', 'payment_id', 'pay_backlog_' || n,
                                'merchant_id', 'mer_000000000000000000000000', 'amount_minor', 1999,
                                'currency', 'EUR', 'version', 1, 'occurred_at', now()::text, 'status', 'CREATED'),
             jsonb_build_object('correlation_id', gen_random_uuid()::text)
      FROM generate_series(1, ${settings.backlogRows}) AS n`
    const publishedBefore = (yield* publisher.status).publishedCount
    // The real loop (its workers, its wake-ups), timed until the backlog is gone. Progress is
    // read from the publisher's own counter: polling count(*) would compete for the database.
    const started_ms = performance.now()
    const loop = yield* Effect.forkChild(publisher.run)
    while ((yield* publisher.status).publishedCount - publishedBefore < settings.backlogRows) {
      if (performance.now() - started_ms > 300_000) return yield* Effect.die(new Error("backlog not drained within 300 s"))
      yield* Effect.sleep("5 millis")
    }
    const elapsed_ms = performance.now() - started_ms
    yield* Fiber.interrupt(loop)
    const events = (yield* publisher.status).publishedCount - publishedBefore
    return { events, elapsed_s: round(elapsed_ms / 1_000, 2), events_per_s: round(events / (elapsed_ms / 1_000), 0) }
  })

// --- phases C and D: sustained streams ----------------------------------------------------------

interface StreamResult {
  readonly load_s: number
  readonly events_committed: number
  readonly api_events_per_s: number
  readonly publisher_events_per_s: number
  readonly backlog_max: number
  readonly backlog_at_end_of_load: number
  readonly drain_after_load_ms: number
  readonly commit_to_ack_ms: { readonly samples: number; readonly p50: number; readonly p99: number; readonly max: number }
  readonly commit_to_ack_ms_by_event_type: Readonly<Record<string, { readonly samples: number; readonly p50: number; readonly p99: number; readonly max: number }>>
}

/**
 * Runs `load` while the publisher runs and a sampler records the backlog every 250 ms; then waits
 * for the outbox to drain. `latencies_ms` is filled by the publisher's onBatch observer.
 */
interface Latency {
  readonly latency_ms: number
  readonly eventType: string
}

const latencySummary = (latencies: ReadonlyArray<Latency>) => {
  const sorted = latencies.map((latency) => latency.latency_ms).sort((a, b) => a - b)
  return { samples: sorted.length, p50: round(percentile(sorted, 0.5)), p99: round(percentile(sorted, 0.99)), max: round(sorted.at(-1) ?? Number.NaN) }
}

const measureStream = <A, E, R>(publisher: OutboxPublisher["Service"], latencies_ms: Array<Latency>, load: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const publishedBefore = (yield* publisher.status).publishedCount
    const loop = yield* Effect.forkChild(publisher.run)
    yield* Effect.sleep("200 millis")
    latencies_ms.length = 0
    const backlogSamples: Array<number> = []
    const sampler = yield* Effect.forkChild(
      Effect.gen(function* () {
        while (true) {
          backlogSamples.push(yield* unpublished)
          yield* Effect.sleep("250 millis")
        }
      })
    )
    const count = decodeRows(Schema.Struct({ count: Schema.BigInt }))(sql`SELECT count(*)::bigint AS count FROM outbox_events`).pipe(Effect.map((rows) => Number(rows[0]?.count ?? 0n)))
    const eventsBefore = yield* count
    const started_ms = Date.now()
    const loadResult = yield* load
    const load_s = (Date.now() - started_ms) / 1_000
    const committed = (yield* count) - eventsBefore
    const publishedDuringLoad = (yield* publisher.status).publishedCount - publishedBefore
    const backlogAtEnd = yield* unpublished
    const drain_ms = yield* drained(120_000)
    yield* Fiber.interrupt(sampler)
    yield* Fiber.interrupt(loop)
    const byType = Object.fromEntries(
      [...new Set(latencies_ms.map((latency) => latency.eventType))].sort().map((eventType) => [
        eventType,
        latencySummary(latencies_ms.filter((latency) => latency.eventType === eventType))
      ])
    )
    const result: StreamResult = {
      load_s: round(load_s, 1),
      events_committed: committed,
      api_events_per_s: round(committed / load_s, 0),
      publisher_events_per_s: round(publishedDuringLoad / load_s, 0),
      backlog_max: Math.max(0, ...backlogSamples),
      backlog_at_end_of_load: backlogAtEnd,
      drain_after_load_ms: round(drain_ms, 0),
      commit_to_ack_ms: latencySummary(latencies_ms),
      commit_to_ack_ms_by_event_type: byType
    }
    return { result, load: loadResult }
  })

/** Phase D's writers: create → authorize → settle through the repository, closed loop. */
const repositoryStream = Effect.gen(function* () {
  const merchants = yield* MerchantRepository
  const payments = yield* PaymentRepository
  const posting = yield* SettlementPosting
  const sql = yield* SqlClient.SqlClient
  const merchant = yield* merchants.create("Bench repository merchant")
  const input = Schema.decodeUnknownSync(CreatePaymentInput)({ merchant_id: merchant.id, amount_minor: 1999, currency: "EUR", payment_method: "pm_card_visa" })
  const context = { actor: "bench:outbox", correlationId: "bench-outbox" }
  const deadline_ms = Date.now() + settings.duration_s * 1_000
  let completed = 0
  yield* Effect.forEach(
    Array.from({ length: settings.concurrency }, () => 0),
    () =>
      Effect.gen(function* () {
        while (Date.now() < deadline_ms) {
          const payment = yield* payments.create(input, context)
          yield* payments.apply(merchant.id, payment.id, { _tag: "authorize" }, context)
          // A settle commits with its posting (0011: SETTLED needs its settlement row) and its event
          // carries the split (0098), as the settle use case writes them.
          yield* sql.withTransaction(
            payments.apply(merchant.id, payment.id, { _tag: "settle" }, context, (settled, alongside) => posting.post(settled, undefined, alongside))
          )
          completed++
        }
      }),
    { concurrency: "unbounded", discard: true }
  )
  return { payments_completed: completed }
})

// --- the run --------------------------------------------------------------------------------------

const program = Effect.gen(function* () {
  yield* log(`run ${runId}: database ${databaseName}, topic ${topic}, ${settings.duration_s} s x ${settings.concurrency} clients, load average ${loadavg().map((load) => load.toFixed(2)).join(" ")}`)
  yield* createBenchDatabase
  const apiKey = yield* createMerchant

  const kafka = Layer.mergeAll(
    KafkaProducer.layerWith({ brokers, clientId: "pay-bench-publisher", ...defaultKafkaProducerLimits }),
    KafkaAdmin.layerWith({ brokers, clientId: "pay-bench-admin", ...defaultKafkaAdminTimeouts })
  )
  const database = postgresLayer({ url: Redacted.make(benchUrl), maxConnections: 16, applicationName: "pay-bench" })

  const repositories = Layer.mergeAll(
    PaymentRepository.layer,
    MerchantRepository.layer,
    SettlementPosting.layer.pipe(Layer.provide([Ledger.layer, FeeSchedules.layer]))
  )
  return yield* Effect.gen(function* () {
    yield* OutboxTopics.ensure(topicPrefix)

    const latencies_ms: Array<Latency> = []
    const publisher = yield* OutboxPublisher.make({
      ...defaultPublisherOptions,
      topic,
      batchSize: settings.batchSize,
      workers: settings.workers,
      onBatch: (result: BatchResult) =>
        Effect.sync(() => {
          result.commitToAck_ms.forEach((latency_ms, index) => latencies_ms.push({ latency_ms, eventType: result.eventTypes[index] ?? "?" }))
        })
    }).pipe(Effect.provide(OutboxStore.layer))

    // A and B alternate, round after round, so that both see the same background load (this
    // machine is shared); the medians are the result, each round's ratio is kept too.
    yield* rawProducerSetup
    const rounds: Array<{ readonly raw_messages_per_s: number; readonly publisher_events_per_s: number; readonly ratio: number }> = []
    for (let round_index = 0; round_index < settings.rounds; round_index++) {
      yield* log(`round ${round_index + 1}/${settings.rounds}: phase A (raw producer), then phase B (publisher on a backlog)`)
      const raw = yield* rawProducerRound
      const capacity = yield* publisherCapacity(publisher)
      rounds.push({ raw_messages_per_s: raw.messages_per_s, publisher_events_per_s: capacity.events_per_s, ratio: round(capacity.events_per_s / raw.messages_per_s, 2) })
      yield* log(`raw producer ${JSON.stringify(raw)}; publisher ${JSON.stringify(capacity)}`)
    }
    const median = (values: ReadonlyArray<number>) => percentile([...values].sort((a, b) => a - b), 0.5)
    const raw = { messages_per_s_median: median(rounds.map((r) => r.raw_messages_per_s)) }
    const capacity = { events_per_s_median: median(rounds.map((r) => r.publisher_events_per_s)), ratio_median: median(rounds.map((r) => r.ratio)), rounds }

    yield* log("phase C: sustained stream through the API")
    const port = yield* freePort
    const baseUrl = `http://127.0.0.1:${port}`
    const server = yield* startProcess("server", ["packages/server/src/main.ts"], {
      DATABASE_URL: benchUrl,
      PORT: String(port),
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC_PREFIX: topicPrefix,
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: redisPrefix,
      // The publisher under test runs here, in its own process (as `packages/outbox/src/main.ts`
      // would), so that its exact per-event latencies can be collected.
      OUTBOX_PUBLISHER_ENABLED: "false"
    })
    yield* waitForReady(baseUrl, server)
    const api = yield* measureStream(
      publisher,
      latencies_ms,
      runCommand(process.execPath, ["bench/outbox/load.ts"], {
        BASE_URL: baseUrl,
        API_KEY: apiKey,
        DURATION_S: String(settings.duration_s),
        CONCURRENCY: String(settings.concurrency)
      }, (settings.duration_s + 120) * 1_000).pipe(Effect.map((stdout): unknown => JSON.parse(stdout)))
    )
    yield* log(`API stream: ${JSON.stringify(api)}`)

    yield* log("phase D: sustained stream through PaymentRepository (no HTTP)")
    const repository = yield* measureStream(publisher, latencies_ms, repositoryStream)
    yield* log(`repository stream: ${JSON.stringify(repository)}`)

    const sql = yield* SqlClient.SqlClient
    // Acceptance: kcat reads the topic back; deduplicated by id it matches the outbox one for
    // one, and each payment's events come in commit order (first occurrences).
    const kcatOutput = yield* runCommand("kcat", ["-b", brokers, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k %h\\n"], {}, 120_000)
    const kcatRecords = kcatOutput.split("\n").filter((line) => line.length > 0).map((line) => {
      const [key = "", headerText = ""] = line.split(" ")
      const headers = new Map(headerText.split(",").map((pair) => {
        const at = pair.indexOf("=")
        return [pair.slice(0, at), pair.slice(at + 1)] as const
      }))
      return { key, id: headers.get("ce_id") ?? "", type: headers.get("ce_type") ?? "" }
    })
    const rows = yield* decodeRows(Schema.Struct({ id: Schema.String, aggregate_id: Schema.String, event_type: Schema.String }))(sql`
      SELECT id, aggregate_id, event_type FROM outbox_events ORDER BY position`)
    const uniqueIds = new Set(kcatRecords.map((record) => record.id))
    const outboxIds = new Set(rows.map((row) => row.id))
    const missing = [...outboxIds].filter((id) => !uniqueIds.has(id)).length
    const unknown = [...uniqueIds].filter((id) => !outboxIds.has(id)).length
    const expectedOrder = new Map<string, Array<string>>()
    for (const row of rows) expectedOrder.set(row.aggregate_id, [...(expectedOrder.get(row.aggregate_id) ?? []), row.id])
    const seenOrder = new Map<string, Array<string>>()
    const seen = new Set<string>()
    for (const record of kcatRecords) {
      if (seen.has(record.id)) continue
      seen.add(record.id)
      seenOrder.set(record.key, [...(seenOrder.get(record.key) ?? []), record.id])
    }
    let outOfOrder = 0
    for (const [aggregate, ids] of expectedOrder) if ((seenOrder.get(aggregate) ?? []).join() !== ids.join()) outOfOrder++

    const summary = {
      run_id: runId,
      // Other work on the machine skews every figure: the load average is part of the result.
      machine: { cpus: cpus().length, node: process.version, load_average_at_end: loadavg().map((load) => round(load, 2)) },
      settings,
      raw_producer: raw,
      publisher_capacity: capacity,
      api_stream: { ...api.result, http: api.load },
      repository_stream: { ...repository.result, ...repository.load },
      kcat_read_back: {
        records: kcatRecords.length,
        distinct_ids: uniqueIds.size,
        outbox_rows: outboxIds.size,
        missing,
        unknown,
        duplicates: kcatRecords.length - uniqueIds.size,
        aggregates_out_of_order: outOfOrder
      },
      targets: {
        publisher_keeps_up_with_api: api.result.backlog_at_end_of_load <= settings.batchSize && api.result.drain_after_load_ms <= 2_000,
        publisher_keeps_up_with_repository: repository.result.backlog_at_end_of_load <= settings.batchSize * settings.workers && repository.result.drain_after_load_ms <= 2_000,
        p99_commit_to_ack_le_100_ms_api: api.result.commit_to_ack_ms.p99 <= 100,
        p99_commit_to_ack_le_100_ms_repository: repository.result.commit_to_ack_ms.p99 <= 100,
        publisher_at_least_half_raw: capacity.ratio_median >= 0.5,
        kcat_matches_outbox: missing === 0 && unknown === 0 && outOfOrder === 0
      }
    }
    return summary
  }).pipe(Effect.provide(repositories.pipe(Layer.provideMerge(Layer.mergeAll(database, kafka)))))
})

const cleanup = Effect.all(
  [
    cleanupKafkaPrefix(brokers, topicPrefix).pipe(Effect.catchCause((cause) => log(`kafka cleanup failed: ${String(cause)}`))),
    cleanupRedisPrefix(redisUrl, redisPrefix).pipe(Effect.catchCause((cause) => log(`redis cleanup failed: ${String(cause)}`)))
  ],
  { discard: true }
)

const main = Effect.scoped(program).pipe(
  // Logs go to stderr: stdout carries only the JSON summary.
  Effect.provide(Logger.layer([Logger.withConsoleError(Logger.formatLogFmt)])),
  Effect.tap((summary) =>
    Effect.sync(() => {
      const text = JSON.stringify(summary, null, 2)
      console.log(text)
      // Kept beside the other benchmarks' results (bench/results/<name>-<time>.json).
      const directory = fileURLToPath(new URL("../results/", import.meta.url))
      mkdirSync(directory, { recursive: true })
      const file = `${directory}outbox-${new Date().toISOString().replaceAll(":", "-").replace(".", "-")}.json`
      writeFileSync(file, text + "\n")
      console.error(`[bench] summary written to ${file}`)
    })
  ),
  Effect.ensuring(cleanup),
  Effect.timeout(Duration.minutes(15))
)

Effect.runPromise(main).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error("[bench] failed:", error)
    process.exit(1)
  }
)
