/**
 * What observability costs (a script, not a test): `node bench/observability/run.ts`
 * (or `pnpm bench:observability`).
 *
 * Two real servers side by side on one database, in ONE run, driven in turn (ABBA rounds, so
 * drift on this shared machine falls on both alike):
 *   on   JSON access log per request (HTTP_ACCESS_LOG=all, LOG_LEVEL=Info) and spans exported over
 *        OTLP/HTTP to a receiver in this process (OTEL_EXPORTER_OTLP_ENDPOINT);
 *   off  no access log (HTTP_ACCESS_LOG=off, LOG_LEVEL=Warn), no exporter.
 * Metrics and the correlation id are on in both (they are not settings). Workloads: GET
 * /health/live (the HTTP stack alone) and POST /v1/payments with a new Idempotency-Key each (a
 * payment committed per request). Reports requests/s, p50/p99 and the server's CPU per request
 * (from /proc: what contention changes least), the on/off ratios, and writes
 * bench/results/observability-<timestamp>.json.
 *
 * Environment: BENCH_DURATION_S (5), BENCH_WARMUP_S (2), BENCH_CONNECTIONS (20), BENCH_ROUNDS (2),
 * DATABASE_URL, REDIS_URL, KAFKA_BROKERS. Loopback only; every phase bounded by its duration.
 */
import autocannon from "autocannon"
import { Effect } from "effect"
import { execFile, spawn, type ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:http"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { cleanupKafkaPrefix } from "../../packages/testkit/src/cleanupKafka.ts"
import { cleanupRedisPrefix } from "../../packages/testkit/src/cleanupRedis.ts"
import { pickFreePort } from "../../packages/testkit/src/FreePort.ts"
import { stopChild } from "../support/process.ts"

const repositoryRoot = fileURLToPath(new URL("../../", import.meta.url))
const envInt = (name: string, fallback: number, min: number, max: number): number => {
  const value = process.env[name] === undefined ? fallback : Number(process.env[name])
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer in ${min}..${max}`)
  return value
}
const settings = {
  duration_s: envInt("BENCH_DURATION_S", 5, 1, 300),
  warmup_s: envInt("BENCH_WARMUP_S", 2, 0, 60),
  connections: envInt("BENCH_CONNECTIONS", 20, 1, 500),
  rounds: envInt("BENCH_ROUNDS", 2, 1, 20)
}
const runId = randomBytes(4).toString("hex")
const baseDatabaseUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/payments"
const databaseName = `pay_bench_obs_${runId}`
const redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379/0"
const brokers = process.env["KAFKA_BROKERS"] ?? "127.0.0.1:9092"
const redisPrefix = `bench:${runId}:`
const topicPrefix = `bench.${runId}.`
const log = (message: string) => console.error(`[bench:observability] ${message}`)
const round = (value: number, digits = 3) => Number(value.toFixed(digits))

const withDatabase = (database: string): string => {
  const parsed = new URL(baseDatabaseUrl)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

const run = (command: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  new Promise<string>((resolve, reject) =>
    execFile(command, [...args], { cwd: repositoryRoot, env: { ...process.env, ...env }, timeout: 120_000 }, (error, stdout, stderr) =>
      error === null ? resolve(stdout) : reject(new Error(`${command} ${args.join(" ")}: ${error.message}\n${stderr.slice(-2_000)}`))
    )
  )

/** An OTLP/HTTP sink: accepts and discards what the "on" server exports, counting bytes. */
const startOtlpSink = async () => {
  let received_bytes = 0
  const server = createServer((request, response) => {
    request.on("data", (chunk: Buffer) => { received_bytes += chunk.length })
    request.on("end", () => response.writeHead(200, { "content-type": "application/json" }).end("{}"))
  })
  const port = await pickFreePort()
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))
  return { url: `http://127.0.0.1:${port}`, received_bytes: () => received_bytes, close: () => server.close() }
}

interface Server {
  readonly mode: "on" | "off"
  readonly baseUrl: string
  readonly child: ChildProcess
  readonly logFile: string
}

const startServer = async (mode: "on" | "off", databaseUrl: string, otlpUrl: string): Promise<Server> => {
  const port = await pickFreePort()
  const logFile = join(tmpdir(), `pay-bench-obs-${runId}-${mode}.log`)
  const fd = openSync(logFile, "a")
  const observability = mode === "on"
    ? { HTTP_ACCESS_LOG: "all", LOG_LEVEL: "Info", OTEL_EXPORTER_OTLP_ENDPOINT: otlpUrl }
    : { HTTP_ACCESS_LOG: "off", LOG_LEVEL: "Warn" }
  const child = spawn(process.execPath, ["packages/server/src/main.ts"], {
    cwd: repositoryRoot,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      DATABASE_POOL_SIZE: "10",
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: redisPrefix,
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC_PREFIX: topicPrefix,
      // The request path only: the publisher's work would be the same for both.
      OUTBOX_PUBLISHER_ENABLED: "false",
      // Nor the consumers and the webhook sender; and the merchant's rate limit (1,000 requests a
      // second per process) is the load's ceiling here, not what is measured.
      CONSUMERS_ENABLED: "false",
      WEBHOOK_SENDER_ENABLED: "false",
      RATE_LIMIT_MERCHANT_REQUESTS_MAX: "1000000",
      PORT: String(port),
      // Two servers on one machine: each its own free metrics port.
      METRICS_PORT: "0",
      ...observability
    },
    stdio: ["ignore", fd, fd]
  })
  closeSync(fd)
  const baseUrl = `http://127.0.0.1:${port}`
  for (let attempt = 0; attempt < 240; attempt++) {
    const ready = await fetch(`${baseUrl}/health/ready`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.status === 200, () => false)
    if (ready) return { mode, baseUrl, child, logFile }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  child.kill("SIGKILL")
  throw new Error(`the ${mode} server was not ready within 60 s; its log: ${logFile}`)
}

/** utime + stime of a process, in ms (USER_HZ = 100 on Linux). */
const cpuTime_ms = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? []
  return (Number(fields[11]) + Number(fields[12])) * 10
}

