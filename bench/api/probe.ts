/**
 * The cost probe of `bench:api`: round trips to Postgres and Redis and durable commits per API
 * operation, counted exactly, not timed.
 *
 * It starts a private Postgres (`log_statement = all`, `pg_walinspect`, `pg_stat_statements`
 * preloaded with `track = all`, so statements run inside functions and triggers are timed too) and a
 * private Redis (testkit throwaways, killed by pid at the end), a server on them (publisher off,
 * completer and reaper idle, so only the request path is counted), and sends each operation
 * `count` times, one at a time. For each operation:
 *   postgres statements  statements logged for the server's database (`log_statement`). The driver
 *                        sends one statement per round trip (it pipelines only across fibers, never
 *                        inside a transaction), so statements = round trips;
 *   durable commits      COMMIT records in the WAL between two LSNs (`pg_walinspect`): a
 *                        read-only transaction writes none, so this counts exactly the commits
 *                        that wait for fsync;
 *   redis round trips    commands seen by MONITOR from the server's sockets; a MULTI … EXEC block
 *                        (one pipelined write) counts once, commands run by a script count in
 *                        the script's EVALSHA.
 * It also lists each statement's calls per operation, for docs/performance.md, and where Postgres's
 * time goes per operation (`pg_stat_statements`, reset before each operation): execution and
 * planning milliseconds per operation of the top-level statements (those the server sent, and
 * the deferred constraint triggers' statements, which run at COMMIT outside any), and the
 * statements that took the most, nested ones included (`ledger_post`'s trigger statements, …).
 * These are wall-clock times inside Postgres on an otherwise idle private server, sequential
 * requests: no lock waits, no contention.
 */
import { Effect, Schema } from "effect"
import { spawn } from "node:child_process"
import { closeSync, openSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { throwaway } from "../../packages/testkit/src/Throwaway.ts"
import { freePort } from "../../packages/testkit/src/ThrowawayKafka.ts"
import { stopChild } from "../support/process.ts"

export interface ProbeOperation {
  readonly name: string
  /** One request; must answer `expectedStatus`. `index` counts from 0 within the operation. */
  readonly send: (baseUrl: string, apiKey: string, index: number) => Promise<number>
  readonly expectedStatus: number
}

export interface OperationCost {
  readonly operation: string
  readonly requests: number
  readonly postgres_round_trips_per_op: number
  readonly durable_commits_per_op: number
  readonly redis_round_trips_per_op: number
  readonly round_trips_per_op: number
  readonly unexpected_statuses: number
  /** Each statement's calls per operation, most frequent first (query text shortened). */
  readonly statements: ReadonlyArray<{ readonly calls_per_op: number; readonly query: string }>
  /** Postgres execution time per operation of the top-level statements (pg_stat_statements; deferred triggers' included). */
  readonly postgres_exec_ms_per_op: number
  /** Planning time per operation of the same statements (track_planning). */
  readonly postgres_plan_ms_per_op: number
  /** The statements that took the most execution time, nested ones (functions, triggers) included. */
  readonly statement_times: ReadonlyArray<StatementTime>
}

export interface StatementTime {
  /** false: run inside a function or trigger (no round trip of its own). */
  readonly toplevel: boolean
  readonly calls_per_op: number
  readonly exec_ms_per_op: number
  readonly plan_ms_per_op: number
  readonly query: string
}

/** A row of the pg_stat_statements read below (times in ms, as the view gives them). */
const StatementRow = Schema.Struct({
  toplevel: Schema.Boolean,
  calls: Schema.Number,
  exec_ms: Schema.Number,
  plan_ms: Schema.Number,
  query: Schema.String
})
const decodeStatementRows = Schema.decodeUnknownEffect(Schema.NullOr(Schema.Array(StatementRow)))
/** How many of the costliest statements an operation's report lists. */
const statementTimes_max = 10

export interface ProbeEnvironment {
  readonly repositoryRoot: string
  readonly brokers: string
  readonly topicPrefix: string
  readonly logFile: string
  /** Runs `psql <url> -qAtc <statement>`; returns stdout. */
  readonly psql: (url: string, statement: string) => Effect.Effect<string, Error>
  /** Runs the CLI with the given database; returns stdout. */
  readonly cli: (databaseUrl: string, args: ReadonlyArray<string>) => Effect.Effect<string, Error>
  readonly waitForReady: (baseUrl: string, logFile: string) => Effect.Effect<void>
}

const probeDatabase = "pay_probe"
const round = (value: number, digits = 2) => Number(value.toFixed(digits))

const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/** Redis round trips seen by MONITOR (`redis-cli monitor`), from every client but the monitor. */
const redisCounter = (url: string) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const child = spawn("redis-cli", ["-u", url, "monitor"], { stdio: ["ignore", "pipe", "ignore"] })
      const state = { roundTrips: 0, inMulti: false }
      let pending = ""
      child.stdout.setEncoding("utf8")
      child.stdout.on("data", (chunk: string) => {
        pending += chunk
        const lines = pending.split("\n")
        pending = lines.pop() ?? ""
        for (const line of lines) {
          // 1700000000.123456 [0 127.0.0.1:41234] "get" "key"; commands run by a script show [0 lua].
          const match = /^[0-9.]+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(line)
          if (match === null || match[1] === "lua") continue
          const command = (match[2] ?? "").toLowerCase()
          if (command === "multi") {
            state.inMulti = true
            state.roundTrips++
          } else if (command === "exec" || command === "discard") state.inMulti = false
          else if (!state.inMulti) state.roundTrips++
        }
      })
      // MONITOR answers OK once it is on; give it a moment to attach.
      yield* Effect.sleep("300 millis")
      return { child, state }
    }),
    ({ child }) => Effect.sync(() => child.kill("SIGTERM"))
  )

