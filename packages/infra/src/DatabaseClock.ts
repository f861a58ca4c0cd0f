import { Clock, Duration, Effect, Layer, Metric, Schedule, Schema } from "effect"
import { SqlClient } from "effect/sql"

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
 * refusing it left the process on a host clock days off, silently); the first reading is taken
 * whatever its round trip. Everything that asks `Clock` /
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

/** A clock whose wall time is `nanos()`; its monotonic time and sleeps are `local`'s. */
const wallClock = (local: Clock.Clock, nanos: () => bigint): Clock.Clock => {
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
 * A wall clock `offset_ms` off `local`'s (its monotonic clock and sleeps unchanged; `offset_ms` may
 * change under it): a skewed or stepping host, for tests and drills.
 */
export const offsetClock = (local: Clock.Clock, state: { offset_ms: number }): Clock.Clock =>
  wallClock(local, () => local.currentTimeNanosUnsafe() + BigInt(Math.round(state.offset_ms * 1_000_000)))

/** A reading of the database's clock and the instant of this process's monotonic clock it was made at. */
export interface ClockAnchor {
  readonly database_ms: number
  readonly monotonic_ns: bigint
}

/** A new reading that puts the time back by at most this much is absorbed (the time waits), never a step back. */
export const databaseClockBackstep_ns_max = 1_000_000_000n

/**
 * The database's time between anchors: the last anchor plus the monotonic time since. It never
 * goes back by less than `databaseClockBackstep_ns_max`: a reading that puts it back a little (one
 * reading's error against the next) holds it where it was until the monotonic time catches up, so
 * spans, logs and Kafka timestamps do not run backwards; a larger step (the database's own clock
 * was set back) is taken.
 */
export const anchoredClock = (local: Clock.Clock, state: { anchor: ClockAnchor }): Clock.Clock => {
  let last_ns = 0n
  return wallClock(local, () => {
    const now_ns = BigInt(Math.round(state.anchor.database_ms * 1_000_000)) + (local.monotonicTimeNanosUnsafe() - state.anchor.monotonic_ns)
    if (now_ns < last_ns && last_ns - now_ns <= databaseClockBackstep_ns_max) return last_ns
    last_ns = now_ns
    return now_ns
  })
}

const DatabaseMillis = Schema.Array(Schema.Tuple([Schema.Number]))
const decodeDatabaseMillis = Schema.decodeUnknownEffect(DatabaseMillis)

/**
 * One reading: the database's clock, anchored at the midpoint of the round trip on the monotonic
 * clock, and the host's wall-clock offset then (for the gauge). The round trip is timed on a
 * connection already held, so a wait for the pool is not counted as the network's (a diff review:
 * a pool of one held 1.5 s put the clock 727 ms ahead). Undefined when the round trip is over the bound.
 */
export const measureDatabaseClock = (sql: SqlClient.SqlClient, local: Clock.Clock, roundTrip_ms_max: number = databaseClockSampleRtt_ms_max) =>
  Effect.scoped(Effect.gen(function* () {
    const connection = yield* sql.reserve
    const sent_ns = local.monotonicTimeNanosUnsafe()
    const sentWall_ms = local.currentTimeMillisUnsafe()
    const values = yield* connection.executeValues("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8", [])
    const roundTrip_ns = local.monotonicTimeNanosUnsafe() - sent_ns
    const roundTrip_ms = Number(roundTrip_ns) / 1_000_000
    const [row] = yield* decodeDatabaseMillis(values).pipe(Effect.orDie)
    if (row === undefined || roundTrip_ms > roundTrip_ms_max) return { roundTrip_ms, reading: undefined }
    const [database_ms] = row
    const anchor: ClockAnchor = { database_ms, monotonic_ns: sent_ns + roundTrip_ns / 2n }
    return { roundTrip_ms, reading: { anchor, hostOffset_ms: database_ms - (sentWall_ms + roundTrip_ms / 2) } }
  }))

