import { Clock, Duration, Effect, Layer, Metric, Schedule, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { decodeRows } from "./SqlRows.ts"

/**
 * One clock for the platform: PostgreSQL's. The expiry job, the idempotency leases, the outbox and
 * the webhook timestamps read the database's clock in SQL; a payment's transition, its
 * authorization's expiry, a refund and their events were dated by this process's clock. An outside
 * review ran a server with its clock skewed (faketime): 8 days behind, the expiry job voided an
 * authorization 2 s after it was granted while a settle was still captured and booked; 11 minutes
 * ahead, a valid settle was refused `authorization_expired` (stored under its key) 9.5 minutes
 * early; 8 days ahead, outbox retention deleted rows seconds old; lists sorted newest-first put
 * the newest last.
 *
 * This layer provides Effect's `Clock` as the database's: the process's wall clock plus an offset
 * measured with `SELECT clock_timestamp()` at start and every `databaseClockSync_ms` (one
 * statement, the round trip's midpoint taken as the instant the database read its clock; a sample
 * whose round trip is over `databaseClockSampleRtt_ms_max` is not used). Everything that asks
 * `Clock` / `DateTime.now` (the state machine, the expiry checks, retention, the audit's gauge)
 * then agrees with the database to within half a round trip, and a wall-clock step of this host
 * lasts until the next sample. Sleeps and timeouts keep the process's own timers (durations, not
 * instants). The offset is a gauge (`database_clock_offset_seconds`): a host whose clock is
 * seconds off has broken time sync (docs/runbook.md).
 */
export const databaseClockSync_ms = 10_000
/** How long a process's start waits for its first measurement. */
export const databaseClockFirstSample_ms_max = 2_000
/** A sample whose round trip took longer says little about when the database read its clock. */
export const databaseClockSampleRtt_ms_max = 250

export const databaseClockOffset = Metric.gauge("database_clock_offset_seconds", {
  description: "The database's clock minus this process's wall clock, as last measured (seconds; this process dates its writes by the database's)"
})
const databaseClockSamplesRefused = Metric.counter("database_clock_samples_refused_total", {
  description: "Measurements of the database's clock not used: the statement failed or its round trip was over 250 ms",
  incremental: true
})

const ClockRow = Schema.Struct({ database_ms: Schema.Number })
const readDatabaseClock = (sql: SqlClient.SqlClient) =>
  decodeRows(ClockRow)(sql`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS database_ms`)

/** The database's time as this process reads it: `local` (the process's wall clock) plus `offset_ms`. */
export const offsetClock = (local: Clock.Clock, state: { offset_ms: number }): Clock.Clock => {
  const millis = () => Math.floor(local.currentTimeMillisUnsafe() + state.offset_ms)
  const nanos = () => local.currentTimeNanosUnsafe() + BigInt(Math.round(state.offset_ms * 1_000_000))
  return {
    currentTimeMillisUnsafe: millis,
    currentTimeMillis: Effect.sync(millis),
    currentTimeNanosUnsafe: nanos,
    currentTimeNanos: Effect.sync(nanos),
    monotonicTimeNanosUnsafe: () => local.monotonicTimeNanosUnsafe(),
    monotonicTimeNanos: local.monotonicTimeNanos,
    sleep: (duration) => local.sleep(duration)
  }
}

/**
 * Measures the offset once: the database's clock against the midpoint of the round trip on the
 * local clock (the monotonic clock times the round trip). Undefined when the sample is not usable.
 */
export const measureDatabaseClockOffset = (sql: SqlClient.SqlClient, local: Clock.Clock) =>
  Effect.gen(function* () {
    const sent_ns = local.monotonicTimeNanosUnsafe()
    const sentWall_ms = local.currentTimeMillisUnsafe()
    const [row] = yield* readDatabaseClock(sql)
    const roundTrip_ms = Number(local.monotonicTimeNanosUnsafe() - sent_ns) / 1_000_000
    if (row === undefined || roundTrip_ms > databaseClockSampleRtt_ms_max) return undefined
    return row.database_ms - (sentWall_ms + roundTrip_ms / 2)
  })

/**
 * `Clock` as the database's (see above), for everything built on this layer. The first sample is
 * taken before anything is served (at most `databaseClockFirstSample_ms_max`); later ones in the
 * background, a failed one keeping the last offset (counted, and a WARN).
 */
export const DatabaseClockLive = Layer.effect(
  Clock.Clock,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const local = yield* Clock.Clock
    const state = { offset_ms: 0 }
    const sample = Effect.gen(function* () {
      const offset_ms = yield* measureDatabaseClockOffset(sql, local)
      if (offset_ms === undefined) return yield* Metric.update(databaseClockSamplesRefused, 1)
      state.offset_ms = offset_ms
      yield* Metric.update(databaseClockOffset, offset_ms / 1_000)
    })
    const sampleOrWarn = sample.pipe(
      Effect.catch((error) => Metric.update(databaseClockSamplesRefused, 1).pipe(Effect.andThen(Effect.logWarning("database clock: a sample failed; the last offset is kept", error))))
    )
    yield* Metric.update(databaseClockSamplesRefused, 0)
    // The first measurement before anything is served, bounded: a process that starts while its
    // database does not answer (the consumers', the sender's) starts on its own clock, and the
    // samples every databaseClockSync_ms take over once the database answers.
    yield* sampleOrWarn.pipe(
      Effect.timeout(Duration.millis(databaseClockFirstSample_ms_max)),
      Effect.catch(() => Effect.logWarning(`database clock: no measurement within ${databaseClockFirstSample_ms_max} ms at start; this process's own clock until one succeeds`))
    )
    yield* Effect.forkScoped(Effect.repeat(Effect.andThen(Effect.sleep(Duration.millis(databaseClockSync_ms)), sampleOrWarn), Schedule.forever))
    return offsetClock(local, state)
  })
)
