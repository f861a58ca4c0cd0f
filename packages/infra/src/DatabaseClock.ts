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
 * This layer provides Effect's `Clock` as the database's: at start and every `databaseClockSync_ms`
 * one `SELECT clock_timestamp()` anchors it (the database's reading, taken as made at the round
 * trip's midpoint), and between anchors it runs on this process's monotonic clock. So a step of
 * this host's wall clock changes nothing (a re-test stepped a running server's clock 8 days back:
 * with an offset from the wall clock, authorizations granted in the next 10 s were dated to expire
 * 8 days early and the expiry job voided them), and a sample is used whatever its round trip up to
 * `databaseClockSampleRtt_ms_max` (its error is half of it: a 280 ms round trip is 140 ms, where
 * refusing it left the process on a host clock days off, silently). Everything that asks `Clock` /
 * `DateTime.now` (the state machine, the expiry checks, retention, Kafka timestamps, the audit's
 * gauge) agrees with the database. Sleeps and timeouts keep the process's own timers. The host's
 * offset is a gauge (`database_clock_offset_seconds`): seconds off is a broken time sync
 * (docs/runbook.md); samples that fail are counted and logged.
 */
export const databaseClockSync_ms = 10_000
/** How long a process's start waits for its first measurement. */
export const databaseClockFirstSample_ms_max = 2_000
/** A sample whose round trip took longer is not used (counted, and a WARN): its error would be over a second. */
export const databaseClockSampleRtt_ms_max = 2_000

export const databaseClockOffset = Metric.gauge("database_clock_offset_seconds", {
  description: "The database's clock minus this process's wall clock, as last measured (seconds; this process dates its writes by the database's)"
})
const databaseClockSamplesRefused = Metric.counter("database_clock_samples_refused_total", {
  description: "Measurements of the database's clock not used: the statement failed or its round trip was over 2 s",
  incremental: true
})

const ClockRow = Schema.Struct({ database_ms: Schema.Number })
const readDatabaseClock = (sql: SqlClient.SqlClient) =>
  decodeRows(ClockRow)(sql`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS database_ms`)

/**
 * A wall clock `offset_ms` off `local`'s (its monotonic clock and sleeps unchanged; `offset_ms` may
 * change under it): a skewed or stepping host, for tests and drills.
 */
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

/** A reading of the database's clock and the instant of this process's monotonic clock it was made at. */
export interface ClockAnchor {
  readonly database_ms: number
  readonly monotonic_ns: bigint
}

/** The database's time between anchors: the last anchor plus the monotonic time since. */
export const anchoredClock = (local: Clock.Clock, state: { anchor: ClockAnchor }): Clock.Clock => {
  const nanos = () => BigInt(Math.round(state.anchor.database_ms * 1_000_000)) + (local.monotonicTimeNanosUnsafe() - state.anchor.monotonic_ns)
  const millis = () => Number(nanos() / 1_000_000n)
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
 * One reading: the database's clock, anchored at the midpoint of the round trip on the monotonic
 * clock, and the host's wall-clock offset then (for the gauge). Undefined when the round trip is
 * over the bound.
 */
export const measureDatabaseClock = (sql: SqlClient.SqlClient, local: Clock.Clock) =>
  Effect.gen(function* () {
    const sent_ns = local.monotonicTimeNanosUnsafe()
    const sentWall_ms = local.currentTimeMillisUnsafe()
    const [row] = yield* readDatabaseClock(sql)
    const roundTrip_ns = local.monotonicTimeNanosUnsafe() - sent_ns
    const roundTrip_ms = Number(roundTrip_ns) / 1_000_000
    if (row === undefined || roundTrip_ms > databaseClockSampleRtt_ms_max) return { roundTrip_ms, reading: undefined }
    const anchor: ClockAnchor = { database_ms: row.database_ms, monotonic_ns: sent_ns + roundTrip_ns / 2n }
    return { roundTrip_ms, reading: { anchor, hostOffset_ms: row.database_ms - (sentWall_ms + roundTrip_ms / 2) } }
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
    // Until the first reading: this process's own wall clock, run on from now by the monotonic clock.
    const state = { anchor: { database_ms: local.currentTimeMillisUnsafe(), monotonic_ns: local.monotonicTimeNanosUnsafe() } }
    const sample = Effect.gen(function* () {
      const { roundTrip_ms, reading } = yield* measureDatabaseClock(sql, local)
      if (reading === undefined) {
        yield* Metric.update(databaseClockSamplesRefused, 1)
        return yield* Effect.logWarning(`database clock: a reading took ${Math.round(roundTrip_ms)} ms (over ${databaseClockSampleRtt_ms_max}); the last one is kept`)
      }
      state.anchor = reading.anchor
      yield* Metric.update(databaseClockOffset, reading.hostOffset_ms / 1_000)
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
    return anchoredClock(local, state)
  })
)
