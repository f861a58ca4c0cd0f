/**
 * Phase D of the consumers benchmark: a sustained API stream against a real server process
 * (its publisher inside) and the consumers in a process of their own (BENCH_CONSUMERS=process,
 * the default, as production runs them: docs/performance.md) or inside the server
 * (BENCH_CONSUMERS=server); every other setting at the production default: publisher OUTBOX_POLL_MIN_MS/OUTBOX_POLL_INTERVAL_MS, consumer batch, poll
 * and fetch waits, Kafka commit interval), driven by bench/outbox/load.ts (create → authorize →
 * settle per payment).
 *
 * Settle → projection, per settled payment: from the instant the load client read the settle's
 * HTTP 200 (load.ts, SETTLE_TIMES=1, wall clock) to the start of the consumer transaction that
 * updated the projection for it (`processed_events.processed_at`, now() of that transaction; the
 * projection is visible at its COMMIT a few milliseconds later: a slice of the stream holds one
 * to a few records): a lower bound. An upper bound, `settle_to_projection_visible_*`: the first
 * 10 ms sample of the projection's settled count that includes the payment. Same machine, same clock. The earlier measure, from the settle's
 * `payments.updated_at` (inside the settle transaction, before its commit and its response) is
 * kept as `settle_commit_to_consumer_*`: it also counts the API's own commit and response.
 */
import { Duration, Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { execFile, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { decodeRows } from "../../packages/infra/src/index.ts"
import { freePort } from "../../packages/testkit/src/ThrowawayKafka.ts"
import { processTicks, userHz } from "../support/procCpu.ts"
import { stopChild } from "../support/process.ts"

const repositoryRoot = fileURLToPath(new URL("../../", import.meta.url))

const run = (args: ReadonlyArray<string>, env: Record<string, string>, timeout_ms: number) =>
  Effect.promise(() => new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [...args], { cwd: repositoryRoot, env: { ...process.env, ...env }, timeout: timeout_ms, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => (error === null ? resolve(stdout) : reject(new Error(`${args.join(" ")}: ${error.message}\n${stderr.slice(-2_000)}`))))
  }))

const startChild = (script: string, env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, [script], { cwd: repositoryRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
      let tail = ""
      const keep = (chunk: Buffer) => {
        tail = (tail + chunk.toString("utf8")).slice(-8_000)
      }
      child.stdout.on("data", keep)
      child.stderr.on("data", keep)
      return { child, tail: () => tail }
    }),
    ({ child }) => stopChild(child)
  )

