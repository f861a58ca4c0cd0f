/**
 * API benchmark (a script, not a test): `node bench/api/run.ts` (or `pnpm bench:api`).
 *
 * Drives the real server over HTTP with autocannon, `BENCH_CONNECTIONS` (50) connections, three
 * workloads side by side in ONE run, each after a warm-up:
 *   reference  GET /health/live: the HTTP stack and nothing else, the yardstick on this machine;
 *   replays    POST /v1/payments with ONE Idempotency-Key and the same body: every answer is the
 *              stored response (checked byte for byte with autocannon's expectBody);
 *   creates    POST /v1/payments with a new Idempotency-Key per request: a payment, its history
 *              row, its outbox event and the key, committed per request.
 * Prints requests/s, p50/p99 latency, the ratios to the reference, the targets, and where the CPU
 * went during each phase (server, load generator, Postgres, Redis, Kafka: from /proc), and writes
 * everything to bench/results/api-<timestamp>.json.
 *
 * By default it starts its own server (`node packages/server/src/main.ts`) the way production runs
 * it (`BENCH_SERVER_LAYOUT=split`): the API server with `CONSUMERS_ENABLED=false` and
 * `WEBHOOK_SENDER_ENABLED=false`, and the consumers (`node packages/consumers/src/main.ts`) and the
 * webhook sender (`node packages/webhooks/src/main.ts`) as processes of their own, whose CPU is
 * counted apart ("workers"); `embedded` runs them inside the measured server instead. Creates
 * are then measured again on a server of the other layout (`BENCH_COMPARE_LAYOUT`, 1; 0 skips).
 * Its server runs on a database of its own
 * (`pay_bench_api_<id>`, created from DATABASE_URL's server and dropped at the end), Redis keys
 * `bench:<id>:*` and Kafka topics `bench.<id>.*` (deleted at the end); the merchant and API key come
 * from the CLI. The server's JSON logs go to a file in the OS temp folder (path printed).
 * With API_URL and API_KEY it benchmarks that server instead (it must be on this machine).
 *
 * Each workload is then replayed OPEN loop at `BENCH_OPEN_LOOP_PERCENT` (50) % of its closed-loop
 * throughput: requests leave on a fixed schedule and latency counts from the instant each was due.
 * Why both: with N connections in a closed loop the server is saturated by construction and, by
 * Little's law, mean latency = N / throughput (50 connections at 2 000 req/s = 25 ms whatever the
 * code does); the open loop shows the latency a client sees below saturation.
 *
 * Environment: BENCH_DURATION_S (10), BENCH_WARMUP_S (3), BENCH_CONNECTIONS (50),
 * BENCH_OPEN_LOOP_PERCENT (50), BENCH_WORKLOADS (reference,replays,creates; reference required),
 * DATABASE_URL, REDIS_URL, KAFKA_BROKERS, API_URL + API_KEY, BENCH_SERVER_ENV (extra `K=V,K=V`
 * for the server it starts, e.g. `OUTBOX_PUBLISHER_ENABLED=false` or `NODE_OPTIONS=--cpu-prof`).
 * Exits non-zero when any answer was wrong (status, replay bytes, errors); missed targets are
 * reported, not fatal: they are measurements.
 */
