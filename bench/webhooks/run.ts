/**
 * Webhook benchmark (a script, not a test): `node bench/webhooks/run.ts` (or `pnpm bench:webhooks`).
 *
 * Needs Postgres on 127.0.0.1 (MIGRATION_DATABASE_URL, else DATABASE_URL: the owner of any database on the server; the bench creates its
 * own, migrated, and drops it). The receiver is a process of its own (bench/webhooks/receiver.ts)
 * answering 204; the sender is `WebhookSenderLoop` in this process.
 *
 *   A. capacity: BENCH_BACKLOG events (3 per payment, so per-payment order is in play) are queued
 *      for one endpoint while no sender runs; then the sender starts and drains them:
 *      deliveries/s.
 *   B. latency: with the sender running, BENCH_RATE events/s are queued for BENCH_DURATION_S
 *      seconds, each in its own transaction (as the consumer will): from the enqueue's COMMIT to
 *      the receiver's arrival, p50/p99/max. Settle → webhook adds the consumer's settle → record
 *      latency in front of this (issue 14's benchmark).
 *
 * Environment: BENCH_BACKLOG (3000), BENCH_RATE (50), BENCH_DURATION_S (10), WEBHOOK_CONCURRENCY
 * (16), WEBHOOK_POLL_INTERVAL_MS (100; the production default is 500, which bounds the latency
 * of an idle sender from above).
 */