const fire = (options: autocannon.Options) =>
  new Promise<autocannon.Result>((resolve, reject) => autocannon(options, (error, result) => (error === null ? resolve(result) : reject(error))))

const createBody = JSON.stringify({ amount: 1050, currency: "USD", payment_method: "pm_card_visa" })
let sequence = 0

const workloads = {
  live: (server: Server): autocannon.Options => ({ url: `${server.baseUrl}/health/live` }),
  create: (server: Server, apiKey: string): autocannon.Options => ({
    url: `${server.baseUrl}/v1/payments`,
    requests: [{
      method: "POST",
      path: "/v1/payments",
      body: createBody,
      setupRequest: (request) => ({
        ...request,
        headers: { ...request.headers, authorization: `Bearer ${apiKey}`, "content-type": "application/json", "idempotency-key": `obs-${runId}-${++sequence}` }
      })
    }]
  })
} as const

interface Sample {
  readonly requests: number
  readonly requests_per_s: number
  readonly latency_ms_p50: number
  readonly latency_ms_p99: number
  readonly cpu_ms_per_request: number
  readonly non_2xx: number
}

const measure = async (server: Server, options: autocannon.Options): Promise<Sample> => {
  const base = { connections: settings.connections, timeout: 10, ...options }
  if (settings.warmup_s > 0) await fire({ ...base, duration: settings.warmup_s })
  const pid = server.child.pid ?? 0
  const before = cpuTime_ms(pid)
  const result = await fire({ ...base, duration: settings.duration_s })
  const cpu_ms = cpuTime_ms(pid) - before
  return {
    requests: result.requests.total,
    requests_per_s: round(result.requests.average, 0),
    latency_ms_p50: result.latency.p50,
    latency_ms_p99: result.latency.p99,
    cpu_ms_per_request: result.requests.total > 0 ? round(cpu_ms / result.requests.total) : Number.NaN,
    non_2xx: result.non2xx + result.errors + result.timeouts
  }
}

const total = (samples: ReadonlyArray<Sample>) => {
  const requests = samples.reduce((sum, s) => sum + s.requests, 0)
  const mean = (pick: (s: Sample) => number) => round(samples.reduce((sum, s) => sum + pick(s), 0) / samples.length)
  return {
    requests,
    requests_per_s: mean((s) => s.requests_per_s),
    latency_ms_p50: mean((s) => s.latency_ms_p50),
    latency_ms_p99: mean((s) => s.latency_ms_p99),
    cpu_ms_per_request: round(samples.reduce((sum, s) => sum + s.cpu_ms_per_request * s.requests, 0) / Math.max(1, requests)),
    non_2xx: samples.reduce((sum, s) => sum + s.non_2xx, 0)
  }
}