import autocannon from "autocannon"
import { Effect } from "effect"
import { execFile, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { Agent, request as httpRequest } from "node:http"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { cleanupKafkaPrefix } from "../../packages/testkit/src/cleanupKafka.ts"
import { freePort } from "../../packages/testkit/src/ThrowawayKafka.ts"
import { machineTicks, processStat, processTicks, userHz } from "../support/procCpu.ts"
import { stopChild } from "../support/process.ts"
import { cleanupRedisPrefix } from "../../packages/testkit/src/cleanupRedis.ts"
import { pgbenchDatabase } from "../support/pgbench.ts"
import { type OperationCost, type ProbeOperation, probeCosts } from "./probe.ts"

const repositoryRoot = fileURLToPath(new URL("../../", import.meta.url))

const envInt = (name: string, fallback: number, min: number, max: number): number => {
  const raw = process.env[name]
  const value = raw === undefined ? fallback : Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer in ${min}..${max}, got ${raw}`)
  return value
}

const workloadNames = ["reference", "replays", "creates"] as const
type WorkloadName = (typeof workloadNames)[number]

const isWorkloadName = (name: string): name is WorkloadName => workloadNames.some((known) => known === name)

const selectedWorkloads = (): ReadonlyArray<WorkloadName> => {
  const raw = process.env["BENCH_WORKLOADS"]
  if (raw === undefined) return workloadNames
  const names = raw.split(",").map((name) => name.trim())
  const unknown = names.filter((name) => !isWorkloadName(name))
  if (unknown.length > 0 || !names.includes("reference")) {
    throw new Error(`BENCH_WORKLOADS: a comma list of ${workloadNames.join(", ")} that includes reference, got ${raw}`)
  }
  return names.filter(isWorkloadName)
}

type ServerLayout = "split" | "embedded"

const serverLayout = (): ServerLayout => {
  const raw = process.env["BENCH_SERVER_LAYOUT"] ?? "split"
  if (raw !== "split" && raw !== "embedded") throw new Error(`BENCH_SERVER_LAYOUT: split or embedded, got ${raw}`)
  return raw
}

const otherLayout = (layout: ServerLayout): ServerLayout => (layout === "split" ? "embedded" : "split")

/** The server's switches for a layout: split turns its consumers and webhook sender off. */
const layoutEnv = (layout: ServerLayout): Record<string, string> =>
  layout === "split" ? { CONSUMERS_ENABLED: "false", WEBHOOK_SENDER_ENABLED: "false" } : {}

const settings = {
  duration_s: envInt("BENCH_DURATION_S", 10, 1, 600),
  warmup_s: envInt("BENCH_WARMUP_S", 3, 0, 120),
  connections: envInt("BENCH_CONNECTIONS", 50, 1, 1_000),
  /** Open-loop rate as a percentage of the closed-loop throughput of the same workload. */
  openLoopFraction: envInt("BENCH_OPEN_LOOP_PERCENT", 50, 1, 100) / 100,
  workloads: selectedWorkloads(),
  /** pgbench TPC-B clients (0: no pgbench phase) and scale. */
  pgbench_clients: envInt("BENCH_PGBENCH_CLIENTS", 8, 0, 200),
  pgbench_scale: envInt("BENCH_PGBENCH_SCALE", 10, 1, 100),
  /** Requests per operation in the cost probe (0: no probe). */
  probe_requests: envInt("BENCH_PROBE_REQUESTS", 100, 0, 10_000),
  /** creates and replays again on a server of this many instances (0 or 1: skipped). */
  compare_instances: envInt("BENCH_COMPARE_INSTANCES", 2, 0, 8),
  /** Seconds of the create → authorize → settle flow phase (0: skipped). */
  flow_s: envInt("BENCH_FLOW_S", 5, 0, 600),
  /** Payments (and 10x as many ledger entries) preloaded with SQL before creates, replays and the flow run again (0: skipped). */
  preload_payments: envInt("BENCH_PRELOAD_PAYMENTS", 0, 0, 10_000_000),
  preload_entries: envInt("BENCH_PRELOAD_ENTRIES", 0, 0, 100_000_000),
  /** Where the consumers and the webhook sender run: their own processes (production) or inside the server. */
  server_layout: serverLayout(),
  /** DATABASE_POOL_SIZE of the consumers and webhook sender processes (split layout). */
  workers_pool_size: envInt("BENCH_WORKERS_POOL_SIZE", 4, 1, 50),
  /** Creates again on a server of the other layout, same database, same run (0: skipped). */
  compare_layout: envInt("BENCH_COMPARE_LAYOUT", 1, 0, 1),
  /** Rounds of the observability phase: logs and tracing on vs off, side by side (0: skipped). */
  observability_rounds: envInt("BENCH_OBSERVABILITY_ROUNDS", 2, 0, 20)
}

/**
 * The cost of observability, in this run: `bench/observability/run.ts` (two servers, logs and OTLP
 * tracing on vs off, ABBA rounds of /health/live and creates) as the last phase; its results (each
 * with `ratio_on_to_off`) go into this report.
 */
const observabilityPhase = (rounds: number) =>
  Effect.callback<unknown, Error>((resume) => {
    execFile(process.execPath, [fileURLToPath(new URL("../observability/run.ts", import.meta.url))], {
      env: { ...process.env, BENCH_ROUNDS: String(rounds) },
      maxBuffer: 16 * 1024 * 1024,
      timeout: 10 * 60 * 1_000
    }, (error, stdout) => {
      if (error !== null) return resume(Effect.fail(error))
      try {
        resume(Effect.succeed(JSON.parse(stdout)))
      } catch (parseError) {
        resume(Effect.fail(parseError instanceof Error ? parseError : new Error(String(parseError))))
      }
    })
  })

/** What the issue asks of the API at 50 connections. */
const targets = {
  replay_latency_ms_p99_max: 5,
  replay_throughput_ratio_min: 0.5,
  create_latency_ms_p99_max: 25,
  create_to_pgbench_ratio_min: 0.5,
  flow_to_pgbench_ratio_min: 0.25,
  create_server_cpu_ms_max: 1,
  create_postgres_cpu_ms_max: 1.5,
  create_round_trips_max: 4,
  create_durable_commits_max: 1
}

const runId = randomBytes(4).toString("hex")
const baseDatabaseUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/payments"
const redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379/0"
const brokers = process.env["KAFKA_BROKERS"] ?? "127.0.0.1:9092"
const databaseName = `pay_bench_api_${runId}`
const redisPrefix = `bench:${runId}:`
const topicPrefix = `bench.${runId}.`

const log = (message: string) => Effect.sync(() => console.error(`[bench:api] ${message}`))
const round = (value: number, digits = 2) => Number(value.toFixed(digits))

const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

const runCommand = (command: string, args: ReadonlyArray<string>, env: Record<string, string>, timeout_ms: number) =>
  Effect.tryPromise({
    try: () =>
      new Promise<string>((resolve, reject) => {
        execFile(command, [...args], { cwd: repositoryRoot, env: { ...process.env, ...env }, timeout: timeout_ms }, (error, stdout, stderr) => {
          if (error === null) resolve(stdout)
          else reject(new Error(`${command} ${args.join(" ")} failed: ${error.message}\n${stderr.slice(-2_000)}`))
        })
      }),
    catch: (cause) => (cause instanceof Error ? cause : new Error(String(cause)))
  })


/** One bounded HTTP call (a request sent while a server starts can hang otherwise). */
const http = (url: string, init: RequestInit = {}) =>
  Effect.tryPromise({
    try: async () => {
      const response = await fetch(url, { ...init, signal: AbortSignal.timeout(5_000) })
      return { status: response.status, headers: response.headers, text: await response.text() }
    },
    catch: (cause) => new Error(`${init.method ?? "GET"} ${url}: ${String(cause)}`)
  })

// --- the server under test ------------------------------------------------------------------------

interface Target {
  readonly baseUrl: string
  readonly apiKey: string
  /** Our own server's pid (CPU accounting); undefined for an external API_URL. */
  readonly serverPid: number | undefined
  readonly serverLog: string | undefined
  /** The consumers and webhook sender processes we started beside it (split layout). */
  readonly workerPids: ReadonlyArray<number>
}

const psql = (database: string, statement: string) =>
  runCommand("psql", [withDatabase(baseDatabaseUrl, database), "-v", "ON_ERROR_STOP=1", "-qAtc", statement], {}, 60_000)

/** A database of our own, dropped (FORCE) when the scope closes. */
const benchDatabase = Effect.acquireRelease(
  psql("postgres", `CREATE DATABASE ${databaseName}`).pipe(Effect.as(withDatabase(baseDatabaseUrl, databaseName))),
  () => psql("postgres", `DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`).pipe(Effect.orDie)
)

/** Redis keys and Kafka topics of this run, deleted when the scope closes. */
const cleanupAtEnd = Effect.addFinalizer(() =>
  Effect.all([cleanupRedisPrefix(redisUrl, redisPrefix), cleanupKafkaPrefix(brokers, topicPrefix)], { concurrency: 2 }).pipe(
    Effect.catchCause((cause) => log(`cleanup failed: ${String(cause)}`))
  )
)

const extraServerEnv = (): Record<string, string> =>
  Object.fromEntries(
    (process.env["BENCH_SERVER_ENV"] ?? "")
      .split(",")
      .filter((pair) => pair.includes("="))
      .map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)])
  )

/** `node packages/server/src/main.ts`, logs to a file; SIGTERM (then SIGKILL after 10 s) at scope end. */
const startServer = (databaseUrl: string, port: number, logFile: string, env: Record<string, string> = {}) =>
  startProcess("packages/server/src/main.ts", databaseUrl, logFile, { PORT: String(port), ...env })

/**
 * The consumers and the webhook sender as processes of their own, as production runs them beside a
 * server with `CONSUMERS_ENABLED=false` and `WEBHOOK_SENDER_ENABLED=false` (started after the
 * server: it owns the migrations). `stop` ends them early (the scope's end does too).
 */
const startWorkers = (databaseUrl: string, logFile: string) =>
  Effect.gen(function* () {
    // Their own pools, small: the machine's Postgres (max_connections 100) is shared with the
    // server's pool, a second server's instances and other work; a run that hit the limit answered
    // 503 (SQLSTATE 53300).
    const env = { DATABASE_POOL_SIZE: String(settings.workers_pool_size) }
    const consumers = yield* startProcess("packages/consumers/src/main.ts", databaseUrl, logFile, env)
    const sender = yield* startProcess("packages/webhooks/src/main.ts", databaseUrl, logFile, env)
    const pids = [consumers.pid, sender.pid].filter((pid): pid is number => pid !== undefined)
    return { pids, stop: Effect.all([stopChild(consumers), stopChild(sender)], { concurrency: 2, discard: true }) }
  })

const startProcess = (main: string, databaseUrl: string, logFile: string, env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const fd = openSync(logFile, "a")
      const child = spawn(process.execPath, [main], {
        cwd: repositoryRoot,
        env: {
          ...process.env,
          // Its metrics on a free port: another server on this machine may hold 9464.
          METRICS_PORT: "0",
          DATABASE_URL: databaseUrl,
          REDIS_URL: redisUrl,
          REDIS_KEY_PREFIX: redisPrefix,
          ...env,
          KAFKA_BROKERS: brokers,
          KAFKA_TOPIC_PREFIX: topicPrefix,
          // The benchmark measures throughput: the per-merchant rate limit must not be what it measures.
          RATE_LIMIT_MERCHANT_REQUESTS_MAX: "1000000",
          ...extraServerEnv()
        },
        stdio: ["ignore", fd, fd]
      })
      closeSync(fd)
      return child
    }),
    (child) =>
      stopChild(child)
  )

const waitForReady = (baseUrl: string, logFile: string) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 60_000
    let last = "no answer"
    while (Date.now() < deadline) {
      const answer = yield* Effect.result(http(`${baseUrl}/health/ready`))
      last = answer._tag === "Success" ? `${answer.success.status} ${answer.success.text}` : answer.failure.message
      if (last.startsWith("200 ")) return
      yield* Effect.sleep("250 millis")
    }
    return yield* Effect.die(new Error(`server not ready after 60 s (${last}); its log: ${logFile}`))
  })

/**
 * Waits (at most 30 s) until the server and its workers have finished starting: under 5 % of a
 * core together over half a second. Their start-up (modules, pools, the consumer group's join)
 * otherwise lands in the first phase, the reference, and lowers it: a run measured the workers
 * at 0.76 of a core during `/health/live`.
 */
const waitForQuiet = (pids: ReadonlyArray<number>) =>
  Effect.gen(function* () {
    const started = performance.now()
    while (performance.now() - started < 30_000) {
      const before = processTicks(pids)
      yield* Effect.sleep("500 millis")
      const cores = (processTicks(pids) - before) / userHz / 0.5
      if (cores < 0.05) return yield* log(`server and workers quiet after ${Math.round(performance.now() - started)} ms`)
    }
    yield* log("server and workers still busy after 30 s; measuring anyway")
  })

/**
 * Before a flow phase: the server and its workers back to rest (at most 30 s), so that the flow is
 * not measured on top of the events the phases before it left to the publisher, consumers and
 * sender (docs/performance.md, sixth round: the preload comparison).
 */
const quietFirst = (target: Target) =>
  waitForQuiet([target.serverPid ?? 0, ...target.workerPids].filter((pid) => pid > 0))

const ownServer = Effect.gen(function* () {
  yield* cleanupAtEnd
  const databaseUrl = yield* benchDatabase
  // The CLI migrates the database (as its owner: the bench's URL), then prints the merchant and its API key (once) as JSON.
  yield* runCommand(process.execPath, ["packages/cli/src/main.ts", "migrate"], { DATABASE_URL: databaseUrl }, 60_000)
  const cliOutput = yield* runCommand(process.execPath, ["packages/cli/src/main.ts", "merchants", "create", "Bench merchant"], { DATABASE_URL: databaseUrl }, 60_000)
  const created: unknown = JSON.parse(cliOutput)
  const apiKey = typeof created === "object" && created !== null ? Reflect.get(created, "api_key") : undefined
  if (typeof apiKey !== "string") return yield* Effect.die(new Error(`no api_key in the CLI's output: ${cliOutput}`))
  const port = yield* freePort
  const serverLog = join(tmpdir(), `pay-bench-api-${runId}.log`)
  const child = yield* startServer(databaseUrl, port, serverLog, layoutEnv(settings.server_layout))
  const baseUrl = `http://127.0.0.1:${port}`
  yield* waitForReady(baseUrl, serverLog)
  const workers = settings.server_layout === "split"
    ? yield* startWorkers(databaseUrl, join(tmpdir(), `pay-bench-api-${runId}-workers.log`))
    : { pids: [], stop: Effect.void }
  yield* log(`server pid ${child.pid} on ${baseUrl} (${settings.server_layout}; workers ${workers.pids.join(", ") || "inside"}), database ${databaseName}, log ${serverLog}`)
  yield* waitForQuiet([child.pid ?? 0, ...workers.pids].filter((pid) => pid > 0))
  const target: Target = { baseUrl, apiKey, serverPid: child.pid, serverLog, workerPids: workers.pids }
  return { target, databaseUrl, stopWorkers: workers.stop }
})

