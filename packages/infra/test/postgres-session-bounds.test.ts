import { assert, describe, it } from "@effect/vitest"
import { acquireTestDatabase } from "@pay/testkit"
import { type FaultProxy, startPostgresProxy } from "@pay/testkit/FaultProxy"
import { ConfigProvider, Context, Deferred, Effect, Fiber, Layer, Redacted, Result, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { DatabaseIdleInTransactionTimeout, decodeRows, postgresLayer, serverTcpBounds, sessionStartupParameters } from "../src/index.ts"

/**
 * The backend's side of a partition (PostgresSessionBounds.ts) against a real Postgres: the fault
 * proxy's partition holds a closing client's FIN as a real one does, so the database keeps the
 * session, its transaction and its row lock, until a bound of its own ends it.
 */
const answerTimeout_ms = 1_000
const idleInTransactionTimeout_ms = 2_000

const Count = Schema.Struct({ n: Schema.Int })
const Setting = Schema.Struct({ name: Schema.String, setting: Schema.String })

interface Client {
  readonly sql: SqlClient.SqlClient
}

/** A service's client (`bounded`: with the session bounds), or with `watched` false one without the answer watch (the test's own). */
const clientOf = (url: string, applicationName: string, bounded: boolean, watched = true) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(postgresLayer({
      url: Redacted.make(url),
      maxConnections: 2,
      answerTimeout_ms: watched ? answerTimeout_ms : 0,
      applicationName,
      ...(bounded ? { idleInTransactionTimeout_ms } : {})
    }))
    const client: Client = { sql: Context.get(context, SqlClient.SqlClient) }
    return client
  })

/** A test database with one row to lock, a direct (unpartitioned) client, and a proxy in front of it. */
const setup = Effect.gen(function* () {
  const database = yield* acquireTestDatabase
  const direct = yield* clientOf(database.url, "pay-test-bounds-direct", false, false)
  yield* direct.sql`CREATE TABLE locked_row (id int PRIMARY KEY)`
  yield* direct.sql`INSERT INTO locked_row VALUES (1)`
  const { proxy, url: viaProxy } = yield* startPostgresProxy(database.url)
  return { database, direct, proxy, viaProxy }
})

/**
 * What a client's sessions are doing: `open` (idle in a transaction: the one a partition left) or
 * `waiting` (waiting for a lock). The pool reconnects under the same name, so idle sessions are not
 * counted.
 */
type Doing = "open" | "waiting"

const sessionsDoing = (direct: Client, applicationName: string, doing: Doing) =>
  decodeRows(Count)(direct.sql`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE application_name = ${applicationName}
      AND (CASE WHEN ${doing} = 'open' THEN state = 'idle in transaction' ELSE wait_event_type = 'Lock' END)`).pipe(
    Effect.map((rows) => rows[0]?.n ?? 0)
  )

/** Waits (bounded) until no session of `applicationName` is doing that; answers how long it took, or undefined. */
const sessionGoneWithin = (direct: Client, applicationName: string, doing: Doing, bound_ms: number) =>
  Effect.gen(function* () {
    const started_ms = Date.now()
    while (Date.now() - started_ms < bound_ms) {
      if ((yield* sessionsDoing(direct, applicationName, doing)) === 0) return Date.now() - started_ms
      yield* Effect.sleep("100 millis")
    }
    return undefined
  })

/**
 * In a transaction through the proxy: locks the row, then the proxy partitions, then the
 * transaction sends a statement that gets no answer (the answer watch closes the connection after
 * its timeout). Answers the transaction's fiber (its exit) and when the partition began.
 */
const lockThenPartition = (client: Client, proxy: FaultProxy) =>
  Effect.gen(function* () {
    const locked = yield* Deferred.make<void>()
    const partitioned = yield* Deferred.make<void>()
    const fiber = yield* Effect.forkChild(client.sql.withTransaction(Effect.gen(function* () {
      yield* client.sql`SELECT id FROM locked_row WHERE id = 1 FOR UPDATE`
      yield* Deferred.succeed(locked, undefined)
      yield* Deferred.await(partitioned)
      yield* client.sql`SELECT 1`
    })).pipe(Effect.exit))
    yield* Deferred.await(locked)
    // Let the lock's answer arrive whole before the partition.
    yield* Effect.sleep("200 millis")
    yield* proxy.setMode("blackhole")
    const partitionedAt_ms = Date.now()
    yield* Deferred.succeed(partitioned, undefined)
    return { fiber, partitionedAt_ms }
  })

/** Tries the row lock from the direct client within `lockTimeout_ms`: true when it was taken. */
const takesTheLock = (direct: Client, lockTimeout_ms: number) =>
  direct.sql.withTransaction(Effect.gen(function* () {
    yield* direct.sql.unsafe(`SET LOCAL lock_timeout = '${lockTimeout_ms}ms'`)
    yield* direct.sql`SELECT id FROM locked_row WHERE id = 1 FOR UPDATE`
  })).pipe(Effect.result, Effect.map((result) => result._tag === "Success"))

