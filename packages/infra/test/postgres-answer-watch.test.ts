import { assert, describe, it } from "@effect/vitest"
import { acquireTestDatabase, throwaway } from "@pay/testkit"
import { execFile } from "node:child_process"
import { chmodSync, chownSync, readFileSync, statSync } from "node:fs"
import * as tls from "node:tls"
import { promisify } from "node:util"
import { startPostgresProxy } from "@pay/testkit/FaultProxy"
import { Context, Effect, Layer, Metric, Redacted, Schema, Stream } from "effect"
import { SqlClient } from "effect/sql"
import { isSqlError } from "effect/sql/SqlError"
import { answerTimeoutsSoFar, DatabasePoolMetricsLive, dbAnswerTimeouts, decodeRows, type PostgresAddress, postgresLayer, watchedAddressOf, ProcessMetricsLive, sqlFailureKind } from "../src/index.ts"

/**
 * The database answer timeout (PostgresAnswerWatch.ts) against a real Postgres through the fault
 * proxy's partition (`blackhole`: open connections go silent, new ones hang; bytes held, delivered
 * when it heals). Without the watch, the statements below wait for as long as the partition lasts
 * (`pnpm scenario postgres-partitioned` hung past 60 s).
 */
const answerTimeout_ms = 1_000
/** The watch looks every 250 ms; a statement fails within the timeout, a tick and some scheduling. */
const failsWithin_ms = answerTimeout_ms + 1_000

const Pid = Schema.Struct({ pid: Schema.Int })
const backendPid = (sql: SqlClient.SqlClient) =>
  decodeRows(Pid)(sql`SELECT pg_backend_pid() AS pid`).pipe(Effect.map((rows) => rows[0]?.pid ?? -1))

/** A client on a fresh test database reached through a fault proxy, with the answer timeout on. */
const throughProxy = Effect.gen(function* () {
  const database = yield* acquireTestDatabase
  const { proxy, url: viaProxy } = yield* startPostgresProxy(database.url)
  const client = yield* Layer.build(postgresLayer({ url: Redacted.make(viaProxy), maxConnections: 2, answerTimeout_ms, applicationName: "pay-test-watch" }))
  return { proxy, sql: Context.get(client, SqlClient.SqlClient) }
})

const execFileAsync = promisify(execFile)

/**
 * A private Postgres (`throwaway`) with TLS on (a self-signed certificate for 127.0.0.1, trusted by
 * this worker's default CAs for the test), reached through a fault proxy with `sslmode=require`.
 */
const throughProxyOverTls = Effect.gen(function* () {
  const server = yield* throwaway("postgres")
  const data = `${server.dir}/data`
  yield* Effect.promise(() => execFileAsync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", `${data}/server.key`, "-out", `${data}/server.crt`
  ]))
  // Postgres reads its key only when owned by its OS user (the data folder's) and private.
  const owner = statSync(data)
  for (const file of ["server.key", "server.crt"]) chownSync(`${data}/${file}`, owner.uid, owner.gid)
  chmodSync(`${data}/server.key`, 0o600)
  const admin = yield* Layer.build(postgresLayer({ url: Redacted.make(server.url), maxConnections: 1, applicationName: "pay-test-watch-admin" }))
  const adminSql = Context.get(admin, SqlClient.SqlClient)
  yield* adminSql`ALTER SYSTEM SET ssl = on`
  yield* adminSql`SELECT pg_reload_conf()`
  const certificate = readFileSync(`${data}/server.crt`, "utf8")
  const before = tls.getCACertificates("default")
  yield* Effect.acquireRelease(
    Effect.sync(() => tls.setDefaultCACertificates([...before, certificate])),
    () => Effect.sync(() => tls.setDefaultCACertificates(before))
  )
  const { proxy, url: viaProxy } = yield* startPostgresProxy(`${server.url}?sslmode=require`)
  const client = yield* Layer.build(postgresLayer({ url: Redacted.make(viaProxy), maxConnections: 2, answerTimeout_ms, applicationName: "pay-test-watch-tls" }))
  return { proxy, sql: Context.get(client, SqlClient.SqlClient) }
})