/**
 * Creates on a server of the other layout, same database, after the main server's own workers
 * stopped (a consumers process left running would share the group's partitions with the
 * embedded server's consumers). Closed and open loop, like the main phase.
 */
const layoutComparison = (databaseUrl: string, apiKey: string, layout: ServerLayout, workload: Workload) =>
  Effect.scoped(Effect.gen(function* () {
    const port = yield* freePort
    const serverLog = join(tmpdir(), `pay-bench-api-${runId}-${layout}.log`)
    const child = yield* startServer(databaseUrl, port, serverLog, layoutEnv(layout))
    const baseUrl = `http://127.0.0.1:${port}`
    yield* waitForReady(baseUrl, serverLog)
    const workers = layout === "split" ? yield* startWorkers(databaseUrl, join(tmpdir(), `pay-bench-api-${runId}-workers-2.log`)) : { pids: [] }
    yield* log(`${workload.name} on a server of layout ${layout} (pid ${child.pid}, workers ${workers.pids.join(", ") || "inside"})`)
    return { layout, ...(yield* measure(workload, { baseUrl, apiKey, serverPid: child.pid, serverLog, workerPids: workers.pids })) }
  }))

/** Another server on the same database with `instances` instances (SERVER_INSTANCES), for the scope. */
const clusterServer = (databaseUrl: string, apiKey: string, instances: number) =>
  Effect.gen(function* () {
    const port = yield* freePort
    const serverLog = join(tmpdir(), `pay-bench-api-${runId}-x${instances}.log`)
    // The main server's workers (split layout) keep serving this one too: same database and topics.
    const child = yield* startServer(databaseUrl, port, serverLog, { ...layoutEnv(settings.server_layout), SERVER_INSTANCES: String(instances) })
    const baseUrl = `http://127.0.0.1:${port}`
    yield* waitForReady(baseUrl, serverLog)
    yield* log(`${instances} instances (primary pid ${child.pid}) on ${baseUrl}, log ${serverLog}`)
    const target: Target = { baseUrl, apiKey, serverPid: child.pid, serverLog, workerPids: [] }
    return target
  })

const externalServer = (baseUrl: string, apiKey: string) =>
  Effect.gen(function* () {
    const host = new URL(baseUrl).hostname
    // Load is only ever sent to this machine.
    if (!(host === "localhost" || host === "::1" || host === "[::1]" || host.startsWith("127."))) {
      return yield* Effect.die(new Error(`API_URL must be a loopback address, got ${host}`))
    }
    const target: Target = { baseUrl: baseUrl.replace(/\/$/, ""), apiKey, serverPid: undefined, serverLog: undefined, workerPids: [] }
    return target
  })

// --- CPU accounting from /proc (Linux) ------------------------------------------------------------

interface CpuSample {
  readonly at_ms: number
  /** USER_HZ ticks summed over all CPUs, busy and total. */
  readonly busyTicks: number
  readonly totalTicks: number
  /** utime + stime ticks of each process we account for, with its group. */
  readonly processes: ReadonlyMap<number, { readonly group: string; readonly ticks: number }>
  readonly loadGenerator_us: number
}

/**
 * Which processes count as what. Postgres: only the backends serving our own database when we
 * started the server (other sessions on this machine use the same Postgres), every postgres
 * process otherwise.
 */
/** The server's pid and its children (the instances of a node:cluster primary). */
const serverPidsOf = (serverPid: number | undefined): ReadonlySet<number> => {
  if (serverPid === undefined) return new Set()
  try {
    const children = readFileSync(`/proc/${serverPid}/task/${serverPid}/children`, "utf8").trim().split(/\s+/).filter((pid) => pid !== "").map(Number)
    return new Set([serverPid, ...children])
  } catch {
    return new Set([serverPid])
  }
}