const waitFor = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, timeout_ms: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout_ms
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out after ${timeout_ms} ms: ${what}`))
      yield* Effect.sleep(Duration.millis(200))
    }
  })

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? Number.NaN : (sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN)

const LoadOutput = Schema.Struct({
  requests: Schema.Number,
  failures: Schema.Number,
  paymentsCompleted: Schema.Number,
  firstFailure: Schema.NullOr(Schema.String),
  elapsed_s: Schema.Number,
  requests_per_s: Schema.Number,
  latency_ms: Schema.Struct({ p50: Schema.Number, p99: Schema.Number }),
  settled_at_ms: Schema.Record(Schema.String, Schema.Number)
})

export interface StreamSettings {
  readonly databaseUrl: string
  readonly brokers: string
  readonly prefix: string
  readonly redisUrl: string
  readonly redisPrefix: string
  readonly duration_s: number
  readonly concurrency: number
  /**
   * "process": the server with CONSUMERS_ENABLED=false and the consumers in a process of their
   * own (`node packages/consumers/src/main.ts`), as docs/performance.md recommends for
   * production; "server": the consumers inside the server (the default of a single process).
   */
  readonly consumers: "process" | "server"
}

export const apiStreamLatency = (settings: StreamSettings) =>
  Effect.scoped(Effect.gen(function* () {
    // Migrated already by the bench; `migrate` is a no-op then, and the CLI's commands do not migrate.
    yield* run(["packages/cli/src/main.ts", "migrate"], { DATABASE_URL: settings.databaseUrl }, 60_000)
    const created = yield* run(["packages/cli/src/main.ts", "merchants", "create", "Bench consumers"], { DATABASE_URL: settings.databaseUrl }, 60_000)
    const parsed: unknown = JSON.parse(created)
    const apiKey = typeof parsed === "object" && parsed !== null ? Reflect.get(parsed, "api_key") : undefined
    if (typeof apiKey !== "string") return yield* Effect.die(new Error(`no api_key in ${created}`))
    const port = yield* freePort
    const baseUrl = `http://127.0.0.1:${port}`
    const inServer = settings.consumers === "server"
    // A metrics port of its own: the default 9464 may belong to a server already running here.
    const metricsPort = yield* freePort
    const server = yield* startChild("packages/server/src/main.ts", {
      DATABASE_URL: settings.databaseUrl, PORT: String(port), METRICS_PORT: String(metricsPort), KAFKA_BROKERS: settings.brokers, KAFKA_TOPIC_PREFIX: settings.prefix,
      REDIS_URL: settings.redisUrl, REDIS_KEY_PREFIX: settings.redisPrefix, CONSUMERS_ENABLED: String(inServer)
    })
    yield* waitFor("server ready", Effect.promise(() =>
      fetch(`${baseUrl}/health/ready`, { signal: AbortSignal.timeout(2_000) }).then((response) => response.status === 200, () => false)), 90_000).pipe(
      Effect.catchDefect((defect) => Effect.die(new Error(`${String(defect)}\n${server.tail()}`)))
    )
    let consumersPid: number | undefined
    if (!inServer) {
      // BENCH_CONSUMERS_CPU_PROFILE (a folder): the consumers process writes a --cpu-prof there at exit.
      const profileDirectory = process.env["BENCH_CONSUMERS_CPU_PROFILE"]
      const consumers = yield* startChild("packages/consumers/src/main.ts", {
        DATABASE_URL: settings.databaseUrl, KAFKA_BROKERS: settings.brokers, KAFKA_TOPIC_PREFIX: settings.prefix,
        ...(profileDirectory === undefined ? {} : { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profileDirectory}` })
      })
      yield* waitFor("settlement consumer subscribed", Effect.sync(() =>
        consumers.tail().split("\n").some((line) => line.includes("consumer subscribed") && line.includes("settlement"))), 90_000).pipe(
        Effect.catchDefect((defect) => Effect.die(new Error(`${String(defect)}\n${consumers.tail()}`)))
      )
      consumersPid = consumers.child.pid
    }
    const sql = yield* SqlClient.SqlClient
    // The projection's settled count, sampled every 10 ms while the stream runs: when the k-th
    // settlement (by its consumer transaction's start) became visible to a reader, at the latest.
    const projectedCount = decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`
      SELECT coalesce(sum(payment_count), 0)::bigint AS n FROM settlement_projection
      WHERE generation = (SELECT generation FROM settlement_projection_live)`).pipe(Effect.orDie, Effect.map((rows) => Number(rows[0]?.n ?? 0n)))
    const countBefore = yield* projectedCount
    // The records the consumers handled, each by both consumers (settlement and webhooks): the
    // live settlement consumer's claims, before and after, over the consumers process's CPU.
    const handledRecords = decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`
      SELECT coalesce(sum(applied_count + duplicate_count + stale_count), 0)::bigint AS n FROM consumer_offsets
      WHERE consumer = (SELECT consumer FROM settlement_projection_live)`).pipe(Effect.orDie, Effect.map((rows) => Number(rows[0]?.n ?? 0n)))
    const handledBefore = yield* handledRecords
    const consumersTicksBefore = consumersPid === undefined ? 0 : processTicks([consumersPid])
    const samples: Array<{ readonly at_ms: number; readonly n: number }> = []
    const sampler = yield* Effect.forkScoped(Effect.gen(function* () {
      // Bounded: the stream's duration plus the drain's 120 s, at 10 ms.
      for (let index = 0; index < (settings.duration_s + 180) * 100; index++) {
        const n = (yield* projectedCount) - countBefore
        samples.push({ at_ms: performance.timeOrigin + performance.now(), n })
        yield* Effect.sleep(Duration.millis(10))
      }
    }))
    const output: unknown = JSON.parse(yield* run(["bench/outbox/load.ts"], {
      BASE_URL: baseUrl, API_KEY: apiKey, DURATION_S: String(settings.duration_s), CONCURRENCY: String(settings.concurrency), SETTLE_TIMES: "1"
    }, (settings.duration_s + 120) * 1_000))
    const { settled_at_ms: settledAt, ...load } = Schema.decodeUnknownSync(LoadOutput)(output)
    const count = (statement: Effect.Effect<ReadonlyArray<unknown>, unknown>) =>
      Effect.map(decodeRows(Schema.Struct({ n: Schema.BigInt }))(Effect.orDie(statement)), (rows) => rows[0]?.n ?? 0n)
    const settled = yield* count(sql`SELECT count(*)::bigint AS n FROM payments WHERE status = 'SETTLED'`)
    const projected = count(sql`
      SELECT count(*)::bigint AS n FROM processed_events pe JOIN payments p ON p.id = pe.payment_id AND p.version = pe.payment_version
      WHERE p.status = 'SETTLED' AND pe.consumer = (SELECT consumer FROM settlement_projection_live)`)
    yield* waitFor("every settlement projected", Effect.map(projected, (n) => n >= settled), 120_000)
    const consumersTicks = consumersPid === undefined ? 0 : processTicks([consumersPid]) - consumersTicksBefore
    const handled = (yield* handledRecords) - handledBefore
    const rows = yield* decodeRows(Schema.Struct({ payment_id: Schema.String, processed_ms: Schema.Number, settle_commit_ms: Schema.Number }))(sql`
      SELECT p.id AS payment_id, (extract(epoch FROM pe.processed_at) * 1000)::float8 AS processed_ms,
             (extract(epoch FROM (pe.processed_at - p.updated_at)) * 1000)::float8 AS settle_commit_ms
      FROM processed_events pe JOIN payments p ON p.id = pe.payment_id AND p.version = pe.payment_version
      WHERE p.status = 'SETTLED' AND pe.consumer = (SELECT consumer FROM settlement_projection_live)`).pipe(Effect.orDie)
    const fromResponse = rows.flatMap((row) => {
      const at_ms = settledAt[row.payment_id]
      return at_ms === undefined ? [] : [row.processed_ms - at_ms]
    }).sort((a, b) => a - b)
    const fromCommit = rows.map((row) => row.settle_commit_ms).sort((a, b) => a - b)
    yield* Effect.sleep(Duration.millis(50))
    yield* Fiber.interrupt(sampler)
    // The k-th settlement by consumer transaction start is taken as visible at the first sample
    // counting k: an upper bound (the sample's return; 10 ms apart), while `processed_at` is a
    // lower bound. Lanes of different partitions may commit in another order than they started.
    const byStart = [...rows].sort((a, b) => a.processed_ms - b.processed_ms)
    let sample = 0
    const visible = byStart.flatMap((row, index) => {
      while (sample < samples.length && (samples[sample]?.n ?? 0) < index + 1) sample++
      const at_ms = settledAt[row.payment_id]
      const seen = samples[sample]
      return at_ms === undefined || seen === undefined ? [] : [seen.at_ms - at_ms]
    }).sort((a, b) => a - b)
    const ms = (value: number | undefined) => Number((value ?? Number.NaN).toFixed(1))
    return {
      load,
      settled_payments: Number(settled),
      // Settles whose 200 the client read (a settle that timed out client-side has no instant).
      settled_with_response_instant: fromResponse.length,
      // HTTP 200 → the consumer transaction that updated the projection began (lower bound).
      settle_to_projection_ms_p50: ms(percentile(fromResponse, 0.5)),
      settle_to_projection_ms_p99: ms(percentile(fromResponse, 0.99)),
      settle_to_projection_ms_max: ms(fromResponse[fromResponse.length - 1]),
      // HTTP 200 → a reader saw the projection count it (upper bound: 10 ms sampling).
      settle_to_projection_visible_ms_p50: ms(percentile(visible, 0.5)),
      settle_to_projection_visible_ms_p99: ms(percentile(visible, 0.99)),
      settle_to_projection_visible_ms_max: ms(visible[visible.length - 1]),
      settle_commit_to_consumer_ms_p50: ms(percentile(fromCommit, 0.5)),
      settle_commit_to_consumer_ms_p99: ms(percentile(fromCommit, 0.99)),
      // The consumers process's CPU per record (both of its consumers, the stream's trickle: a
      // record or a few per slice), from /proc; null with the consumers inside the server.
      records_handled: handled,
      consumers_process_cpu_per_record_us: consumersPid === undefined || handled === 0 ? null : ms((consumersTicks / userHz) * 1e6 / handled)
    }
  }))
