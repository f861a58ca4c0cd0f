import { randomCacheSecret } from "@pay/idempotency"
import { boundedInt, MetricsPort, OwnerMigrationsLive } from "@pay/infra"
import { Deferred, Effect, Layer, Redacted } from "effect"
import cluster, { type Worker } from "node:cluster"

/**
 * Several server instances on one machine (issue 18): `SERVER_INSTANCES` processes (node:cluster)
 * share the HTTP port, each on a listening socket of its own (SO_REUSEPORT: Server.ts
 * `clusterListenOptions`; not node:cluster's round robin through the primary), each worker is a whole server (ServerLive) with its own Postgres and Redis
 * pools, Kafka producer, outbox publisher, completer and reaper. They cooperate through the
 * database only: the publisher claims rows FOR UPDATE SKIP LOCKED, the reaper deletes with SKIP
 * LOCKED, and the completer takes an abandoned key's lease in Postgres (a second instance finds
 * it leased and leaves it). docs/scaling.md says what changes with more machines.
 *
 * The primary migrates the database once before forking (the migrator's table lock serializes
 * the workers' own check, which then finds nothing to do), forwards SIGTERM/SIGINT to every
 * worker and waits for them, and replaces a worker that dies on its own, at most
 * `RESTARTS_MAX` times per `RESTART_WINDOW_MS` (past that it stops everything: a crash loop is
 * for the supervisor to see, not to hide).
 *
 * Without `IDEMPOTENCY_CACHE_SECRET`, the primary draws one random secret and gives it to every
 * worker it forks (and to replacements), so the instances accept each other's cached responses
 * in Redis; a secret per instance made them overwrite each other's copies, and a replay of a
 * finished key could meet another instance's refill and answer 409 (cluster.test.ts).
 */
export const serverInstanceBounds = { min: 1, max: 32 } as const
export const ServerInstances = boundedInt("SERVER_INSTANCES", serverInstanceBounds, 1)

const RESTARTS_MAX = 5
const RESTART_WINDOW_MS = 60_000
/** After SIGTERM, a worker that has not exited after this is killed. */
const WORKER_STOP_TIMEOUT_MS = 20_000

// As the schema owner (MIGRATION_DATABASE_URL), like a single instance (OwnerMigrationsLive): the
// application's role may not run DDL, nor take the migrator's table lock. It ran the migrator as
// DATABASE_URL, so a cluster of pay_app instances failed to start on a database with pending
// migrations (a fresh one, or an upgrade).
const migrateOnce = Effect.scoped(Layer.build(OwnerMigrationsLive))

const stopWorker = (worker: Worker) =>
  Effect.callback<void>((resume) => {
    if (worker.isDead()) return resume(Effect.void)
    const timer = setTimeout(() => worker.process.kill("SIGKILL"), WORKER_STOP_TIMEOUT_MS)
    worker.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    worker.process.kill("SIGTERM")
  })

/** The primary's life: migrate, fork, supervise; interrupted (SIGTERM) it stops the workers. */
export const runPrimary = (instances: number) =>
  Effect.gen(function* () {
    yield* migrateOnce
    const configuredSecret = process.env["IDEMPOTENCY_CACHE_SECRET"] ?? ""
    const workerEnv = { IDEMPOTENCY_CACHE_SECRET: configuredSecret !== "" ? configuredSecret : Redacted.value(randomCacheSecret()) }
    // Each instance serves /metrics on a port of its own, METRICS_PORT + its slot (0-based): on one
    // shared port (node:cluster hands a listener's connections out in turn) each scrape read another
    // instance, and every counter seemed to reset (outside operator review). 0 stays 0 (tests).
    const metricsPort_base = yield* MetricsPort
    if (metricsPort_base > 0 && metricsPort_base + instances - 1 > 65_535) {
      return yield* Effect.fail(new Error(`METRICS_PORT=${metricsPort_base}: ${instances} instances need ports up to ${metricsPort_base + instances - 1}, above 65535`))
    }
    const envOf = (slot: number) => metricsPort_base > 0 ? { ...workerEnv, METRICS_PORT: String(metricsPort_base + slot) } : workerEnv
    const workers = new Set<Worker>()
    const restarts: Array<number> = []
    const crashLoop = yield* Deferred.make<void, Error>()
    let stopping = false

    const fork = (slot: number): void => {
      const worker = cluster.fork(envOf(slot))
      workers.add(worker)
      worker.once("exit", (code, signal) => {
        workers.delete(worker)
        if (stopping) return
        const now = Date.now()
        while (restarts.length > 0 && (restarts[0] ?? now) < now - RESTART_WINDOW_MS) restarts.shift()
        if (restarts.length >= RESTARTS_MAX) {
          Deferred.doneUnsafe(crashLoop, Effect.fail(new Error(`server instances exited ${RESTARTS_MAX} times within ${RESTART_WINDOW_MS} ms; last: code ${code}, signal ${signal}`)))
          return
        }
        restarts.push(now)
        console.error(JSON.stringify({ level: "ERROR", message: "server instance exited; starting another", code, signal }))
        fork(slot)
      })
    }

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        stopping = true
        return Effect.forEach([...workers], stopWorker, { concurrency: "unbounded", discard: true })
      })
    )
    yield* Effect.sync(() => {
      for (let slot = 0; slot < instances; slot++) fork(slot)
    })
    yield* Effect.logInfo("server instances started", { instances, metrics_ports: metricsPort_base > 0 ? `${metricsPort_base}..${metricsPort_base + instances - 1}` : "METRICS_PORT=0, as configured" })
    return yield* Deferred.await(crashLoop)
  }).pipe(Effect.scoped)

/** In the primary with more than one instance, or a worker / the only instance. */
export const isClusterPrimary = (instances: number): boolean => instances > 1 && cluster.isPrimary