const groupOf = (pid: number, comm: string, serverPid: number | undefined, serverPids: ReadonlySet<number>, workerPids: ReadonlyArray<number>): string | undefined => {
  if (serverPids.has(pid)) return "server"
  if (workerPids.includes(pid)) return "workers"
  if (comm === "postgres") {
    if (serverPid === undefined) return "postgres"
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(databaseName) ? "postgres" : undefined
    } catch {
      return undefined // ended meanwhile
    }
  }
  if (comm === "redis-server") return "redis"
  if (comm === "java") return "kafka"
  return undefined
}

const sampleCpu = (serverPid: number | undefined, workerPids: ReadonlyArray<number> = []): CpuSample => {
  const serverPids = serverPidsOf(serverPid)
  const machine = machineTicks()
  const processes = new Map<number, { group: string; ticks: number }>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    const stat = processStat(pid)
    if (stat === undefined) continue // the process ended between readdir and read
    const group = groupOf(pid, stat.comm, serverPid, serverPids, workerPids)
    if (group === undefined) continue
    processes.set(pid, { group, ticks: stat.ticks })
  }
  const usage = process.cpuUsage()
  return { at_ms: performance.now(), busyTicks: machine.busy, totalTicks: machine.total, processes, loadGenerator_us: usage.user + usage.system }
}

/** Average cores used between two samples. */
interface CpuCores {
  readonly machine_busy: number
  readonly load_generator: number
  readonly server: number
  /** The consumers and webhook sender processes (split layout). */
  readonly workers: number
  readonly postgres: number
  readonly redis: number
  readonly kafka: number
}

const coresBetween = (before: CpuSample, after: CpuSample): CpuCores => {
  const cores = cpus().length
  const ticksPerCore = (after.totalTicks - before.totalTicks) / cores
  const asCores = (ticks: number) => (ticksPerCore > 0 ? round(ticks / ticksPerCore, 2) : 0)
  // Per process: a process that started during the phase counts from zero; one that ended is lost.
  const group = (name: string) => {
    let ticks = 0
    for (const [pid, now] of after.processes) {
      if (now.group === name) ticks += now.ticks - (before.processes.get(pid)?.ticks ?? 0)
    }
    return asCores(ticks)
  }
  return {
    machine_busy: asCores(after.busyTicks - before.busyTicks),
    load_generator: round((after.loadGenerator_us - before.loadGenerator_us) / 1_000 / (after.at_ms - before.at_ms), 2),
    server: group("server"),
    workers: group("workers"),
    postgres: group("postgres"),
    redis: group("redis"),
    kafka: group("kafka")
  }
}

// --- the workloads ---------------------------------------------------------------------------------

const createBody = JSON.stringify({ amount: 1050, currency: "USD", payment_method: "pm_card_visa" })

interface SingleRequest {
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | undefined
}

interface Workload {
  readonly name: WorkloadName
  readonly description: string
  /** Closed loop: every connection sends its next request when the previous answer arrives. */
  readonly options: (target: Target) => autocannon.Options
  /** The same request, one at a time, for the open-loop (fixed-rate) measurement. */
  readonly single: (target: Target) => SingleRequest
  /** The status every answer must have. */
  readonly expectedStatus: number
}

const workloads = (replayKey: string, replayBody: string): ReadonlyArray<Workload> => {
  let sequence = 0
  return [
    {
      name: "reference",
      description: "GET /health/live",
      expectedStatus: 200,
      options: (target) => ({ url: `${target.baseUrl}/health/live` }),
      single: () => ({ method: "GET", path: "/health/live", headers: {}, body: undefined })
    },
    {
      name: "replays",
      description: "POST /v1/payments, one Idempotency-Key, same body (stored response)",
      expectedStatus: 201,
      options: (target) => ({
        url: `${target.baseUrl}/v1/payments`,
        method: "POST",
        headers: { authorization: `Bearer ${target.apiKey}`, "content-type": "application/json", "idempotency-key": replayKey },
        body: createBody,
        expectBody: replayBody
      }),
      single: (target) => ({
        method: "POST",
        path: "/v1/payments",
        headers: { authorization: `Bearer ${target.apiKey}`, "content-type": "application/json", "idempotency-key": replayKey },
        body: createBody
      })
    },
    {
      name: "creates",
      description: "POST /v1/payments, a new Idempotency-Key per request",
      expectedStatus: 201,
      options: (target) => ({
        url: `${target.baseUrl}/v1/payments`,
        requests: [
          {
            method: "POST",
            path: "/v1/payments",
            body: createBody,
            setupRequest: (request) => ({
              ...request,
              headers: {
                ...request.headers,
                authorization: `Bearer ${target.apiKey}`,
                "content-type": "application/json",
                "idempotency-key": `bench-${runId}-${++sequence}`
              }
            })
          }
        ]
      }),
      single: (target) => ({
        method: "POST",
        path: "/v1/payments",
        headers: {
          authorization: `Bearer ${target.apiKey}`,
          "content-type": "application/json",
          "idempotency-key": `bench-${runId}-${++sequence}`
        },
        body: createBody
      })
    }
  ]
}

const fire = (options: autocannon.Options) =>
  Effect.tryPromise({
    try: () =>
      new Promise<autocannon.Result>((resolve, reject) => {
        autocannon(options, (error, result) => (error === null ? resolve(result) : reject(error)))
      }),
    catch: (cause) => (cause instanceof Error ? cause : new Error(String(cause)))
  })

/** Open-loop latencies are cut off here (a request still unanswered counts as an error). */
const openLoopTimeout_ms = 10_000
/** Requests in flight at most; beyond it the server is not keeping up and the rest are skipped (counted). */
const openLoopInFlight_max = 2_000

/**
 * Open loop: requests leave at evenly spaced instants, whatever the answers do, over at most
 * `connections` keep-alive sockets; each latency is measured from the instant the request was
 * DUE, so a server that falls behind shows it (no coordinated omission). This is the latency a
 * client sees at a given load, as opposed to the closed loop's latency at saturation.
 */
const openLoop = (workload: Workload, target: Target, rate_per_s: number, duration_s: number) =>
  Effect.promise(
    () =>
      new Promise<{ latencies_ms: Array<number>; statuses: Record<string, number>; errors: number; skipped: number; sent: number }>((resolve) => {
        const agent = new Agent({ keepAlive: true, maxSockets: settings.connections })
        const url = new URL(target.baseUrl)
        const latencies_ms: Array<number> = []
        const statuses: Record<string, number> = {}
        let errors = 0
        let skipped = 0
        let sent = 0
        let inFlight = 0
        const total = Math.max(1, Math.round(rate_per_s * duration_s))
        const interval_ms = 1_000 / rate_per_s
        const started = performance.now()
        let next = 0
        const settle = () => {
          if (next >= total && inFlight === 0) {
            agent.destroy()
            resolve({ latencies_ms, statuses, errors, skipped, sent })
          }
        }
        const send = (due: number) => {
          if (inFlight >= openLoopInFlight_max) {
            skipped++
            return
          }
          const spec = workload.single(target)
          inFlight++
          sent++
          const request = httpRequest(
            { host: url.hostname, port: url.port, method: spec.method, path: spec.path, headers: spec.headers, agent, timeout: openLoopTimeout_ms },
            (response) => {
              response.resume()
              response.once("end", () => {
                latencies_ms.push(performance.now() - due)
                const status = String(response.statusCode ?? 0)
                statuses[status] = (statuses[status] ?? 0) + 1
                inFlight--
                settle()
              })
            }
          )
          request.once("timeout", () => request.destroy(new Error("timeout")))
          request.once("error", () => {
            errors++
            inFlight--
            settle()
          })
          request.end(spec.body)
        }
        const tick = () => {
          const now = performance.now()
          while (next < total && started + next * interval_ms <= now) send(started + next++ * interval_ms)
          if (next < total) setTimeout(tick, Math.max(0, started + next * interval_ms - performance.now()))
          else settle()
        }
        tick()
      })
  )

