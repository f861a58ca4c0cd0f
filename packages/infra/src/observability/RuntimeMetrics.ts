import { type Config, Effect, Layer, Metric, Schedule, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks"
import { boundedInt } from "../BoundedConfig.ts"
import { ConsumersDatabasePoolSize, DatabasePoolSize, PublisherDatabasePoolSize } from "../Config.ts"
import { answerTimeoutsSoFar } from "../PostgresAnswerWatch.ts"
import { decodeRows } from "../SqlRows.ts"

/**
 * What Effect does not measure about the process itself (event-loop delay, heap, GC) and the
 * database connections it holds, as Effect gauges and a histogram, so that one `/metrics` shows
 * them with the rest. Sampled every `RUNTIME_METRICS_INTERVAL_MS` (default 5 s).
 */
export const runtimeMetricsBounds = { interval_ms: { min: 500, max: 60_000 } } as const
export const RuntimeMetricsInterval = boundedInt("RUNTIME_METRICS_INTERVAL_MS", runtimeMetricsBounds.interval_ms, 5_000)

const eventLoopDelay = {
  p50: Metric.gauge("nodejs_eventloop_delay_p50_seconds", { description: "Median event-loop delay over the last sampling interval, in seconds" }),
  p99: Metric.gauge("nodejs_eventloop_delay_p99_seconds", { description: "99th percentile event-loop delay over the last sampling interval, in seconds" }),
  max: Metric.gauge("nodejs_eventloop_delay_max_seconds", { description: "Largest event-loop delay over the last sampling interval, in seconds" })
}
const heapUsed = Metric.gauge("nodejs_heap_used_bytes", { description: "V8 heap in use, in bytes" })
const heapTotal = Metric.gauge("nodejs_heap_total_bytes", { description: "V8 heap allocated, in bytes" })
const residentMemory = Metric.gauge("process_resident_memory_bytes", { description: "Resident set size, in bytes" })
const gcDuration = Metric.histogram("nodejs_gc_duration_seconds", {
  description: "Garbage-collection pauses, in seconds",
  boundaries: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
})
const dbConnections = Metric.gauge("db_client_connections", {
  description: "This process' PostgreSQL connections by pool (api: DATABASE_URL; consumers: CONSUMERS_DATABASE_URL; publisher: PUBLISHER_DATABASE_URL) and state (active, idle, idle in transaction, …)"
})
const dbConnectionsMax = Metric.gauge("db_client_connections_max", {
  description: "The size of each of this process' PostgreSQL pools (DATABASE_POOL_SIZE, CONSUMERS_DATABASE_POOL_SIZE, PUBLISHER_DATABASE_POOL_SIZE)"
})

const sampleProcess = (histogram: ReturnType<typeof monitorEventLoopDelay>) =>
  Effect.gen(function* () {
    const memory = process.memoryUsage()
    yield* Metric.update(eventLoopDelay.p50, histogram.percentile(50) / 1e9)
    yield* Metric.update(eventLoopDelay.p99, histogram.percentile(99) / 1e9)
    yield* Metric.update(eventLoopDelay.max, histogram.max / 1e9)
    histogram.reset()
    yield* Metric.update(heapUsed, memory.heapUsed)
    yield* Metric.update(heapTotal, memory.heapTotal)
    yield* Metric.update(residentMemory, memory.rss)
  })

/** Event loop, heap, RSS and GC pauses of this process. */
export const ProcessMetricsLive: Layer.Layer<never> = Layer.effectDiscard(
  Effect.gen(function* () {
    const interval_ms = yield* RuntimeMetricsInterval.pipe(Effect.orDie)
    const histogram = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const created = monitorEventLoopDelay({ resolution: 20 })
        created.enable()
        return created
      }),
      (created) => Effect.sync(() => created.disable())
    )
    // Registers the histogram (exported with zero counts) before the first pause.
    yield* Metric.value(gcDuration)
    const pauses: Array<number> = []
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const observer = new PerformanceObserver((list) => {
          // Bounded between two samples; a pause list longer than this is a GC storm anyway.
          for (const entry of list.getEntries()) if (pauses.length < 10_000) pauses.push(entry.duration / 1e3)
        })
        observer.observe({ entryTypes: ["gc"] })
        return observer
      }),
      (observer) => Effect.sync(() => observer.disconnect())
    )
    const sample = Effect.gen(function* () {
      yield* sampleProcess(histogram)
      for (const seconds of pauses.splice(0)) yield* Metric.update(gcDuration, seconds)
    })
    yield* Effect.forkScoped(Effect.repeat(sample, Schedule.spaced(interval_ms)))
    // The database answer timeout's closes (PostgresAnswerWatch.ts), here rather than beside the
    // pool's gauges: those are sampled from the database that is not answering, and every process
    // has these. Shown from the start (0), so that a scrape tells "none" from "not exported".
    yield* Metric.update(dbAnswerTimeouts, 0)
    let counted = 0
    const countAnswerTimeouts = Effect.suspend(() => {
      const now = answerTimeoutsSoFar()
      const added = now - counted
      counted = now
      return added > 0 ? Metric.update(dbAnswerTimeouts, added) : Effect.void
    })
    yield* Effect.forkScoped(Effect.repeat(countAnswerTimeouts, Schedule.spaced(interval_ms)))
  })
)