import { Context, Effect, Layer, Logger, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { spawn } from "node:child_process"
import { randomBytes, randomUUID } from "node:crypto"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import { generateMerchantId, generatePaymentId, PaymentEvent } from "../../packages/domain/src/index.ts"
import { MigrationDatabaseUrl, MigrationsLive, postgresLayer } from "../../packages/infra/src/index.ts"
import {
  defaultSenderOptions,
  enqueueDeliveries,
  WebhookEndpoints,
  WebhookSender,
  WebhookSenderLoop,
  WebhookSecretBoxPlaintext
} from "../../packages/webhooks/src/index.ts"
import { stopChild } from "../support/process.ts"


const repositoryRoot = fileURLToPath(new URL("../../", import.meta.url))

const envInt = (name: string, fallback: number, min: number, max: number): number => {
  const raw = process.env[name]
  const value = raw === undefined ? fallback : Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer in ${min}..${max}, got ${raw}`)
  return value
}

const settings = {
  backlog: envInt("BENCH_BACKLOG", 3_000, 3, 300_000),
  rate: envInt("BENCH_RATE", 50, 1, 5_000),
  duration_s: envInt("BENCH_DURATION_S", 10, 1, 600),
  concurrency: envInt("WEBHOOK_CONCURRENCY", 16, 1, 256),
  pollInterval_ms: envInt("WEBHOOK_POLL_INTERVAL_MS", 100, 10, 60_000),
  // The bench's deliveries all go to one merchant's one endpoint (the receiver): the sender's
  // tenant caps (docs/webhooks.md § Tenant isolation) would make its capacity that of 4 slots.
  // The capacity of the sender itself is measured with the caps at its concurrency unless set.
  endpointInFlight_max: envInt("WEBHOOK_ENDPOINT_IN_FLIGHT_MAX", envInt("WEBHOOK_CONCURRENCY", 16, 1, 256), 1, 256),
  merchantInFlight_max: envInt("WEBHOOK_MERCHANT_IN_FLIGHT_MAX", envInt("WEBHOOK_CONCURRENCY", 16, 1, 256), 1, 256)
}

const withDatabase = (url: string, database: string) => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

const adminSql = <A, E>(serverUrl: string, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    return yield* f(yield* SqlClient.SqlClient)
  }).pipe(Effect.provide(postgresLayer({ url: Redacted.make(withDatabase(serverUrl, "postgres")), maxConnections: 1, applicationName: "pay-bench-admin" })))

const scratchDatabase = (serverUrl: string) => {
  const name = `pay_bench_webhooks_${randomBytes(4).toString("hex")}`
  return Effect.acquireRelease(
    adminSql(serverUrl, (sql) => sql.unsafe(`CREATE DATABASE ${name}`)).pipe(Effect.as(name)),
    () => adminSql(serverUrl, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).pipe(Effect.orDie)
  )
}

/** The receiver process; `arrivals` maps webhook-id → first arrival (ms). */
const startReceiver = Effect.acquireRelease(
  Effect.callback<{ readonly port: number; readonly arrivals: Map<string, number>; readonly child: ReturnType<typeof spawn> }, Error>((resume) => {
    const child = spawn(process.execPath, ["bench/webhooks/receiver.ts"], { cwd: repositoryRoot, stdio: ["ignore", "pipe", "inherit"] })
    const arrivals = new Map<string, number>()
    let buffered = ""
    child.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8")
      const lines = buffered.split("\n")
      buffered = lines.pop() ?? ""
      for (const line of lines) {
        const [first, second] = line.split(" ")
        if (first === "listening") resume(Effect.succeed({ port: Number(second), arrivals, child }))
        else if (first !== undefined && second !== undefined && !arrivals.has(first)) arrivals.set(first, Number(second))
      }
    })
    child.once("exit", (code) => resume(Effect.fail(new Error(`receiver exited (${code})`))))
  }),
  (receiver) => stopChild(receiver.child)
)

const decodeEvent = Schema.decodeUnknownSync(PaymentEvent)
const eventOf = (merchantId: string, paymentId: string, version: number) =>
  decodeEvent({
    type: ["payment_created", "payment_authorized", "payment_settled"][version - 1],
    payment_id: paymentId, merchant_id: merchantId, amount_minor: 1050, currency: "EUR", version,
    occurred_at: new Date().toISOString(), status: ["CREATED", "AUTHORIZED", "SETTLED"][version - 1],
    ...(version > 1 ? { previous_status: version === 2 ? "CREATED" : "AUTHORIZED" } : {})
  })

const percentile = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
const waitUntil = (condition: () => boolean, bound_ms: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + bound_ms
    while (!condition() && Date.now() < deadline) yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))
    return condition()
  })

const program = Effect.scoped(Effect.gen(function* () {
  // The schema owner (MIGRATION_DATABASE_URL, else DATABASE_URL, else the local stack's owner):
  // the bench creates, migrates and drops a database of its own, which the app role cannot.
  const serverUrl = Redacted.value(yield* MigrationDatabaseUrl)
  const loadBefore = loadavg()
  const database = yield* scratchDatabase(serverUrl)
  const receiver = yield* startReceiver
  const context = yield* Layer.build(WebhookEndpoints.layerWith({ allowLoopbackHttp: true }).pipe(
    // Secrets unsealed, as every round of this benchmark measured (sealing is per endpoint, not per send).
    Layer.provideMerge(WebhookSecretBoxPlaintext),
    Layer.provideMerge(MigrationsLive),
    Layer.provideMerge(postgresLayer({ url: Redacted.make(withDatabase(serverUrl, database)), maxConnections: settings.concurrency + 4, applicationName: "pay-bench-webhooks" }))
  ))
  const sql = Context.get(context, SqlClient.SqlClient)
  const merchantId = yield* generateMerchantId
  yield* sql`INSERT INTO merchants (id, name) VALUES (${merchantId}, 'bench')`
  const endpoints = Context.get(context, WebhookEndpoints)
  yield* endpoints.create(merchantId, { url: `http://127.0.0.1:${receiver.port}/hooks`, event_types: ["*"] })
  const enqueue = (paymentId: string, version: number) =>
    sql.withTransaction(enqueueDeliveries({ eventId: randomUUID(), event: eventOf(merchantId, paymentId, version) })).pipe(
      Effect.provideService(SqlClient.SqlClient, sql)
    )

  console.log(`webhooks bench: backlog ${settings.backlog}, stream ${settings.rate}/s for ${settings.duration_s}s, concurrency ${settings.concurrency} (in flight per endpoint ${settings.endpointInFlight_max}, per merchant ${settings.merchantInFlight_max}), poll ${settings.pollInterval_ms} ms`)
  // A. capacity
  for (let i = 0; i < settings.backlog / 3; i++) {
    const paymentId = yield* generatePaymentId
    for (let version = 1; version <= 3; version++) yield* enqueue(paymentId, version)
  }
  const queued = Math.floor(settings.backlog / 3) * 3
  const senderLayer = WebhookSenderLoop.pipe(Layer.provide(WebhookSender.layerWith({
    ...defaultSenderOptions, allowLoopbackHttp: true, concurrency: settings.concurrency, pollInterval_ms: settings.pollInterval_ms, batchSize: settings.concurrency,
    endpointInFlight_max: settings.endpointInFlight_max, merchantInFlight_max: settings.merchantInFlight_max
  })), Layer.provide(Layer.succeedContext(context)), Layer.provide(Logger.layer([])))
  const drainStarted_ms = Date.now()
  yield* Layer.build(senderLayer)
  const drained = yield* waitUntil(() => receiver.arrivals.size >= queued, 600_000)
  const drain_ms = Date.now() - drainStarted_ms
  const capacity = { deliveries: queued, drained, seconds: drain_ms / 1000, deliveries_per_s: Math.round(queued / (drain_ms / 1000)) }
  console.log(`A. capacity: ${queued} deliveries in ${capacity.seconds.toFixed(1)} s = ${capacity.deliveries_per_s}/s`)

  // B. latency under a steady stream
  const committed = new Map<string, number>()
  const interval_ms = 1000 / settings.rate
  const streamStart_ms = Date.now()
  for (let i = 0; i < settings.rate * settings.duration_s; i++) {
    const due_ms = streamStart_ms + i * interval_ms
    const wait_ms = due_ms - Date.now()
    if (wait_ms > 0) yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, wait_ms)))
    const eventId = randomUUID()
    const paymentId = yield* generatePaymentId
    yield* sql.withTransaction(enqueueDeliveries({ eventId, event: eventOf(merchantId, paymentId, 1) })).pipe(
      Effect.provideService(SqlClient.SqlClient, sql)
    )
    committed.set(eventId, Date.now())
  }
  yield* waitUntil(() => [...committed.keys()].every((id) => receiver.arrivals.has(id)), 60_000)
  const latencies = [...committed].flatMap(([id, at]) => {
    const arrived = receiver.arrivals.get(id)
    return arrived === undefined ? [] : [arrived - at]
  }).sort((a, b) => a - b)
  const latency = { events: committed.size, received: latencies.length, p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99), max_ms: latencies.at(-1) ?? Number.NaN }
  console.log(`B. commit → received: ${latency.received}/${latency.events}, p50 ${latency.p50_ms} ms, p99 ${latency.p99_ms} ms, max ${latency.max_ms} ms`)

  const result = { at: new Date().toISOString(), settings, cpus: cpus().length, loadavg_before: loadBefore, loadavg_after: loadavg(), capacity, latency }
  mkdirSync(`${repositoryRoot}bench/results`, { recursive: true })
  const file = `${repositoryRoot}bench/results/webhooks-${result.at.replaceAll(":", "-").replace(".", "-")}.json`
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`)
  console.log(`written ${file}`)
}))

program.pipe(Effect.provide(Logger.layer([Logger.consoleJson])), Effect.runPromise).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