describe("the backend's side of a partition (PostgresSessionBounds.ts)", () => {
  it.live("a transaction a partition leaves open releases its row lock within the idle-in-transaction timeout; without it the lock is held until the heal", () =>
    Effect.scoped(Effect.gen(function* () {
      const { direct, proxy, viaProxy } = yield* setup
      const bounded = yield* clientOf(viaProxy, "pay-test-bounds-on", true)
      const unbounded = yield* clientOf(viaProxy, "pay-test-bounds-off", false)

      // Without the bound: the watch closes the client's side, the FIN is held by the partition,
      // and the backend keeps the transaction and its lock.
      const off = yield* lockThenPartition(unbounded, proxy)
      const offResult = yield* Fiber.join(off.fiber)
      // A failure (and a defect: effect/sql's ROLLBACK on the closed connection dies; the server answers it 503, Respond.ts).
      assert.strictEqual(offResult._tag, "Failure", "the watch cut the partitioned statement")
      assert.isFalse(yield* takesTheLock(direct, idleInTransactionTimeout_ms * 2), "without the bound the partitioned backend still holds the row")
      assert.strictEqual(yield* sessionsDoing(direct, "pay-test-bounds-off", "open"), 1, "the partitioned backend's transaction is still open")

      // Heal: the held FIN arrives, the backend ends and rolls back.
      yield* proxy.setMode("pass")
      assert.isDefined(yield* sessionGoneWithin(direct, "pay-test-bounds-off", "open", 5_000))

      // With the bound: the same partition, and the lock is free within the timeout.
      const on = yield* lockThenPartition(bounded, proxy)
      assert.isTrue(yield* takesTheLock(direct, idleInTransactionTimeout_ms * 3), "the bounded backend released the row")
      const released_ms = Date.now() - on.partitionedAt_ms
      assert.isAtMost(released_ms, idleInTransactionTimeout_ms + 1_500, `released after ${released_ms} ms`)
      assert.strictEqual(yield* sessionsDoing(direct, "pay-test-bounds-on", "open"), 0, "Postgres ended the session")
      assert.strictEqual((yield* Fiber.join(on.fiber))._tag, "Failure")
      yield* proxy.setMode("pass")
    })), 40_000)

  it.live("a statement still waiting for a lock when the watch closes its connection is cancelled on the server within the client check interval; without it the backend keeps waiting", () =>
    Effect.scoped(Effect.gen(function* () {
      const { database, direct } = yield* setup
      const holder = yield* clientOf(database.url, "pay-test-bounds-holder", false, false)
      const bounded = yield* clientOf(database.url, "pay-test-bounds-waiter-on", true)
      const unbounded = yield* clientOf(database.url, "pay-test-bounds-waiter-off", false)
      const locked = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holding = yield* Effect.forkChild(holder.sql.withTransaction(Effect.gen(function* () {
        yield* holder.sql`SELECT id FROM locked_row WHERE id = 1 FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(release)
      })))
      // Whatever the assertions say, the holder commits before the clients close.
      yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined).pipe(Effect.andThen(Fiber.await(holding))))
      yield* Deferred.await(locked)
      // Both wait on the row; the watch closes both connections after its timeout (no partition:
      // the server sees the close at once, but a backend waiting for a lock does not read it).
      const waits = yield* Effect.all([
        bounded.sql`SELECT id FROM locked_row WHERE id = 1 FOR UPDATE`.pipe(Effect.result),
        unbounded.sql`SELECT id FROM locked_row WHERE id = 1 FOR UPDATE`.pipe(Effect.result)
      ], { concurrency: 2 })
      assert.deepStrictEqual(waits.map((wait) => wait._tag), ["Failure", "Failure"], "the watch cut both waits")
      const gone_ms = yield* sessionGoneWithin(direct, "pay-test-bounds-waiter-on", "waiting", serverTcpBounds.clientConnectionCheckInterval_ms + 2_000)
      assert.isDefined(gone_ms, "the bounded waiter's backend ended while the lock was still held")
      assert.strictEqual(yield* sessionsDoing(direct, "pay-test-bounds-waiter-off", "waiting"), 1, "the unbounded waiter's backend still waits for the lock")
      yield* Deferred.succeed(release, undefined)
      assert.strictEqual((yield* Fiber.join(holding)), undefined)
    })), 30_000)

  it.live("a service connection carries the bounds in its startup packet", () =>
    Effect.scoped(Effect.gen(function* () {
      const { database } = yield* setup
      const bounded = yield* clientOf(database.url, "pay-test-bounds-settings", true)
      const expected = sessionStartupParameters(idleInTransactionTimeout_ms)
      const names = Object.keys(expected)
      const rows = yield* decodeRows(Setting)(bounded.sql`SELECT name, setting FROM pg_settings WHERE name IN ${bounded.sql.in(names)}`)
      const actual = Object.fromEntries(rows.map((row) => [row.name, row.setting]))
      assert.deepStrictEqual(actual, { ...expected })
      assert.isUndefined(sessionStartupParameters(0)["idle_in_transaction_session_timeout"], "0 leaves the server's setting")
    })), 30_000)

  it.effect("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: 30 s by default, 0 (the server's), 1 s..1 h; anything else refused at start-up", () =>
    Effect.gen(function* () {
      const read = (env: Record<string, string>) => Effect.result(DatabaseIdleInTransactionTimeout.parse(ConfigProvider.fromEnv({ env })))
      const value = (env: Record<string, string>) => Effect.map(read(env), (result) => Result.isSuccess(result) ? result.success : "refused")
      assert.strictEqual(yield* value({}), 30_000)
      assert.strictEqual(yield* value({ DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: "0" }), 0)
      assert.strictEqual(yield* value({ DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: "1000" }), 1_000)
      assert.strictEqual(yield* value({ DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: "999" }), "refused")
      assert.strictEqual(yield* value({ DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: "3600001" }), "refused")
      assert.strictEqual(yield* value({ DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: "30s" }), "refused")
    }))
})