const percentileOf = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? Number.NaN : round(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN, 2)
}

const measureOpenLoop = (workload: Workload, target: Target, rate_per_s: number) =>
  Effect.gen(function* () {
    const run = yield* openLoop(workload, target, rate_per_s, settings.duration_s)
    const unexpected = Object.keys(run.statuses).filter((status) => Number(status) !== workload.expectedStatus)
    return {
      offered_per_s: rate_per_s,
      sent: run.sent,
      skipped: run.skipped,
      errors: run.errors,
      statuses: run.statuses,
      unexpected_statuses: unexpected.length,
      latency_ms_p50: percentileOf(run.latencies_ms, 0.5),
      latency_ms_p90: percentileOf(run.latencies_ms, 0.9),
      latency_ms_p99: percentileOf(run.latencies_ms, 0.99),
      latency_ms_max: percentileOf(run.latencies_ms, 1)
    }
  })

const measure = (workload: Workload, target: Target, openLoop = true) =>
  Effect.gen(function* () {
    const base = { connections: settings.connections, timeout: 10, ...workload.options(target) }
    if (settings.warmup_s > 0) yield* fire({ ...base, duration: settings.warmup_s })
    const before = sampleCpu(target.serverPid, target.workerPids)
    const result = yield* fire({ ...base, duration: settings.duration_s })
    const after = sampleCpu(target.serverPid, target.workerPids)
    const statuses = Object.fromEntries(Object.entries(result.statusCodeStats).map(([status, stats]) => [status, stats.count]))
    const unexpected = Object.entries(statuses).filter(([status]) => Number(status) !== workload.expectedStatus)
    const cpu = coresBetween(before, after)
    // CPU per request is what contention on a shared machine changes least: it says what a core buys.
    const perRequest_ms = (cores: number) => (result.requests.total > 0 ? round((cores * result.duration * 1_000) / result.requests.total, 3) : Number.NaN)
    return {
      name: workload.name,
      description: workload.description,
      requests_total: result.requests.total,
      requests_per_s: round(result.requests.average, 0),
      latency_ms_p50: result.latency.p50,
      latency_ms_p90: result.latency.p90,
      latency_ms_p99: result.latency.p99,
      latency_ms_max: result.latency.max,
      latency_ms_mean: round(result.latency.mean, 2),
      statuses,
      errors: result.errors,
      timeouts: result.timeouts,
      mismatches: result.mismatches,
      unexpected_statuses: unexpected.length,
      cpu_cores: cpu,
      cpu_ms_per_request: { server: perRequest_ms(cpu.server), workers: perRequest_ms(cpu.workers), postgres: perRequest_ms(cpu.postgres), redis: perRequest_ms(cpu.redis) },
      // The same requests at a fraction of the throughput just measured: latency below saturation.
      open_loop: openLoop
        ? yield* measureOpenLoop(workload, target, Math.max(1, Math.round(result.requests.average * settings.openLoopFraction)))
        : { offered_per_s: 0, sent: 0, skipped: 0, errors: 0, statuses: {}, unexpected_statuses: 0, latency_ms_p50: Number.NaN, latency_ms_p90: Number.NaN, latency_ms_p99: Number.NaN, latency_ms_max: Number.NaN }
    }
  })

// --- the full flow: create → authorize → settle, one payment per loop --------------------------------

/**
 * `settings.connections` loops, each doing create → authorize → settle (new keys) back to back for
 * `duration_s`: payments settled per second, the issue's "full flow" (target ≥ 0.25× TPC-B).
 */
/** Rounds of flow loops started in this run (warm-ups included): part of their keys. */
let flowRounds = 0

const flowPhase = (target: Target, duration_s: number) =>
  Effect.promise(async () => {
    let deadline = 0
    let flows = 0
    let failures = 0
    const latencies_ms: Array<number> = []
    const post = async (path: string, key: string, body: string | undefined) => {
      const response = await fetch(`${target.baseUrl}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${target.apiKey}`, "content-type": "application/json", "idempotency-key": key },
        ...(body === undefined ? {} : { body }),
        signal: AbortSignal.timeout(10_000)
      })
      // Every request of the flow is new work: a replayed answer means reused keys (a failure).
      if (response.headers.get("idempotent-replayed") === "true") throw new Error(`${path}: a replay, not new work (reused key ${key})`)
      return { status: response.status, text: await response.text() }
    }
    const loop = async (loopIndex: number) => {
      for (let index = 0; performance.now() < deadline; index++) {
        const started = performance.now()
        // Keys unique to this round: a phase run again (warm-up, the preloaded database) under the
        // same keys would replay the stored answers instead of doing the work.
        const key = `flow-${runId}-${flowRound}-${loopIndex}-${index}`
        try {
          const created = await post("/v1/payments", `${key}-c`, createBody)
          const parsed: unknown = created.status === 201 ? JSON.parse(created.text) : undefined
          const id = typeof parsed === "object" && parsed !== null ? Reflect.get(parsed, "id") : undefined
          if (typeof id !== "string") throw new Error(`create: ${created.status}`)
          if ((await post(`/v1/payments/${id}/authorize`, `${key}-a`, undefined)).status !== 200) throw new Error("authorize")
          if ((await post(`/v1/payments/${id}/settle`, `${key}-s`, undefined)).status !== 200) throw new Error("settle")
          flows++
          latencies_ms.push(performance.now() - started)
        } catch {
          failures++
        }
      }
    }
    let flowRound = 0
    const run = (seconds: number) => {
      flowRound = ++flowRounds
      deadline = performance.now() + seconds * 1_000
      return Promise.all(Array.from({ length: settings.connections }, (_, index) => loop(index)))
    }
    // Warm-up, as every workload has (BENCH_WARMUP_S), not counted: the first authorizes and
    // settles of a server compile its code paths and every pooled backend's plans and PL/pgSQL.
    await run(settings.warmup_s)
    flows = 0
    failures = 0
    latencies_ms.length = 0
    const before = sampleCpu(target.serverPid, target.workerPids)
    await run(duration_s)
    const cpu = coresBetween(before, sampleCpu(target.serverPid, target.workerPids))
    const perFlow_ms = (cores: number) => (flows > 0 ? round((cores * duration_s * 1_000) / flows, 3) : Number.NaN)
    return {
      name: "flow",
      description: "create → authorize → settle per loop",
      flows,
      failures,
      flows_per_s: round(flows / duration_s, 1),
      latency_ms_p50: percentileOf(latencies_ms, 0.5),
      latency_ms_p99: percentileOf(latencies_ms, 0.99),
      cpu_cores: cpu,
      cpu_ms_per_flow: { server: perFlow_ms(cpu.server), workers: perFlow_ms(cpu.workers), postgres: perFlow_ms(cpu.postgres) }
    }
  })