/**
 * Statements of the probe's database in a slice of the server log (`log_statement = all`,
 * prefix `%d|`): a simple-protocol statement logs `statement: …`, an extended-protocol one
 * `execute <name>: …`; either is one round trip. Statements run by triggers and functions are not
 * logged (they cost no round trip).
 */
const statementsIn = (log: string, count: number) => {
  const calls = new Map<string, number>()
  const lines = log.split("\n")
  lines.forEach((line, index) => {
    if (!line.startsWith(`${probeDatabase}|`)) return
    const match = /LOG:\s+(?:statement|execute [^:]*): ?(.*)$/.exec(line)
    if (match === null || match[1] === undefined) return
    // A statement that starts with a newline continues on the next lines (tab-indented).
    const text = match[1].trim() === "" ? lines.slice(index + 1, index + 3).join(" ") : match[1]
    const query = text.replace(/\s+/g, " ").trim().slice(0, 110)
    calls.set(query, (calls.get(query) ?? 0) + 1)
  })
  return [...calls.entries()]
    .map(([query, n]) => ({ calls_per_op: round(n / count), query }))
    .sort((a, b) => b.calls_per_op - a.calls_per_op || a.query.localeCompare(b.query))
}

/** The probe database's statements since the last reset, as JSON (one psql round trip). */
const statementTimesQuery = `SELECT json_agg(t) FROM (
  SELECT s.toplevel, s.calls::float8 AS calls, s.total_exec_time AS exec_ms, s.total_plan_time AS plan_ms,
         left(regexp_replace(s.query, '\\s+', ' ', 'g'), 110) AS query
  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
  WHERE d.datname = '${probeDatabase}') t`

const statementTimes = (env: ProbeEnvironment, admin: string, count: number) =>
  Effect.gen(function* () {
    const text = (yield* env.psql(admin, statementTimesQuery)).trim()
    const rows = (yield* decodeStatementRows(JSON.parse(text === "" ? "null" : text)).pipe(Effect.orDie)) ?? []
    const top = rows.filter((row) => row.toplevel)
    const perOp = (ms: number) => round(ms / count, 3)
    return {
      postgres_exec_ms_per_op: perOp(top.reduce((sum, row) => sum + row.exec_ms, 0)),
      postgres_plan_ms_per_op: perOp(top.reduce((sum, row) => sum + row.plan_ms, 0)),
      statement_times: [...rows]
        .sort((a, b) => b.exec_ms - a.exec_ms)
        .slice(0, statementTimes_max)
        .map((row): StatementTime => ({
          toplevel: row.toplevel,
          calls_per_op: round(row.calls / count),
          exec_ms_per_op: perOp(row.exec_ms),
          plan_ms_per_op: perOp(row.plan_ms),
          query: row.query
        }))
    }
  })

const startProbeServer = (env: ProbeEnvironment, databaseUrl: string, redisUrl: string, port: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const fd = openSync(env.logFile, "a")
      const child = spawn(process.execPath, ["packages/server/src/main.ts"], {
        cwd: env.repositoryRoot,
        env: {
          ...process.env,
          DATABASE_URL: databaseUrl,
          REDIS_URL: redisUrl,
          REDIS_KEY_PREFIX: "probe:",
          KAFKA_BROKERS: env.brokers,
          KAFKA_TOPIC_PREFIX: env.topicPrefix,
          PORT: String(port),
          // Its metrics on a free port: another server on this machine may hold 9464.
          METRICS_PORT: "0",
          // Only the request path is counted: no publisher, no consumers, no webhook sender, the
          // workers and the periodic gauges' reads asleep for the run.
          OUTBOX_PUBLISHER_ENABLED: "false",
          CONSUMERS_ENABLED: "false",
          WEBHOOK_SENDER_ENABLED: "false",
          COMPLETER_INTERVAL_MS: "3600000",
          REAPER_INTERVAL_MS: "3600000",
          EXPIRY_INTERVAL_MS: "0",
          LEDGER_VERIFY_INTERVAL_MS: "0",
          RUNTIME_METRICS_INTERVAL_MS: "60000"
        },
        stdio: ["ignore", fd, fd]
      })
      closeSync(fd)
      return child
    }),
    stopChild
  )

