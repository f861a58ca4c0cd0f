import { Effect } from "effect"
import { execFile } from "node:child_process"

/**
 * pgbench TPC-B on a database of its own on the same Postgres server: the yardstick a benchmark
 * reports its ratios to (what this machine's Postgres does for one small read-write transaction of
 * five statements and one durable commit). The database is created (`pgbench -i -s scale`) when
 * the scope opens and dropped (FORCE) when it closes.
 */

const run = (command: string, args: ReadonlyArray<string>, timeout_ms: number) =>
  Effect.tryPromise({
    try: () =>
      new Promise<string>((resolve, reject) => {
        execFile(command, [...args], { maxBuffer: 16 * 1024 * 1024, timeout: timeout_ms, env: { ...process.env, PGCONNECT_TIMEOUT: "5" } },
          (error, stdout, stderr) => (error === null ? resolve(`${stdout}${stderr}`) : reject(new Error(`${command} ${args.join(" ")}: ${error.message}\n${stderr.slice(-2_000)}`))))
      }),
    catch: (cause) => (cause instanceof Error ? cause : new Error(String(cause)))
  })

const connectionArgs = (serverUrl: string) => {
  const url = new URL(serverUrl)
  return ["-h", url.hostname, "-p", url.port === "" ? "5432" : url.port, "-U", decodeURIComponent(url.username)]
}

const adminUrl = (serverUrl: string) => {
  const url = new URL(serverUrl)
  url.pathname = "/postgres"
  return url.toString()
}

export interface PgbenchResult {
  readonly command: string
  readonly clients: number
  readonly tps: number
  readonly latency_ms_mean: number
}

/** A pgbench database (scale `scale`) for the scope; returns a runner of timed TPC-B phases. */
export const pgbenchDatabase = (serverUrl: string, name: string, scale: number) =>
  Effect.gen(function* () {
    if (!/^[a-z0-9_]+$/.test(name)) return yield* Effect.die(new Error(`unsafe database name ${name}`))
    yield* Effect.acquireRelease(
      run("psql", [adminUrl(serverUrl), "-qAtc", `CREATE DATABASE ${name}`], 60_000),
      () => run("psql", [adminUrl(serverUrl), "-qAtc", `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], 60_000).pipe(Effect.orDie)
    )
    yield* run("pgbench", [...connectionArgs(serverUrl), "-i", "-q", "-s", String(scale), name], 300_000)
    /** TPC-B for `duration_s` with `clients` connections (`-j` up to 2 threads). */
    return (clients: number, duration_s: number) =>
      Effect.gen(function* () {
        const args = ["-n", "-c", String(clients), "-j", String(Math.min(2, clients)), "-T", String(duration_s), name]
        const output = yield* run("pgbench", [...connectionArgs(serverUrl), ...args], (duration_s + 60) * 1_000)
        const tps = Number(/tps = ([0-9.]+) \(without initial connection time\)/.exec(output)?.[1] ?? Number.NaN)
        const latency = Number(/latency average = ([0-9.]+) ms/.exec(output)?.[1] ?? Number.NaN)
        const result: PgbenchResult = { command: `pgbench ${args.join(" ")}`, clients, tps: Number(tps.toFixed(0)), latency_ms_mean: latency }
        return result
      })
  })