// --- the cost probe (round trips and commits per operation) -----------------------------------------

const postStatus = async (url: string, apiKey: string, key: string, body: string | undefined): Promise<{ status: number; text: string }> => {
  const response = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json", "idempotency-key": key },
    ...(body === undefined ? {} : { body }),
    signal: AbortSignal.timeout(10_000)
  })
  return { status: response.status, text: await response.text() }
}

/** create (new key each), replay (one key), authorize and settle (of the payments created). */
const probeOperations = (): ReadonlyArray<ProbeOperation> => {
  const paymentIds: Array<string> = []
  const created = (index: number) => paymentIds[index + 1] ?? "pay_missing"
  const replayKey = `probe-replay-${runId}`
  return [
    {
      name: "create",
      expectedStatus: 201,
      send: async (baseUrl, apiKey, index) => {
        const answer = await postStatus(`${baseUrl}/v1/payments`, apiKey, `probe-create-${runId}-${index}`, createBody)
        const parsed: unknown = answer.status === 201 ? JSON.parse(answer.text) : undefined
        const id = typeof parsed === "object" && parsed !== null ? Reflect.get(parsed, "id") : undefined
        if (typeof id === "string") paymentIds.push(id)
        return answer.status
      }
    },
    {
      name: "replay",
      expectedStatus: 201,
      send: async (baseUrl, apiKey) => (await postStatus(`${baseUrl}/v1/payments`, apiKey, replayKey, createBody)).status
    },
    {
      name: "authorize",
      expectedStatus: 200,
      send: async (baseUrl, apiKey, index) =>
        (await postStatus(`${baseUrl}/v1/payments/${created(index)}/authorize`, apiKey, `probe-authorize-${runId}-${index}`, undefined)).status
    },
    {
      name: "settle",
      expectedStatus: 200,
      send: async (baseUrl, apiKey, index) =>
        (await postStatus(`${baseUrl}/v1/payments/${created(index)}/settle`, apiKey, `probe-settle-${runId}-${index}`, undefined)).status
    }
  ]
}

const printCosts = (costs: ReadonlyArray<OperationCost>) => {
  if (costs.length === 0) return
  console.log("")
  console.log("cost per operation (private Postgres + Redis, sequential requests, request path only):")
  console.log("operation   postgres round trips  redis round trips  total  durable commits")
  for (const c of costs) {
    console.log(`${c.operation.padEnd(10)} ${String(c.postgres_round_trips_per_op).padStart(21)} ${String(c.redis_round_trips_per_op).padStart(18)} ${String(c.round_trips_per_op).padStart(6)} ${String(c.durable_commits_per_op).padStart(16)}`)
  }
  console.log("")
  console.log("where Postgres's time goes per operation (pg_stat_statements, same probe; ms per operation; * = inside a function or trigger):")
  for (const c of costs) {
    console.log(`${c.operation}: execution ${c.postgres_exec_ms_per_op} ms, planning ${c.postgres_plan_ms_per_op} ms`)
    for (const t of c.statement_times.slice(0, 6)) {
      console.log(`  ${String(t.exec_ms_per_op).padStart(7)} exec ${String(t.plan_ms_per_op).padStart(6)} plan ${String(t.calls_per_op).padStart(5)} calls ${t.toplevel ? " " : "*"} ${t.query.slice(0, 80)}`)
    }
  }
}

// --- the run ----------------------------------------------------------------------------------------

