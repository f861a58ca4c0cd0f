// DatabaseClockLive (src/DatabaseClock.ts): `Clock` as the database's, whatever this process's
// own clock says; durations (the monotonic clock, sleeps) stay the process's own.
import { assert, layer } from "@effect/vitest"
import { acquireTestDatabase } from "@pay/testkit"
import { Clock, DateTime, Effect, Fiber, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { DatabaseClockLive, measureDatabaseClock, offsetClock } from "../src/DatabaseClock.ts"
import { postgresLayer } from "../src/Postgres.ts"
import { decodeRows } from "../src/SqlRows.ts"

const day_ms = 24 * 60 * 60 * 1_000
const local = Clock.Clock.defaultValue()
const skewed = offsetClock(local, { offset_ms: 3 * day_ms })

const Database = Layer.unwrap(Effect.map(acquireTestDatabase, (info) =>
  postgresLayer({ url: Redacted.make(info.url), maxConnections: 2, applicationName: "pay-test-database-clock" })))
/** A pool of one connection on a database of its own. */
const OnePool = Layer.unwrap(Effect.map(acquireTestDatabase, (info) =>
  postgresLayer({ url: Redacted.make(info.url), maxConnections: 1, applicationName: "pay-test-database-clock-one" })))

/** The database's clock minus the given clock's now, in ms (the round trip's midpoint). */
const offsetFromDatabase = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const before = yield* Clock.currentTimeMillis
  const [row] = yield* decodeRows(Schema.Struct({ database_ms: Schema.Number }))(sql`
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS database_ms`)
  const after = yield* Clock.currentTimeMillis
  return (row?.database_ms ?? Number.NaN) - (before + after) / 2
})

layer(Database, { excludeTestServices: true })("DatabaseClockLive", (it) => {
  it.effect("a process clock 3 days ahead: the clock provided reads the database's time, to within a second", () =>
    Effect.gen(function* () {
      const raw = yield* offsetFromDatabase.pipe(Effect.provideService(Clock.Clock, skewed))
      assert.isBelow(Math.abs(raw + 3 * day_ms), 1_000, "the skewed clock is 3 days ahead of the database")
      const corrected = yield* Effect.gen(function* () {
        const offset = yield* offsetFromDatabase
        const now = yield* DateTime.now
        return { offset, now_ms: DateTime.toEpochMillis(now) }
      }).pipe(Effect.provide(DatabaseClockLive.pipe(Layer.provide(Layer.succeed(Clock.Clock, skewed)))))
      assert.isBelow(Math.abs(corrected.offset), 1_000, `DateTime.now and the database agree (off by ${corrected.offset} ms)`)
      assert.isBelow(Math.abs(corrected.now_ms - Date.now()), 1_000, "this machine's database and process share one clock")
    }))

  it.effect("a step of the host's wall clock while the process runs changes nothing: between readings the time runs on the monotonic clock (a re-test stepped a server 8 days back: authorizations dated to expire 8 days early for 10 s)", () =>
    Effect.gen(function* () {
      const host = { offset_ms: 0 }
      const stepping = offsetClock(local, host)
      yield* Effect.gen(function* () {
        assert.isBelow(Math.abs(yield* offsetFromDatabase), 1_000)
        host.offset_ms = -8 * day_ms
        assert.isBelow(Math.abs(yield* offsetFromDatabase), 1_000, "8 days stepped back: the clock provided still reads the database's time")
        host.offset_ms = 2 * 60 * 60 * 1_000
        assert.isBelow(Math.abs(yield* offsetFromDatabase), 1_000, "2 hours forward: the same")
      }).pipe(Effect.provide(DatabaseClockLive.pipe(Layer.provide(Layer.succeed(Clock.Clock, stepping)))))
    }))

  it.effect("a reading whose round trip is slow but under 2 s is used (a re-test's 280 ms round trip left a server on a clock 8 days off, silently)", () =>
    Effect.gen(function* () {
      // A host 8 days behind whose monotonic clock makes every round trip look 400 ms long.
      let ticks = 0n
      const slow: Clock.Clock = {
        ...offsetClock(local, { offset_ms: -8 * day_ms }),
        monotonicTimeNanosUnsafe: () => local.monotonicTimeNanosUnsafe() + (ticks += 400_000_000n)
      }
      const sql = yield* SqlClient.SqlClient
      const { roundTrip_ms, reading } = yield* measureDatabaseClock(sql, slow)
      assert.isAbove(roundTrip_ms, 250)
      assert.isDefined(reading, "used")
      assert.isBelow(Math.abs((reading?.hostOffset_ms ?? 0) - 8 * day_ms), 2_000, "the host is 8 days behind")
      // Over the bound: refused once a reading was taken; taken (whatever its round trip) before the first.
      ticks = 0n
      const overBound = yield* measureDatabaseClock(sql, slow, 300)
      assert.isUndefined(overBound.reading)
      ticks = 0n
      assert.isDefined((yield* measureDatabaseClock(sql, slow, Number.POSITIVE_INFINITY)).reading)
    }))

  it.effect("a reading taken while the pool is busy is timed on its own connection: the wait for the pool is not counted as the network's (a diff review: a pool of one held 1.5 s put the clock 727 ms ahead)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const holder = yield* Effect.forkChild(sql`SELECT pg_sleep(1.5)`)
      yield* Effect.sleep("100 millis")
      const offset_ms = yield* Effect.gen(function* () {
        yield* Fiber.join(holder)
        return yield* offsetFromDatabase
      }).pipe(Effect.provide(DatabaseClockLive))
      assert.isBelow(Math.abs(offset_ms), 200, `the clock provided is ${offset_ms} ms off the database's`)
    }).pipe(Effect.provide(OnePool)))
})