/** Runs `count` of each operation in order and reports what each cost. */
export const probeCosts = (env: ProbeEnvironment, operations: ReadonlyArray<ProbeOperation>, count: number) =>
  Effect.scoped(Effect.gen(function* () {
    const postgres = yield* throwaway("postgres").pipe(Effect.orDie)
    const redis = yield* throwaway("redis").pipe(Effect.orDie)
    const admin = withDatabase(postgres.url, "postgres")
    // Every statement a client sends, with its database: one log line per round trip.
    yield* env.psql(admin, "ALTER SYSTEM SET log_statement = 'all'")
    yield* env.psql(admin, "ALTER SYSTEM SET log_line_prefix = '%d|'")
    yield* env.psql(admin, "SELECT pg_reload_conf()")
    // Statement times, nested statements included: the library loads at start only.
    yield* env.psql(admin, "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    yield* postgres.kill
    yield* postgres.restart.pipe(Effect.orDie)
    yield* env.psql(admin, "ALTER SYSTEM SET pg_stat_statements.track = 'all'")
    yield* env.psql(admin, "ALTER SYSTEM SET pg_stat_statements.track_planning = 'on'")
    yield* env.psql(admin, "SELECT pg_reload_conf()")
    yield* env.psql(admin, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    const serverLog = join(postgres.dir, "data", "server.log")
    yield* env.psql(admin, `CREATE DATABASE ${probeDatabase}`)
    yield* env.psql(admin, "CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    const databaseUrl = withDatabase(postgres.url, probeDatabase)
    // The CLI's commands do not migrate (only `migrate` does): the probe's database is new.
    yield* env.cli(databaseUrl, ["migrate"])
    const created: unknown = JSON.parse(yield* env.cli(databaseUrl, ["merchants", "create", "Probe merchant"]))
    const apiKey = typeof created === "object" && created !== null ? Reflect.get(created, "api_key") : undefined
    if (typeof apiKey !== "string") return yield* Effect.die(new Error("probe: no api_key from the CLI"))
    const port = yield* freePort
    yield* startProbeServer(env, databaseUrl, redis.url, port)
    const baseUrl = `http://127.0.0.1:${port}`
    yield* env.waitForReady(baseUrl, env.logFile)
    const counter = yield* redisCounter(redis.url)

    const costs: Array<OperationCost> = []
    for (const operation of operations) {
      // Warm the server's connections and prepared statements outside the counted window.
      yield* Effect.promise(() => operation.send(baseUrl, apiKey, -1))
      const logOffset = statSync(serverLog).size
      const lsnBefore = (yield* env.psql(admin, "SELECT pg_current_wal_flush_lsn()")).trim()
      counter.state.roundTrips = 0
      yield* env.psql(admin, "SELECT pg_stat_statements_reset()")
      let unexpected = 0
      for (let index = 0; index < count; index++) {
        const status = yield* Effect.promise(() => operation.send(baseUrl, apiKey, index))
        if (status !== operation.expectedStatus) unexpected++
      }
      // After-commit Redis writes may still be on their way: let them land.
      yield* Effect.sleep("300 millis")
      const redisRoundTrips = counter.state.roundTrips
      const times = yield* statementTimes(env, admin, count)
      const lsnAfter = (yield* env.psql(admin, "SELECT pg_current_wal_flush_lsn()")).trim()
      const commits = lsnBefore === lsnAfter ? 0 : Number((yield* env.psql(admin,
        `SELECT count(*) FROM pg_get_wal_records_info('${lsnBefore}', '${lsnAfter}') WHERE resource_manager = 'Transaction' AND record_type LIKE 'COMMIT%'`
      )).trim())
      const statements = statementsIn(readFileSync(serverLog).subarray(logOffset).toString("utf8"), count)
      const postgresRoundTrips = statements.reduce((sum, s) => sum + s.calls_per_op, 0)
      costs.push({
        operation: operation.name,
        requests: count,
        postgres_round_trips_per_op: round(postgresRoundTrips),
        durable_commits_per_op: round(commits / count),
        redis_round_trips_per_op: round(redisRoundTrips / count),
        round_trips_per_op: round(postgresRoundTrips + redisRoundTrips / count),
        unexpected_statuses: unexpected,
        statements,
        ...times
      })
    }
    return costs
  }))