const main = async () => {
  await run("psql", [withDatabase("postgres"), "-v", "ON_ERROR_STOP=1", "-qAtc", `CREATE DATABASE ${databaseName}`])
  const databaseUrl = withDatabase(databaseName)
  const sink = await startOtlpSink()
  const servers: Array<Server> = []
  try {
    await run(process.execPath, ["packages/cli/src/main.ts", "migrate"], { DATABASE_URL: databaseUrl })
    const created: unknown = JSON.parse(await run(process.execPath, ["packages/cli/src/main.ts", "merchants", "create", "Bench merchant"], { DATABASE_URL: databaseUrl }))
    const apiKey = typeof created === "object" && created !== null ? Reflect.get(created, "api_key") : undefined
    if (typeof apiKey !== "string") throw new Error("no api_key in the CLI's output")
    servers.push(await startServer("on", databaseUrl, sink.url), await startServer("off", databaseUrl, sink.url))
    const [on, off] = servers as [Server, Server]
    const samples: Record<string, Record<"on" | "off", Array<Sample>>> = { live: { on: [], off: [] }, create: { on: [], off: [] } }
    for (let r = 0; r < settings.rounds; r++) {
      // ABBA: on, off, off, on across rounds.
      const order = r % 2 === 0 ? [on, off] : [off, on]
      for (const server of order) {
        samples["live"]?.[server.mode].push(await measure(server, workloads.live(server)))
        samples["create"]?.[server.mode].push(await measure(server, workloads.create(server, apiKey)))
        log(`round ${r + 1} ${server.mode} done`)
      }
    }
    const results = Object.fromEntries(Object.entries(samples).map(([name, byMode]) => {
      const onTotal = total(byMode.on)
      const offTotal = total(byMode.off)
      return [name, {
        on: onTotal,
        off: offTotal,
        // > 1: observability costs this much more (CPU per request, p99); < 1 for throughput.
        ratio_on_to_off: {
          requests_per_s: round(onTotal.requests_per_s / offTotal.requests_per_s),
          cpu_ms_per_request: round(onTotal.cpu_ms_per_request / offTotal.cpu_ms_per_request),
          latency_ms_p99: round(onTotal.latency_ms_p99 / offTotal.latency_ms_p99)
        }
      }]
    }))
    const report = {
      benchmark: "observability on vs off",
      at: new Date().toISOString(),
      machine: { cpus: cpus().length, loadavg_1m_at_end: round(loadavg()[0] ?? 0, 2), node: process.version },
      settings,
      otlp_bytes_received: sink.received_bytes(),
      results
    }
    mkdirSync(join(repositoryRoot, "bench/results"), { recursive: true })
    const file = join(repositoryRoot, `bench/results/observability-${report.at.replace(/[:.]/g, "-")}.json`)
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
    console.log(JSON.stringify(results, null, 2))
    log(`written ${file}`)
    const wrong = Object.values(results).reduce((sum, r) => sum + r.on.non_2xx + r.off.non_2xx, 0)
    if (wrong > 0) {
      log(`${wrong} answers were not 2xx (or errors/timeouts): see the server logs ${servers.map((s) => s.logFile).join(", ")}`)
      process.exitCode = 1
    }
  } finally {
    for (const server of servers) await Effect.runPromise(stopChild(server.child))
    sink.close()
    await Effect.runPromise(
      Effect.all([cleanupRedisPrefix(redisUrl, redisPrefix), cleanupKafkaPrefix(brokers, topicPrefix)], { concurrency: 2 }).pipe(
        Effect.catchCause((cause) => Effect.sync(() => log(`cleanup failed: ${String(cause)}`)))
      )
    )
    await run("psql", [withDatabase("postgres"), "-v", "ON_ERROR_STOP=1", "-qAtc", `DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`]).catch((error: unknown) => log(`drop failed: ${String(error)}`))
  }
}

await main()