export const dbAnswerTimeouts = Metric.counter("db_client_answer_timeouts_total", {
  description: "Postgres connections this process closed because a statement had no answer within DATABASE_ANSWER_TIMEOUT_MS (a partition, a database that stopped answering)",
  incremental: true
})

/**
 * Samples of this process' pool that failed (Postgres refused the connection or the query, or did
 * not answer within DATABASE_ANSWER_TIMEOUT_MS). One every RUNTIME_METRICS_INTERVAL_MS while the
 * database is out of reach, traffic or not: the signal of DatabaseUnreachable. The pool's gauges
 * meanwhile keep their last sample (outside fault review: an idle count of 7 during the outage).
 */
export const dbSamplesFailed = Metric.counter("db_client_samples_failed_total", {
  description: "Samples of this process' Postgres pool that failed: the database refused or did not answer (db_client_connections then holds the last good sample)",
  incremental: true
})

const ConnectionState = Schema.Struct({ state: Schema.String, connections: Schema.Number })

/**
 * The process' Postgres connections by state, from `pg_stat_activity` (its own application_name),
 * and `db_client_connections_max` from the setting that sizes the pool sampled (`poolSize`).
 */
export const databasePoolMetrics = (pool: "api" | "consumers" | "publisher", poolSize: Config.Config<number>): Layer.Layer<never, never, SqlClient.SqlClient> => Layer.effectDiscard(
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const interval_ms = yield* RuntimeMetricsInterval.pipe(Effect.orDie)
    yield* Metric.update(Metric.withAttributes(dbConnectionsMax, { pool }), yield* poolSize.pipe(Effect.orDie))
    const states = ["active", "idle", "idle in transaction", "idle in transaction (aborted)"]
    const sample = decodeRows(ConnectionState)(sql`
      SELECT coalesce(state, 'unknown') AS state, count(*)::int AS connections
      FROM pg_stat_activity
      WHERE application_name = current_setting('application_name') AND pid <> pg_backend_pid()
      GROUP BY 1`).pipe(
      Effect.flatMap((rows) =>
        Effect.forEach(states, (state) =>
          Metric.update(Metric.withAttributes(dbConnections, { pool, state }), rows.find((row) => row.state === state)?.connections ?? 0)
        )
      ),
      // A failed sample is counted, logged and the next one tried: the metric must never stop the process.
      Effect.catchCause((cause) => Effect.andThen(Metric.update(dbSamplesFailed, 1), Effect.logDebug("db connection metrics: sample failed", cause)))
    )
    // Shown from the start (0): a scrape tells "none failed" from "not exported".
    yield* Metric.update(dbSamplesFailed, 0)
    yield* Effect.forkScoped(Effect.repeat(sample, Schedule.spaced(interval_ms)))
  })
)

/** The API's pool (DATABASE_POOL_SIZE): the server's (`pool="api"`). */
export const DatabasePoolMetricsLive = databasePoolMetrics("api", DatabasePoolSize)

/**
 * The consumers' pool (CONSUMERS_DATABASE_POOL_SIZE, `pool="consumers"`), wherever it is: the
 * consumers' and the sender's own processes (their max read DATABASE_POOL_SIZE, 20, for a pool of
 * 10 before: DatabasePoolSaturated could not fire there), and a server that runs either beside
 * its API pool (not measured before: its connections showed as `unknown` in the API pool's).
 */
export const ConsumersDatabasePoolMetricsLive = databasePoolMetrics("consumers", ConsumersDatabasePoolSize)

/** The outbox publisher's pool (PUBLISHER_DATABASE_POOL_SIZE, `pool="publisher"`): in a server, and in the publisher's own process. */
export const PublisherDatabasePoolMetricsLive = databasePoolMetrics("publisher", PublisherDatabasePoolSize)
