/**
 * Phase D of the consumers benchmark: a sustained API stream against a real server process that
 * runs its own publisher and consumers (CONSUMERS_ENABLED=true), driven by bench/outbox/load.ts
 * (create → authorize → settle per payment). Latency "settle → projection" per settled payment is
 * read from the database: the consumer transaction's start (`processed_events.processed_at`, the
 * same transaction that updated the projection) minus the settle's instant (`payments.updated_at`,
 * taken inside the settle transaction before its commit and its 200). Same machine, same clock;
 * it includes the settle's own commit and response, so it overstates the HTTP 200 → projection time.
 */
import { Duration, Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { execFile, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { decodeRows } from "../../packages/infra/src/index.ts"
import { freePort } from "../../packages/testkit/src/ThrowawayKafka.ts"
import { stopChild } from "../support/process.ts"

const repositoryRoot = fileURLToPath(new URL("../../", import.meta.url))

const run = (args: ReadonlyArray<string>, env: Record<string, string>, timeout_ms: number) =>
  Effect.promise(() => new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [...args], { cwd: repositoryRoot, env: { ...process.env, ...env }, timeout: timeout_ms, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => (error === null ? resolve(stdout) : reject(new Error(`${args.join(" ")}: ${error.message}\n${stderr.slice(-2_000)}`))))
  }))

const startServer = (env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, ["packages/server/src/main.ts"], { cwd: repositoryRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
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

export interface StreamSettings {
  readonly databaseUrl: string
  readonly brokers: string
  readonly prefix: string
  readonly redisUrl: string
  readonly redisPrefix: string
  readonly duration_s: number
  readonly concurrency: number
}

export const apiStreamLatency = (settings: StreamSettings) =>
  Effect.scoped(Effect.gen(function* () {
    const created = yield* run(["packages/cli/src/main.ts", "merchants", "create", "Bench consumers"], { DATABASE_URL: settings.databaseUrl }, 60_000)
    const parsed: unknown = JSON.parse(created)
    const apiKey = typeof parsed === "object" && parsed !== null ? Reflect.get(parsed, "api_key") : undefined
    if (typeof apiKey !== "string") return yield* Effect.die(new Error(`no api_key in ${created}`))
    const port = yield* freePort
    const baseUrl = `http://127.0.0.1:${port}`
    const server = yield* startServer({
      DATABASE_URL: settings.databaseUrl, PORT: String(port), KAFKA_BROKERS: settings.brokers, KAFKA_TOPIC_PREFIX: settings.prefix,
      REDIS_URL: settings.redisUrl, REDIS_KEY_PREFIX: settings.redisPrefix, CONSUMERS_ENABLED: "true"
    })
    yield* waitFor("server ready", Effect.promise(() =>
      fetch(`${baseUrl}/health/ready`, { signal: AbortSignal.timeout(2_000) }).then((response) => response.status === 200, () => false)), 90_000).pipe(
      Effect.catchDefect((defect) => Effect.die(new Error(`${String(defect)}\n${server.tail()}`)))
    )
    const load: unknown = JSON.parse(yield* run(["bench/outbox/load.ts"], {
      BASE_URL: baseUrl, API_KEY: apiKey, DURATION_S: String(settings.duration_s), CONCURRENCY: String(settings.concurrency)
    }, (settings.duration_s + 120) * 1_000))
    const sql = yield* SqlClient.SqlClient
    const count = (statement: Effect.Effect<ReadonlyArray<unknown>, unknown>) =>
      Effect.map(decodeRows(Schema.Struct({ n: Schema.BigInt }))(Effect.orDie(statement)), (rows) => rows[0]?.n ?? 0n)
    const settled = yield* count(sql`SELECT count(*)::bigint AS n FROM payments WHERE status = 'SETTLED'`)
    const projected = count(sql`
      SELECT count(*)::bigint AS n FROM processed_events pe JOIN payments p ON p.id = pe.payment_id AND p.version = pe.payment_version
      WHERE p.status = 'SETTLED' AND pe.consumer = (SELECT consumer FROM settlement_projection_live)`)
    yield* waitFor("every settlement projected", Effect.map(projected, (n) => n >= settled), 120_000)
    const latencies = yield* decodeRows(Schema.Struct({ ms: Schema.Number }))(sql`
      SELECT (extract(epoch FROM (pe.processed_at - p.updated_at)) * 1000)::float8 AS ms
      FROM processed_events pe JOIN payments p ON p.id = pe.payment_id AND p.version = pe.payment_version
      WHERE p.status = 'SETTLED' AND pe.consumer = (SELECT consumer FROM settlement_projection_live)`).pipe(Effect.orDie)
    const sorted = latencies.map((row) => row.ms).sort((a, b) => a - b)
    return {
      load,
      settled_payments: Number(settled),
      settle_to_projection_ms_p50: Number(percentile(sorted, 0.5).toFixed(1)),
      settle_to_projection_ms_p99: Number(percentile(sorted, 0.99).toFixed(1)),
      settle_to_projection_ms_max: Number((sorted[sorted.length - 1] ?? Number.NaN).toFixed(1))
    }
  }))