/** Runs `statement` and answers how long it took and how it ended. */
const timed = <A, E>(statement: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const started_ms = Date.now()
    const result = yield* Effect.result(statement.pipe(Effect.timeout("20 seconds")))
    return { elapsed_ms: Date.now() - started_ms, result }
  })

describe("the database answer timeout (DATABASE_ANSWER_TIMEOUT_MS)", () => {
  it.live("a statement on a partitioned connection fails within the timeout as a database outage (503), and the pool reconnects after the heal", () =>
    Effect.scoped(Effect.gen(function* () {
      const { proxy, sql } = yield* throughProxy
      yield* backendPid(sql)
      const closedBefore = answerTimeoutsSoFar()
      // Right after an answer: the partition may hold the end of it (its ReadyForQuery), so the
      // next statement waits for the connection to be free before it writes anything. Still owed.
      yield* proxy.setMode("blackhole")
      const during = yield* timed(backendPid(sql))
      assert.strictEqual(during.result._tag, "Failure", "no answer through a partition")
      assert.isAtLeast(during.elapsed_ms, answerTimeout_ms - 50)
      assert.isAtMost(during.elapsed_ms, failsWithin_ms, `failed after ${during.elapsed_ms} ms`)
      if (during.result._tag === "Failure") {
        const error = during.result.failure
        assert.isTrue(isSqlError(error) && sqlFailureKind(error) === "unavailable", `a connection failure (503 database_unavailable): ${String(error)}`)
      }
      assert.isAtLeast(answerTimeoutsSoFar() - closedBefore, 1, "the watch closed the silent connection")
      // A new connection hangs as well; it is bounded too.
      const opening = yield* timed(backendPid(sql))
      assert.strictEqual(opening.result._tag, "Failure")
      assert.isAtMost(opening.elapsed_ms, failsWithin_ms, `a new connection failed after ${opening.elapsed_ms} ms`)
      yield* proxy.setMode("pass")
      const after = yield* timed(backendPid(sql))
      assert.strictEqual(after.result._tag, "Success", "after the heal the pool opens a working connection")
    })), 30_000)

  it.live("a connection that owes nothing is never closed: an idle one outlives a partition longer than the timeout", () =>
    Effect.scoped(Effect.gen(function* () {
      const { proxy, sql } = yield* throughProxy
      const pid = yield* backendPid(sql)
      // Let the answer's last bytes arrive before the partition: the connection owes nothing.
      yield* Effect.sleep("200 millis")
      yield* proxy.setMode("blackhole")
      yield* Effect.sleep(`${answerTimeout_ms * 2} millis`)
      yield* proxy.setMode("pass")
      const again = yield* backendPid(sql)
      assert.strictEqual(again, pid, "the same backend answers: the idle connection was kept")
    })), 30_000)

  it.live("a statement that answers within the bound is untouched, one that stays silent past it is closed (the trade-off: long statements belong to tools without the watch)", () =>
    Effect.scoped(Effect.gen(function* () {
      const { sql } = yield* throughProxy
      const quick = yield* timed(sql`SELECT pg_sleep(${(answerTimeout_ms * 0.5) / 1_000})`)
      assert.strictEqual(quick.result._tag, "Success")
      const silent = yield* timed(sql`SELECT pg_sleep(${(answerTimeout_ms * 3) / 1_000})`)
      assert.strictEqual(silent.result._tag, "Failure", "a statement silent for 3x the bound is cut")
      assert.isAtMost(silent.elapsed_ms, failsWithin_ms)
    })), 30_000)

  it.live("a row stream whose reader is slower than the bound is not cut: the driver's pause is not the server's silence", () =>
    Effect.scoped(Effect.gen(function* () {
      const { sql } = yield* throughProxy
      // Past 512 buffered rows the driver pauses the socket until the reader catches up.
      // A result far larger than the socket buffers (20 MB), and a reader that stops for longer
      // than the bound twice at the start: the server is blocked on a full socket meanwhile.
      let chunks = 0
      let rows = 0
      const read = yield* Stream.runForEachArray(sql`SELECT n, repeat('x', 200) AS filler FROM generate_series(1, 100000) AS n`.stream, (batch) =>
        Effect.suspend(() => {
          chunks += 1
          rows += batch.length
          return chunks <= 2 ? Effect.sleep(`${answerTimeout_ms * 1.5} millis`) : Effect.void
        })).pipe(Effect.result)
      assert.strictEqual(read._tag, "Success", read._tag === "Failure" ? String(read.failure) : "")
      assert.strictEqual(rows, 100_000)
    })), 30_000)

  it.live("db_client_answer_timeouts_total counts each close once, with the server's metric layers (process and pool) both running", () =>
    Effect.scoped(Effect.gen(function* () {
      process.env["RUNTIME_METRICS_INTERVAL_MS"] = "500"
      const { proxy, sql } = yield* throughProxy
      yield* Layer.build(Layer.mergeAll(ProcessMetricsLive, DatabasePoolMetricsLive.pipe(Layer.provide(Layer.succeed(SqlClient.SqlClient, sql)))))
      yield* backendPid(sql)
      yield* Effect.sleep("1200 millis")
      const closesBefore = answerTimeoutsSoFar()
      const countedBefore = (yield* Metric.value(dbAnswerTimeouts)).count
      yield* proxy.setMode("blackhole")
      yield* timed(backendPid(sql))
      yield* proxy.setMode("pass")
      const closed = answerTimeoutsSoFar() - closesBefore
      assert.isAtLeast(closed, 1)
      // The layers count on their sampling rounds (500 ms here, 5 s by default; a loaded machine
      // delays them): wait (bounded) until the closes are counted, then two rounds more, in
      // which a second counter of the same closes would add them again.
      const counted = Effect.map(Metric.value(dbAnswerTimeouts), (state) => state.count - countedBefore)
      const deadline_ms = Date.now() + 15_000
      while ((yield* counted) < closed && Date.now() < deadline_ms) yield* Effect.sleep("100 millis")
      yield* Effect.sleep("1200 millis")
      assert.strictEqual(yield* counted, closed, "the counter moved by the closes, once each")
    })), 30_000)

  it.live("over TLS (sslmode=require, a real TLS Postgres): the statement sent into a partition fails within the timeout, an idle connection is kept, the pool reconnects after the heal", () =>
    Effect.scoped(Effect.gen(function* () {
      const { sql, proxy } = yield* throughProxyOverTls
      const Ssl = Schema.Struct({ ssl: Schema.Boolean, pid: Schema.Int })
      const [session] = yield* decodeRows(Ssl)(sql`SELECT ssl, pid FROM pg_stat_ssl WHERE pid = pg_backend_pid()`)
      assert.deepInclude(session, { ssl: true }, "the connection is encrypted")
      // Idle across a partition longer than the bound: owes nothing, kept.
      yield* Effect.sleep("200 millis")
      yield* proxy.setMode("blackhole")
      yield* Effect.sleep(`${answerTimeout_ms * 2} millis`)
      yield* proxy.setMode("pass")
      assert.strictEqual(yield* backendPid(sql), session?.pid, "the idle TLS connection was kept")
      yield* Effect.sleep("200 millis")
      const closedBefore = answerTimeoutsSoFar()
      yield* proxy.setMode("blackhole")
      const during = yield* timed(backendPid(sql))
      assert.strictEqual(during.result._tag, "Failure", "no answer through a partition")
      assert.isAtMost(during.elapsed_ms, failsWithin_ms, `failed after ${during.elapsed_ms} ms (unwatched: the 20 s timeout of this test)`)
      if (during.result._tag === "Failure") {
        const error = during.result.failure
        assert.isTrue(isSqlError(error) && sqlFailureKind(error) === "unavailable", `a connection failure (503 database_unavailable): ${String(error)}`)
      }
      assert.isAtLeast(answerTimeoutsSoFar() - closedBefore, 1, "the watch closed the silent TLS connection")
      // A new connection's SSLRequest into the partition is bounded too.
      const opening = yield* timed(backendPid(sql))
      assert.strictEqual(opening.result._tag, "Failure")
      assert.isAtMost(opening.elapsed_ms, failsWithin_ms, `a new connection failed after ${opening.elapsed_ms} ms`)
      yield* proxy.setMode("pass")
      const after = yield* timed(decodeRows(Ssl)(sql`SELECT ssl, pid FROM pg_stat_ssl WHERE pid = pg_backend_pid()`))
      assert.strictEqual(after.result._tag, "Success", "after the heal the pool opens a working TLS connection")
      if (after.result._tag === "Success") assert.deepInclude(after.result.success[0], { ssl: true })
      // A statement longer than the bound over TLS is cut as well (the trade-off, as in plain).
      const silent = yield* timed(sql`SELECT pg_sleep(${(answerTimeout_ms * 3) / 1_000})`)
      assert.strictEqual(silent.result._tag, "Failure")
      assert.isAtMost(silent.elapsed_ms, failsWithin_ms)
    })), 60_000)

  it("watchedAddressOf: TCP, a Unix socket directory, TLS watched opaquely, and no watch for several hosts or a URL the driver refuses", () => {
    const plain = (address: PostgresAddress) => ({ address, tls: false })
    assert.deepStrictEqual(watchedAddressOf("postgres://pay_app@127.0.0.1:6543/payments"), plain({ host: "127.0.0.1", port: 6543 }))
    assert.deepStrictEqual(watchedAddressOf("postgres://pay_app@localhost/payments"), plain({ host: "localhost", port: 5432 }))
    assert.deepStrictEqual(watchedAddressOf("postgres://pay_app@localhost/payments?host=/var/run/postgresql"), plain({ path: "/var/run/postgresql/.s.PGSQL.5432" }))
    assert.deepStrictEqual(watchedAddressOf("postgres://pay_app@127.0.0.1/payments?sslmode=disable"), plain({ host: "127.0.0.1", port: 5432 }))
    for (const mode of ["require", "verify-ca", "verify-full", "prefer", "allow"]) {
      assert.deepStrictEqual(watchedAddressOf(`postgres://pay_app@db.example/payments?sslmode=${mode}`), { address: { host: "db.example", port: 5432 }, tls: true }, mode)
    }
    assert.isUndefined(watchedAddressOf("postgres://pay_app@db.example/payments?sslmode=sometimes"))
    assert.isUndefined(watchedAddressOf("postgres://pay_app@a,b/payments"))
    // As the driver reads them (outside review): the port parameter, a percent-encoded socket
    // directory, the last of a repeated parameter, a bad escape left to the driver's own error.
    assert.deepStrictEqual(watchedAddressOf("postgres://pay_app@h/payments?port=6543"), plain({ host: "h", port: 6543 }))
    assert.deepStrictEqual(watchedAddressOf("postgres://pay_app@h/payments?port=6543&host=/tmp"), plain({ path: "/tmp/.s.PGSQL.6543" }))
    assert.deepStrictEqual(watchedAddressOf("postgres://pay_app@%2Fvar%2Frun%2Fpostgresql/payments"), plain({ path: "/var/run/postgresql/.s.PGSQL.5432" }))
    assert.deepStrictEqual(watchedAddressOf("postgres://pay_app@h/payments?host=/a&host=b"), plain({ host: "b", port: 5432 }))
    assert.strictEqual(watchedAddressOf("postgres://pay_app@h/payments?sslmode=disable&sslmode=require")?.tls, true)
    assert.isUndefined(watchedAddressOf("postgres://pay_app@a%zzb/payments"))
    assert.isUndefined(watchedAddressOf("postgres://pay_app@h/payments?port=0"))
  })
})
