/**
 * Ledger benchmark: the Ledger service against PostgreSQL's own TPC-B (pgbench), on the same
 * server, in the same run.
 *
 *   pnpm bench:ledger                                    # defaults below
 *   node bench/ledger/run.ts --workers=8 --duration=8 --rounds=3 --batch=100 --scale=10
 *
 * Phases, each `duration` seconds (ledger phases after a `warmup`), `workers` concurrent workers
 * on a pool of `workers` connections:
 *   pgbench         pgbench TPC-B (-s scale, -c workers -j 2) on a database of its own
 *   single-1000     one transfer per call through Ledger.postTransaction among 1,000 accounts
 *   single-hot-10   the same among 10 hot accounts
 *   batch-N-1000    Ledger.postTransactions: N transfers per call (one database transaction)
 * The machine is shared and its load moves, so the four phases run interleaved, `rounds` times;
 * each phase's figure is the median over the rounds, and each ratio is a median over rounds too
 * (phase / pgbench of the same round). Latency percentiles pool every call of every round.
 * Prints transfers/s, p50 and p99 latency and the ratio to pgbench, checks ledger_verify() at
 * the end, and writes the figures as JSON under bench/results/. Every database it creates
 * (pay_bench_*) is dropped at the end.
 */
import { decodeRows } from "../../packages/infra/src/index.ts"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { MigrationDatabaseUrl } from "../../packages/infra/src/Config.ts"
import { MigrationsLive, postgresLayer } from "../../packages/infra/src/Postgres.ts"
import { Ledger } from "../../packages/ledger/src/Ledger.ts"
import type { PostingRequest } from "../../packages/ledger/src/Model.ts"

// --- options -------------------------------------------------------------------------------------