/**
 * What a process does until its first reading: `required` (the server, the publisher, which need
 * the database to do anything) waits for one, trying every `databaseClockRetry_ms`, and fails its
 * start after `databaseClockFirstReading_ms_max`; `background` (the consumers' and the sender's
 * processes, which start while their database does not answer) starts on its own clock and tries
 * every `databaseClockRetry_ms` until one succeeds, then every `databaseClockSync_ms`.
 */
export type FirstReading = "required" | "background"
export const databaseClockRetry_ms = 1_000
export const databaseClockFirstReading_ms_max = 30_000

/** The start did not get a reading of the database's clock within `databaseClockFirstReading_ms_max`. */
export class DatabaseClockUnread extends Schema.TaggedError<DatabaseClockUnread>()("DatabaseClockUnread", { message: Schema.String }) {}

/** `Clock` as the database's (see above), for everything built on this layer; failed readings keep the last one (counted, and a WARN). */
export const databaseClockLayer = (firstReading: FirstReading) => Layer.effect(
  Clock.Clock,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const local = yield* Clock.Clock
    // Until the first reading: this process's own wall clock, run on from now by the monotonic clock.
    const state = { anchor: { database_ms: local.currentTimeMillisUnsafe(), monotonic_ns: local.monotonicTimeNanosUnsafe() }, read: false }
    const sample = Effect.gen(function* () {
      // Until a first reading, any reading is taken, however slow: its error (half its round trip)
      // beats the host's clock, which may be days off (a re-test's sender behind a 2.2 s round trip
      // stayed 8 days off, its Retry-After waits an hour long, and no gauge for an alert).
      const { roundTrip_ms, reading } = yield* measureDatabaseClock(sql, local, state.read ? databaseClockSampleRtt_ms_max : Number.POSITIVE_INFINITY)
      if (reading === undefined) {
        yield* Metric.update(databaseClockSamplesRefused, 1)
        return yield* Effect.logWarning(`database clock: a reading took ${Math.round(roundTrip_ms)} ms (over ${databaseClockSampleRtt_ms_max}); the last one is kept`)
      }
      state.anchor = reading.anchor
      state.read = true
      yield* Metric.update(databaseClockOffset, reading.hostOffset_ms / 1_000)
    })
    const sampleOrWarn = sample.pipe(
      Effect.catch((error) => Metric.update(databaseClockSamplesRefused, 1).pipe(Effect.andThen(Effect.logWarning("database clock: a reading failed; the last one is kept", error))))
    )
    const untilRead = Effect.repeat(sampleOrWarn, { schedule: Schedule.spaced(Duration.millis(databaseClockRetry_ms)), until: () => state.read })
    yield* Metric.update(databaseClockSamplesRefused, 0)
    if (firstReading === "required") {
      yield* untilRead.pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(databaseClockFirstReading_ms_max),
          orElse: () => Effect.fail(new DatabaseClockUnread({ message: `no reading of the database's clock within ${databaseClockFirstReading_ms_max} ms: this process dates what it writes by it` }))
        })
      )
    } else {
      yield* sampleOrWarn.pipe(Effect.timeout(Duration.millis(databaseClockFirstSample_ms_max)), Effect.ignore)
      if (!state.read) yield* Effect.logWarning(`database clock: no reading at start; this process's own clock until one succeeds (tried every ${databaseClockRetry_ms} ms)`)
    }
    // After the start: until a first reading (background), then one every databaseClockSync_ms
    // (a reading just taken at start is not taken again at once).
    const periodically = Effect.forever(Effect.andThen(Effect.sleep(Duration.millis(databaseClockSync_ms)), sampleOrWarn))
    yield* Effect.forkScoped(Effect.andThen(Effect.suspend(() => (state.read ? Effect.void : untilRead)), periodically))
    return anchoredClock(local, state)
  })
)

/** The server's and the publisher's: the first reading required. */
export const DatabaseClockLive = databaseClockLayer("required")