const program = Effect.gen(function* () {
  const apiUrl = process.env["API_URL"]
  const apiKeyFromEnv = process.env["API_KEY"]
  if ((apiUrl === undefined) !== (apiKeyFromEnv === undefined)) {
    return yield* Effect.die(new Error("set both API_URL and API_KEY, or neither (then the bench starts its own server)"))
  }
  const own = apiUrl !== undefined && apiKeyFromEnv !== undefined ? undefined : yield* ownServer
  const target = own === undefined ? yield* externalServer(apiUrl ?? "", apiKeyFromEnv ?? "") : own.target

  // The replayed key: created once, then every request with it must be answered by these bytes.
  const replayKey = `bench-replay-${runId}`
  const post = { method: "POST", headers: { authorization: `Bearer ${target.apiKey}`, "content-type": "application/json", "idempotency-key": replayKey }, body: createBody }
  const first = yield* http(`${target.baseUrl}/v1/payments`, post)
  const second = yield* http(`${target.baseUrl}/v1/payments`, post)
  if (first.status !== 201 || second.status !== 201 || second.headers.get("idempotent-replayed") !== "true" || second.text !== first.text) {
    return yield* Effect.die(new Error(`replay check failed: ${first.status} ${first.text.slice(0, 200)} / ${second.status} ${second.headers.get("idempotent-replayed")}`))
  }

  yield* log(`${settings.connections} connections, ${settings.warmup_s} s warm-up + ${settings.duration_s} s per workload, ${cpus().length} cores`)
  const chosen = workloads(replayKey, first.text).filter((workload) => settings.workloads.includes(workload.name))
  const results = yield* Effect.forEach(chosen, (workload) =>
    log(`${workload.name}: ${workload.description}`).pipe(Effect.andThen(measure(workload, target)))
  )

  const flow = settings.flow_s === 0 ? undefined : yield* log(`flow: create → authorize → settle, ${settings.connections} loops, ${settings.flow_s} s`).pipe(
    Effect.andThen(quietFirst(target)),
    Effect.andThen(flowPhase(target, settings.flow_s))
  )

  // The same create and replay workloads on N instances (node:cluster), same database, same run.
  const clustered = own === undefined || settings.compare_instances < 2 ? [] : yield* Effect.scoped(Effect.gen(function* () {
    const clusterTarget = yield* clusterServer(own.databaseUrl, target.apiKey, settings.compare_instances)
    const chosenHere = chosen.filter((workload) => workload.name === "creates" || workload.name === "replays")
    return yield* Effect.forEach(chosenHere, (workload) =>
      log(`${workload.name} on ${settings.compare_instances} instances`).pipe(Effect.andThen(measure(workload, clusterTarget, false))))
  }))

  // The same workloads once the database holds millions of rows (bench/api/preload.sql).
  const preload = own === undefined || settings.preload_payments === 0 ? { results: [], flow: undefined } : yield* Effect.gen(function* () {
    const entries = settings.preload_entries > 0 ? settings.preload_entries : settings.preload_payments * 10
    const cliOutput = yield* runCommand(process.execPath, ["packages/cli/src/main.ts", "merchants", "create", "Preloaded merchant"], { DATABASE_URL: own.databaseUrl }, 60_000)
    const parsed: unknown = JSON.parse(cliOutput)
    const merchantId = typeof parsed === "object" && parsed !== null ? Reflect.get(parsed, "merchant_id") : undefined
    if (typeof merchantId !== "string") return yield* Effect.die(new Error(`no merchant_id in the CLI's output: ${cliOutput}`))
    yield* log(`preloading ${settings.preload_payments} payments and ${entries} ledger entries with SQL`)
    const started_ms = performance.now()
    yield* runCommand("psql", [own.databaseUrl, "-q", "-v", `merchant=${merchantId}`, "-v", `payments=${settings.preload_payments}`, "-v", `entries=${entries}`, "-f", "bench/api/preload.sql"], {}, 3_600_000)
    yield* log(`preloaded in ${round((performance.now() - started_ms) / 1_000, 1)} s`)
    const chosenHere = chosen.filter((workload) => workload.name === "creates" || workload.name === "replays")
    const results = yield* Effect.forEach(chosenHere, (workload) =>
      log(`${workload.name} on the preloaded database`).pipe(Effect.andThen(measure(workload, target, false))))
    // Settles too (issue 18: "create and settle rates within 20 %"): the whole flow again.
    const flowHere = settings.flow_s === 0 ? undefined : yield* log(`flow on the preloaded database, ${settings.flow_s} s`).pipe(
      Effect.andThen(quietFirst(target)),
      Effect.andThen(flowPhase(target, settings.flow_s))
    )
    return { results, flow: flowHere }
  })
  const preloaded = preload.results

  // Creates on a server of the other layout (consumers and sender inside it, or beside it).
  const createsWorkload = chosen.find((workload) => workload.name === "creates")
  const layouts = own === undefined || settings.compare_layout === 0 || createsWorkload === undefined ? [] : yield* Effect.gen(function* () {
    yield* own.stopWorkers
    return [yield* layoutComparison(own.databaseUrl, target.apiKey, otherLayout(settings.server_layout), createsWorkload)]
  })

  // pgbench TPC-B on the same Postgres, right after the HTTP phases: the database's own yardstick.
  const pgbench = settings.pgbench_clients === 0 ? undefined : yield* Effect.gen(function* () {
    yield* log(`pgbench TPC-B: -c ${settings.pgbench_clients} -s ${settings.pgbench_scale}, ${settings.duration_s} s`)
    const runPgbench = yield* pgbenchDatabase(baseDatabaseUrl, `pay_bench_pgbench_${runId}`, settings.pgbench_scale)
    return yield* runPgbench(settings.pgbench_clients, settings.duration_s)
  })
  const costs = settings.probe_requests === 0 ? [] : yield* log(`cost probe: ${settings.probe_requests} requests per operation, private Postgres + Redis`).pipe(
    Effect.andThen(probeCosts({
      repositoryRoot,
      brokers,
      topicPrefix,
      logFile: join(tmpdir(), `pay-bench-api-${runId}-probe.log`),
      psql: (url, statement) => runCommand("psql", [url, "-v", "ON_ERROR_STOP=1", "-qAtc", statement], {}, 60_000),
      cli: (databaseUrl, args) => runCommand(process.execPath, ["packages/cli/src/main.ts", ...args], { DATABASE_URL: databaseUrl }, 60_000),
      waitForReady
    }, probeOperations(), settings.probe_requests))
  )

  const byName = (name: string) => results.find((result) => result.name === name)
  const reference = byName("reference")
  const replays = byName("replays")
  const creates = byName("creates")
  if (reference === undefined) return yield* Effect.die(new Error("the reference workload is missing"))
  const ratio = (value: number, to: number) => (to > 0 ? round(value / to, 2) : Number.NaN)
  const ratios = {
    ...(replays === undefined ? {} : {
      replays_throughput_to_reference: ratio(replays.requests_per_s, reference.requests_per_s),
      replays_p99_to_reference: ratio(replays.latency_ms_p99, reference.latency_ms_p99)
    }),
    ...(creates === undefined ? {} : {
      creates_throughput_to_reference: ratio(creates.requests_per_s, reference.requests_per_s),
      creates_p99_to_reference: ratio(creates.latency_ms_p99, reference.latency_ms_p99)
    })
  }
  const createCost = costs.find((cost) => cost.operation === "create")
  const pgbenchRatios = pgbench === undefined ? {} : {
    pgbench_tps: pgbench.tps,
    ...(flow === undefined ? {} : { flows_to_pgbench: ratio(flow.flows_per_s, pgbench.tps) }),
    ...(creates === undefined ? {} : { creates_to_pgbench: ratio(creates.requests_per_s, pgbench.tps) }),
    ...(replays === undefined ? {} : { replays_to_pgbench: ratio(replays.requests_per_s, pgbench.tps) })
  }
  const verdicts = {
    ...(flow === undefined || pgbench === undefined ? {} : {
      flows_to_pgbench: { target_ratio_min: targets.flow_to_pgbench_ratio_min, measured_ratio: ratio(flow.flows_per_s, pgbench.tps), met: ratio(flow.flows_per_s, pgbench.tps) >= targets.flow_to_pgbench_ratio_min }
    }),
    ...(creates === undefined || pgbench === undefined ? {} : {
      creates_to_pgbench: { target_ratio_min: targets.create_to_pgbench_ratio_min, measured_ratio: ratio(creates.requests_per_s, pgbench.tps), met: ratio(creates.requests_per_s, pgbench.tps) >= targets.create_to_pgbench_ratio_min }
    }),
    ...(creates === undefined ? {} : {
      create_server_cpu: { target_ms_max: targets.create_server_cpu_ms_max, measured_ms: creates.cpu_ms_per_request.server, met: creates.cpu_ms_per_request.server <= targets.create_server_cpu_ms_max },
      create_postgres_cpu: { target_ms_max: targets.create_postgres_cpu_ms_max, measured_ms: creates.cpu_ms_per_request.postgres, met: creates.cpu_ms_per_request.postgres <= targets.create_postgres_cpu_ms_max }
    }),
    ...(createCost === undefined ? {} : {
      create_round_trips: { target_max: targets.create_round_trips_max, measured: createCost.round_trips_per_op, met: createCost.round_trips_per_op <= targets.create_round_trips_max },
      create_durable_commits: { target_max: targets.create_durable_commits_max, measured: createCost.durable_commits_per_op, met: createCost.durable_commits_per_op <= targets.create_durable_commits_max }
    }),
    ...(replays === undefined ? {} : {
      replay_p99: { target_ms_max: targets.replay_latency_ms_p99_max, measured_ms: replays.latency_ms_p99, met: replays.latency_ms_p99 <= targets.replay_latency_ms_p99_max },
      replay_throughput: {
        target_ratio_min: targets.replay_throughput_ratio_min,
        measured_ratio: ratio(replays.requests_per_s, reference.requests_per_s),
        met: ratio(replays.requests_per_s, reference.requests_per_s) >= targets.replay_throughput_ratio_min
      }
    }),
    ...(creates === undefined ? {} : {
      create_p99: { target_ms_max: targets.create_latency_ms_p99_max, measured_ms: creates.latency_ms_p99, met: creates.latency_ms_p99 <= targets.create_latency_ms_p99_max }
    })
  }
  const correct = (flow === undefined || flow.failures === 0) && (preload.flow === undefined || preload.flow.failures === 0) && costs.every((cost) => cost.unexpected_statuses === 0) && [...results, ...clustered, ...preloaded, ...layouts].every((result) =>
    result.errors === 0 && result.timeouts === 0 && result.mismatches === 0 && result.unexpected_statuses === 0 &&
    result.open_loop.errors === 0 && result.open_loop.unexpected_statuses === 0
  )

  console.log("")
  const cell = (value: number | string, width: number) => String(value).padStart(width)
  console.log(`server layout: ${settings.server_layout} (${settings.server_layout === "split" ? "consumers and webhook sender in processes of their own, CPU in the workers column" : "consumers and webhook sender inside the server"})`)
  console.log(`workload     req/s  p50 ms  p99 ms  max ms  errors  unexpected | cores: server loadgen postgres busy/${cpus().length} | cpu ms/req: server postgres workers`)
  for (const r of results) {
    const c = r.cpu_cores
    console.log(
      `${r.name.padEnd(10)} ${cell(r.requests_per_s, 7)} ${cell(r.latency_ms_p50, 7)} ${cell(r.latency_ms_p99, 7)} ${cell(r.latency_ms_max, 7)} ${cell(r.errors + r.timeouts, 7)} ${cell(r.unexpected_statuses + r.mismatches, 11)} |` +
        ` ${cell(c.server, 13)} ${cell(c.load_generator, 7)} ${cell(c.postgres, 8)} ${cell(c.machine_busy, 6)} | ${cell(r.cpu_ms_per_request.server, 17)} ${cell(r.cpu_ms_per_request.postgres, 8)} ${cell(r.cpu_ms_per_request.workers, 7)}`
    )
  }
  console.log("")
  console.log("")
  console.log(`open loop at ${settings.openLoopFraction * 100}% of each closed-loop throughput (latency from the instant each request was due):`)
  console.log(`workload   offered/s    sent  p50 ms  p90 ms  p99 ms  max ms  errors+skipped  unexpected`)
  for (const r of results) {
    const o = r.open_loop
    console.log(
      `${r.name.padEnd(10)} ${cell(o.offered_per_s, 9)} ${cell(o.sent, 7)} ${cell(o.latency_ms_p50, 7)} ${cell(o.latency_ms_p90, 7)} ${cell(o.latency_ms_p99, 7)} ${cell(o.latency_ms_max, 7)} ${cell(o.errors + o.skipped, 15)} ${cell(o.unexpected_statuses, 11)}`
    )
  }
  console.log("")
  if (pgbench !== undefined) console.log(`pgbench TPC-B (${pgbench.command}): ${pgbench.tps} tps, mean latency ${pgbench.latency_ms_mean} ms`)
  for (const [name, value] of Object.entries(pgbenchRatios)) if (name !== "pgbench_tps") console.log(`${name}: ${value}x`)
  for (const [name, value] of Object.entries(ratios)) console.log(`${name}: ${value}x`)
  if (flow !== undefined) console.log(`flow (create → authorize → settle): ${flow.flows_per_s} payments/s, p50 ${flow.latency_ms_p50} ms, p99 ${flow.latency_ms_p99} ms, failures ${flow.failures}, cpu ms/payment server ${flow.cpu_ms_per_flow.server} postgres ${flow.cpu_ms_per_flow.postgres}`)
  printCosts(costs)
  const instanceRatios = Object.fromEntries(clustered.map((r) => {
    const single = byName(r.name)
    return [`${r.name}_${settings.compare_instances}_instances_to_1`, single === undefined ? Number.NaN : ratio(r.requests_per_s, single.requests_per_s)]
  }))
  for (const r of clustered) {
    console.log(`${r.name} on ${settings.compare_instances} instances: ${r.requests_per_s} req/s, p99 ${r.latency_ms_p99} ms, server cores ${r.cpu_cores.server}, cpu ms/req server ${r.cpu_ms_per_request.server} postgres ${r.cpu_ms_per_request.postgres}`)
  }
  for (const [name, value] of Object.entries(instanceRatios)) console.log(`${name}: ${value}x`)
  const preloadRatios: Record<string, number> = Object.fromEntries(preloaded.map((r) => {
    const empty = byName(r.name)
    return [`${r.name}_preloaded_to_empty`, empty === undefined ? Number.NaN : ratio(r.requests_per_s, empty.requests_per_s)]
  }))
  for (const r of preloaded) console.log(`${r.name} on the preloaded database: ${r.requests_per_s} req/s, p99 ${r.latency_ms_p99} ms, cpu ms/req server ${r.cpu_ms_per_request.server} postgres ${r.cpu_ms_per_request.postgres}`)
  if (preload.flow !== undefined && flow !== undefined) {
    preloadRatios["flow_preloaded_to_empty"] = ratio(preload.flow.flows_per_s, flow.flows_per_s)
    console.log(`flow on the preloaded database: ${preload.flow.flows_per_s} payments/s, cpu ms/payment server ${preload.flow.cpu_ms_per_flow.server} postgres ${preload.flow.cpu_ms_per_flow.postgres}`)
  }
  for (const [name, value] of Object.entries(preloadRatios)) console.log(`${name}: ${value}x`)
  const layoutRatios = Object.fromEntries(layouts.flatMap((r) => {
    const main = byName(r.name)
    return main === undefined ? [] : [[`${r.name}_${r.layout}_to_${settings.server_layout}`, ratio(r.requests_per_s, main.requests_per_s)]]
  }))
  for (const r of layouts) {
    console.log(`${r.name} with the server ${r.layout}: ${r.requests_per_s} req/s${pgbench === undefined ? "" : ` (${ratio(r.requests_per_s, pgbench.tps)}x pgbench)`}, p99 ${r.latency_ms_p99} ms, open-loop p99 ${r.open_loop.latency_ms_p99} ms, cpu ms/req server ${r.cpu_ms_per_request.server} workers ${r.cpu_ms_per_request.workers} postgres ${r.cpu_ms_per_request.postgres}`)
  }
  for (const [name, value] of Object.entries(layoutRatios)) console.log(`${name}: ${value}x`)
  for (const [name, verdict] of Object.entries(verdicts)) console.log(`target ${name}: ${JSON.stringify(verdict)}`)
  console.log(`every answer as expected (status, replay bytes, no errors): ${correct}`)
  const observability = settings.observability_rounds === 0
    ? undefined
    : yield* observabilityPhase(settings.observability_rounds).pipe(
      Effect.tap((results) => Effect.sync(() => console.log(`observability on vs off (ratio_on_to_off per workload): ${JSON.stringify(results)}`))),
      Effect.catch((error) => Effect.as(log(`observability phase failed: ${error.message}`), { failed: error.message }))
    )

  const report = {
    benchmark: "api",
    at: new Date().toISOString(),
    command: "node bench/api/run.ts",
    settings,
    machine: { cores: cpus().length, cpu_model: cpus()[0]?.model ?? "unknown", node: process.version, load_average_1m_at_end: round(loadavg()[0] ?? 0, 2) },
    server: apiUrl === undefined ? { own: true, layout: settings.server_layout, log: target.serverLog, env_extra: extraServerEnv() } : { own: false, url: target.baseUrl },
    layouts: { compared: layouts.map((r) => r.layout), results: layouts, ratios: layoutRatios },
    results,
    ratios: { ...ratios, ...pgbenchRatios },
    pgbench,
    flow,
    costs,
    instances: { compared: settings.compare_instances, results: clustered, ratios: instanceRatios },
    preload: { payments: settings.preload_payments, results: preloaded, flow: preload.flow, ratios: preloadRatios },
    targets: verdicts,
    observability,
    correct
  }
  const directory = fileURLToPath(new URL("../results/", import.meta.url))
  mkdirSync(directory, { recursive: true })
  const file = join(directory, `api-${new Date().toISOString().replaceAll(":", "-").replaceAll(".", "-")}.json`)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
  yield* log(`results written to ${file}`)
  if (!correct) process.exitCode = 1
})

Effect.runPromise(Effect.scoped(program)).catch((error: unknown) => {
  console.error("[bench:api] failed:", error)
  process.exitCode = 1
})