const option = (name: string, fallback: number, min: number, max: number): number => {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`))
  const raw = arg?.slice(name.length + 3) ?? process.env[`LEDGER_BENCH_${name.toUpperCase()}`]
  const value = raw === undefined ? fallback : Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`--${name} must be an integer from ${min} to ${max}, got ${raw}`)
  }
  return value
}

const options = {
  workers: option("workers", 8, 1, 64),
  duration_s: option("duration", 8, 1, 600),
  rounds: option("rounds", 3, 1, 20),
  warmup_s: option("warmup", 1, 0, 60),
  batch: option("batch", 100, 2, 1_000),
  scale: option("scale", 10, 1, 100)
}
const accountCount = 1_000
const hotAccountCount = 10
/** Every latency sample is kept (for exact percentiles) up to this many per phase. */
const latencySamples_max = 5_000_000

// --- databases -------------------------------------------------------------------------------------

const quoteIdent = (name: string): string => {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`unsafe database name ${name}`)
  return `"${name}"`
}

const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

const adminSql = <A, E>(serverUrl: string, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* f(sql)
  }).pipe(Effect.provide(postgresLayer({
    url: Redacted.make(withDatabase(serverUrl, "postgres")),
    maxConnections: 1,
    applicationName: "pay-bench-admin"
  })))

/** A database of our own for the duration of the scope, dropped (FORCE) when it closes. */
const scratchDatabase = (serverUrl: string, prefix: string) => {
  const name = `${prefix}_${randomBytes(4).toString("hex")}`
  return Effect.acquireRelease(
    adminSql(serverUrl, (sql) => sql.unsafe(`CREATE DATABASE ${quoteIdent(name)}`)).pipe(Effect.as(name)),
    () => adminSql(serverUrl, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)).pipe(Effect.orDie)
  )
}

// --- pgbench ---------------------------------------------------------------------------------------

const run = (command: string, args: ReadonlyArray<string>, cwd?: string) =>
  Effect.callback<string, Error>((resume) => {
    const child = execFile(command, [...args], { cwd, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, PGCONNECT_TIMEOUT: "5" } },
      (error, stdout, stderr) => {
        if (error !== null) resume(Effect.fail(new Error(`${command} ${args.join(" ")} failed: ${error.message}\n${stderr}`)))
        else resume(Effect.succeed(`${stdout}${stderr}`))
      })
    return Effect.sync(() => child.kill("SIGTERM"))
  })

const pgbenchConnection = (serverUrl: string) => {
  const url = new URL(serverUrl)
  return ["-h", url.hostname, "-p", url.port === "" ? "5432" : url.port, "-U", decodeURIComponent(url.username)]
}

interface PhaseResult {
  readonly phase: string
  readonly command?: string
  readonly transfers: number
  readonly duration_s: number
  readonly transfers_per_s: number
  readonly latency_ms_p50: number
  readonly latency_ms_p99: number
  readonly latency_ms_mean: number
  /** Every call's latency, sorted (pooled across rounds for the percentiles). */
  readonly latencies_ms: ReadonlyArray<number>
}

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN

const summarize = (phase: string, latencies_ms: Array<number>, duration_s: number, transfersPerCall: number, command?: string): PhaseResult => {
  const sorted = latencies_ms.sort((a, b) => a - b)
  const mean = sorted.reduce((a, b) => a + b, 0) / Math.max(sorted.length, 1)
  return {
    phase,
    ...(command === undefined ? {} : { command }),
    transfers: sorted.length * transfersPerCall,
    duration_s,
    transfers_per_s: (sorted.length * transfersPerCall) / duration_s,
    latency_ms_p50: percentile(sorted, 50),
    latency_ms_p99: percentile(sorted, 99),
    latency_ms_mean: mean,
    latencies_ms: sorted
  }
}

/** pgbench TPC-B; per-transaction latencies from its log (-l) give p50/p99 like ours. */
const pgbench = (serverUrl: string, database: string, phase: string) =>
  Effect.scoped(Effect.gen(function* () {
    const connection = pgbenchConnection(serverUrl)
    const logDirectory = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "pay-bench-pgbench-"))),
      (directory) => Effect.sync(() => rmSync(directory, { recursive: true, force: true }))
    )
    const args = [
      ...connection, "-n", "-c", String(options.workers), "-j", String(Math.min(2, options.workers)),
      "-T", String(options.duration_s), "-l", "--log-prefix", join(logDirectory, "tx"), database
    ]
    const output = yield* run("pgbench", args)
    const tps = Number(/tps = ([0-9.]+) \(without initial connection time\)/.exec(output)?.[1] ?? Number.NaN)
    const latencies: Array<number> = []
    for (const file of readdirSync(logDirectory)) {
      for (const line of readFileSync(join(logDirectory, file), "utf8").split("\n")) {
        const micros = Number(line.split(" ")[2])
        if (Number.isFinite(micros) && latencies.length < latencySamples_max) latencies.push(micros / 1_000)
      }
    }
    const summary = summarize(phase, latencies, options.duration_s, 1, `pgbench ${args.slice(connection.length).join(" ")}`)
    // pgbench's own TPS figure excludes connection time; prefer it to our count over the duration.
    return { ...summary, transfers_per_s: Number.isFinite(tps) ? tps : summary.transfers_per_s }
  }))

// --- ledger phases -----------------------------------------------------------------------------------

const code = (prefix: string, n: number) => `${prefix}:${n}:USD`
const randomInt = (below: number) => Math.floor(Math.random() * below)

/** A transfer between two distinct random accounts of the set, amount 1..1000 minor units. */
const transferAmong = (prefix: string, size: number, reference: string): PostingRequest => {
  const from = randomInt(size)
  const to = (from + 1 + randomInt(size - 1)) % size
  const amount_minor = BigInt(1 + randomInt(1_000))
  return {
    reference,
    description: "bench transfer",
    debits: [{ account: code(prefix, from), amount_minor, currency: "USD" }],
    credits: [{ account: code(prefix, to), amount_minor, currency: "USD" }]
  }
}

/**
 * Accounts that may not go negative (merchant payables), each funded with 10^12 from one funding
 * account first: transfers among them exercise the funds check on every posting.
 */
const createAccounts = (prefix: string, size: number) =>
  Effect.gen(function* () {
    const ledger = yield* Ledger
    yield* ledger.ensureAccount({ code: `${prefix}:funding:USD`, type: "asset", currency: "USD", allowNegative: true })
    for (let n = 0; n < size; n++) {
      yield* ledger.ensureAccount({ code: code(prefix, n), type: "liability", currency: "USD", allowNegative: false })
    }
    const funding: Array<PostingRequest> = Array.from({ length: size }, (_, n) => ({
      reference: `${prefix}-funding-${n}`,
      description: "bench funding",
      debits: [{ account: `${prefix}:funding:USD`, amount_minor: 1_000_000_000_000n, currency: "USD" }],
      credits: [{ account: code(prefix, n), amount_minor: 1_000_000_000_000n, currency: "USD" }]
    }))
    for (let i = 0; i < funding.length; i += 500) yield* ledger.postTransactions(funding.slice(i, i + 500))
  })

let referenceCounter = 0
const nextReference = (phase: string) => `${phase}-${process.pid}-${++referenceCounter}`

/** `workers` fibers call `post` until the deadline; returns one latency sample per call. */
const drive = (seconds: number, post: () => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function* () {
    const latencies: Array<number> = []
    const deadline = performance.now() + seconds * 1_000
    const worker = Effect.gen(function* () {
      while (performance.now() < deadline) {
        const start = performance.now()
        yield* post()
        if (latencies.length < latencySamples_max) latencies.push(performance.now() - start)
      }
    })
    yield* Effect.all(Array.from({ length: options.workers }, () => worker), { concurrency: "unbounded", discard: true })
    return latencies
  })

const ledgerPhase = (phase: string, transfersPerCall: number, post: () => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function* () {
    if (options.warmup_s > 0) yield* drive(options.warmup_s, post)
    const started = performance.now()
    const latencies = yield* drive(options.duration_s, post)
    const elapsed_s = (performance.now() - started) / 1_000
    return summarize(phase, latencies, elapsed_s, transfersPerCall)
  })

// --- the run -------------------------------------------------------------------------------------------

const format = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a")

const program = Effect.scoped(Effect.gen(function* () {
  // The schema owner (MIGRATION_DATABASE_URL, else DATABASE_URL, else the local stack's owner):
  // the bench creates, migrates and drops a database of its own, which the app role cannot.
  const serverUrl = Redacted.value(yield* MigrationDatabaseUrl)
  // The machine is shared: record how busy it was, so the figures can be read in context.
  const loadBefore = loadavg()
  const pgbenchDatabase = yield* scratchDatabase(serverUrl, "pay_bench_pgbench")
  const ledgerDatabase = yield* scratchDatabase(serverUrl, "pay_bench_ledger")

  console.log(
    `ledger bench: ${options.workers} workers, ${options.rounds} rounds of ${options.duration_s}s per phase, ` +
      `batch ${options.batch}, pgbench -s ${options.scale}`
  )
  yield* run("pgbench", [...pgbenchConnection(serverUrl), "-i", "-q", "-s", String(options.scale), pgbenchDatabase])

  const ledgerLayer = Ledger.layer.pipe(
    Layer.provideMerge(MigrationsLive),
    Layer.provideMerge(postgresLayer({
      url: Redacted.make(withDatabase(serverUrl, ledgerDatabase)),
      maxConnections: options.workers,
      applicationName: "pay-bench-ledger"
    }))
  )

  const median = (values: ReadonlyArray<number>): number => {
    const sorted = [...values].sort((a, b) => a - b)
    const middle = Math.floor(sorted.length / 2)
    return sorted.length % 2 === 1 ? sorted[middle] ?? Number.NaN : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2
  }

  const rounds = yield* Effect.gen(function* () {
    const ledger = yield* Ledger
    const sql = yield* SqlClient.SqlClient
    yield* createAccounts("bench", accountCount)
    yield* createAccounts("hot", hotAccountCount)
    // Fresh tables: give the planner real statistics, as a live database would have.
    yield* sql`ANALYZE`

    const perRound: Array<{ readonly pgbench: PhaseResult; readonly single: PhaseResult; readonly hot: PhaseResult; readonly batch: PhaseResult }> = []
    for (let round = 1; round <= options.rounds; round++) {
      const pgbenchResult = yield* pgbench(serverUrl, pgbenchDatabase, "pgbench")
      const single = yield* ledgerPhase("single-1000", 1, () =>
        ledger.postTransaction(transferAmong("bench", accountCount, nextReference("s"))))
      const hot = yield* ledgerPhase("single-hot-10", 1, () =>
        ledger.postTransaction(transferAmong("hot", hotAccountCount, nextReference("h"))))
      const batch = yield* ledgerPhase(`batch-${options.batch}-1000`, options.batch, () =>
        ledger.postTransactions(Array.from({ length: options.batch }, () =>
          transferAmong("bench", accountCount, nextReference("b")))))
      console.log(
        `  round ${round}: pgbench ${format(pgbenchResult.transfers_per_s)} tps, single ${format(single.transfers_per_s)}, ` +
          `hot ${format(hot.transfers_per_s)}, batch ${format(batch.transfers_per_s)} transfers/s`
      )
      perRound.push({ pgbench: pgbenchResult, single, hot, batch })
    }
    const discrepancies = yield* ledger.verify
    return { perRound, discrepancies: discrepancies.length }
  }).pipe(Effect.provide(ledgerLayer))

  type PhaseName = "pgbench" | "single" | "hot" | "batch"
  const combined = (name: PhaseName, target: number | null) => {
    const results = rounds.perRound.map((r) => r[name])
    const first = results[0]
    const latencies = results.flatMap((r) => r.latencies_ms).sort((a, b) => a - b)
    const ratios = rounds.perRound.map((r) => r[name].transfers_per_s / r.pgbench.transfers_per_s)
    return {
      phase: first?.phase ?? name,
      ...(first?.command === undefined ? {} : { command: first.command }),
      transfers_per_s_median: median(results.map((r) => r.transfers_per_s)),
      transfers_per_s_by_round: results.map((r) => r.transfers_per_s),
      latency_ms_p50: percentile(latencies, 50),
      latency_ms_p99: percentile(latencies, 99),
      ratio_to_pgbench_median: median(ratios),
      ratio_to_pgbench_by_round: ratios,
      target,
      met: target === null ? null : median(ratios) >= target
    }
  }
  const table = [
    combined("pgbench", null),
    combined("single", 1),
    combined("hot", 0.8),
    combined("batch", 5)
  ]
  console.log("")
  console.log("phase             transfers/s   p50 ms   p99 ms   ratio to pgbench   target")
  for (const row of table) {
    const ratio = row.target === null ? "" : format(row.ratio_to_pgbench_median, 2)
    const target = row.target === null ? "" : `>= ${row.target} ${row.met === true ? "met" : "NOT met"}`
    console.log(
      `${row.phase.padEnd(17)} ${format(row.transfers_per_s_median).padStart(11)} ${format(row.latency_ms_p50, 2).padStart(8)} ` +
        `${format(row.latency_ms_p99, 2).padStart(8)} ${ratio.padStart(18)}   ${target}`
    )
  }
  const loadAfter = loadavg()
  console.log(`(medians over ${options.rounds} interleaved rounds; pgbench: ${table[0]?.command ?? ""})`)
  console.log(
    `load average (1 min) before ${format(loadBefore[0] ?? Number.NaN, 2)}, after ${format(loadAfter[0] ?? Number.NaN, 2)} ` +
      `on ${cpus().length} CPUs`
  )
  console.log(`ledger_verify(): ${rounds.discrepancies === 0 ? "no discrepancy" : `${rounds.discrepancies} discrepancies`}`)

  const [pgVersion] = yield* adminSql(serverUrl, (sql) => decodeRows(Schema.Struct({ version: Schema.String }))(sql`SELECT version()`))
  const report = {
    benchmark: "ledger",
    at: new Date().toISOString(),
    command: `node bench/ledger/run.ts ${process.argv.slice(2).join(" ")}`.trim(),
    machine: {
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? "unknown",
      node: process.version,
      postgres: pgVersion?.version ?? "unknown",
      load_average_before: loadBefore,
      load_average_after: loadAfter
    },
    options: { ...options, accounts: accountCount, hot_accounts: hotAccountCount },
    phases: table,
    ledger_verify_discrepancies: rounds.discrepancies
  }
  const directory = fileURLToPath(new URL("../results/", import.meta.url))
  mkdirSync(directory, { recursive: true })
  const file = join(directory, `ledger-${report.at.replace(/[:.]/g, "-")}.json`)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
  console.log(`results written to ${file}`)
  if (rounds.discrepancies !== 0) return yield* Effect.die(new Error("ledger_verify() found discrepancies"))
}))

Effect.runPromise(program).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
