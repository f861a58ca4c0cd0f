// SERVER_INSTANCES=2: the real entry point as a node:cluster primary with two server instances on
// one port (packages/server/src/Cluster.ts). Each instance has its own pools and workers; they
// must keep every guarantee together: one payment per key, the same stored answer from either
// instance, every outbox event published, and an instance that dies replaced.
import { assert, layer } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { readdirSync, readFileSync } from "node:fs"
import { request as httpRequest } from "node:http"
import { type Answer, stringField } from "./support/Http.ts"
import { createMerchant, createPayment, newKey, paymentCount, TestServer, testServerLayer } from "./support/TestServer.ts"

const Live = testServerLayer({ env: { SERVER_INSTANCES: "2", DATABASE_POOL_SIZE: "4", OUTBOX_POLL_INTERVAL_MS: "100" } })

const describeAnswer = (answer: Answer) => `${answer.status} ${answer.text.slice(0, 300)}`

/** The primary's child processes (Linux: /proc/<pid>/task/<pid>/children). */
const instancePids = (primaryPid: number): ReadonlyArray<number> =>
  readFileSync(`/proc/${primaryPid}/task/${primaryPid}/children`, "utf8").trim().split(/\s+/).filter((pid) => pid !== "").map(Number)

/** Polls `check` every 100 ms until it holds, at most `attempts` times (a bound, not a timing assertion). */
const eventually = <E, R>(what: string, attempts: number, check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function* () {
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (yield* check) return
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 100)))
    }
    assert.fail(`${what}: still not true after ${attempts} polls`)
  })

const unpublishedCount = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*)::bigint AS n FROM outbox_events WHERE published_at IS NULL`)
  return rows[0]?.n ?? -1n
})

layer(Live, { excludeTestServices: true, timeout: "120 seconds" })("two server instances (SERVER_INSTANCES=2)", (it) => {
  it.effect("both serve one port; one payment per key whichever instance answers; every event published once claimed", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      assert.strictEqual(instancePids(server.process.pid()).length, 2, "the primary runs two instances")
      const m = yield* createMerchant("Cluster")
      // Distinct keys, concurrently: spread over both instances by the primary's round robin.
      const keys = Array.from({ length: 16 }, () => newKey("cluster"))
      const created = yield* Effect.forEach(keys, (key) => createPayment(m, key), { concurrency: 8 })
      for (const answer of created) assert.strictEqual(answer.status, 201, describeAnswer(answer))
      // Every retry gets the stored bytes, from either instance.
      const retried = yield* Effect.forEach(keys, (key) => createPayment(m, key), { concurrency: 8 })
      retried.forEach((answer, index) => assert.strictEqual(answer.text, created[index]?.text))
      // A finished key replayed 32 times at once, spread over both instances: each answers the stored
      // bytes. Each instance must accept the Redis copy the other cached (one cache secret for the
      // primary's instances); otherwise each replay overwrites the other's copy and a replay meeting
      // the refill answered 409 idempotency_key_in_use for a key that was long finished.
      for (let round = 0; round < 4; round++) {
        const replays = yield* Effect.forEach(Array.from({ length: 32 }), () => createPayment(m, keys[0] ?? "none"), { concurrency: 32 })
        for (const answer of replays) assert.strictEqual(`${answer.status} ${answer.text}`, `201 ${created[0]?.text}`)
      }
      // One key sent 8 times at once: one payment, whatever instance each request reached.
      const contested = newKey("contested")
      const answers = yield* Effect.forEach(Array.from({ length: 8 }), () => createPayment(m, contested), { concurrency: 8 })
      const ids = new Set(answers.filter((answer) => answer.status === 201).map((answer) => stringField(answer, "id")))
      assert.isAtMost(ids.size, 1)
      for (const answer of answers) assert.include([201, 409], answer.status, describeAnswer(answer))
      assert.strictEqual(yield* paymentCount(m.merchantId), keys.length + ids.size)
      // Both instances' publishers share the outbox (SKIP LOCKED): everything ends up published.
      yield* eventually("every outbox event published", 300, Effect.map(unpublishedCount, (n) => n === 0n))
    }))

  it.effect("an instance that dies is replaced, and the port keeps answering meanwhile", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const before = instancePids(server.process.pid())
      const victim = before[0]
      if (victim === undefined) return assert.fail("no instance to kill")
      process.kill(victim, "SIGKILL")
      const m = yield* createMerchant("Cluster survivor")
      // A connection handed to the instance at the moment it died may fail; the client retries with
      // the same key (that is what the key is for) and gets its payment.
      const key = newKey("survivor")
      yield* eventually("a create answered while an instance is down", 100, Effect.map(Effect.result(createPayment(m, key)), (answer) => answer._tag === "Success" && answer.success.status === 201))
      assert.strictEqual(yield* paymentCount(m.merchantId), 1)
      yield* eventually("a new instance replaces the killed one", 300, Effect.sync(() => {
        const now = instancePids(server.process.pid())
        return now.length === 2 && !now.includes(victim)
      }))
    }))
})

/**
 * New connections, one request each, from `loops` clients for `duration_ms`; each request waits
 * at most `wait_ms` for its answer. Counted: answered, failed (reset, refused), left hanging.
 */
const connectionStorm = (port: number, loops: number, duration_ms: number, wait_ms: number) =>
  Effect.promise(async () => {
    const outcomes = { answered: 0, failed: 0, hanging: 0 }
    const one = () =>
      new Promise<void>((resolve) => {
        const request = httpRequest({ host: "127.0.0.1", port, path: "/health/live", agent: false, headers: { connection: "close" } }, (response) => {
          response.resume()
          response.on("end", () => {
            outcomes.answered += 1
            resolve()
          })
        })
        const timer = setTimeout(() => {
          outcomes.hanging += 1
          request.destroy()
          resolve()
        }, wait_ms)
        request.on("error", () => {
          outcomes.failed += 1
          resolve()
        })
        request.on("close", () => clearTimeout(timer))
        request.end()
      })
    const deadline_ms = Date.now() + duration_ms
    const loop = async () => {
      while (Date.now() < deadline_ms) await one()
    }
    await Promise.all(Array.from({ length: loops }, loop))
    return outcomes
  })

layer(Live, { excludeTestServices: true, timeout: "90 seconds" })("two server instances: a kill -9 amid new connections", (it) => {
  it.effect("every connection is answered or reset, none left hanging (each instance listens on its own socket, SO_REUSEPORT)", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const port = Number(new URL(server.process.baseUrl).port)
      yield* eventually("two instances up", 300, Effect.sync(() => instancePids(server.process.pid()).length === 2))
      const storm = yield* Effect.forkChild(connectionStorm(port, 16, 4_000, 8_000))
      yield* Effect.sleep("2 seconds")
      const victim = instancePids(server.process.pid())[0]
      if (victim === undefined) return assert.fail("no instance to kill")
      process.kill(victim, "SIGKILL")
      const outcomes = yield* Fiber.join(storm)
      // With node:cluster's round robin, the primary handed a connection to the dying instance and
      // nobody ever answered or closed it (outside review: about one per kill; here 2 of 37,633).
      assert.strictEqual(outcomes.hanging, 0, JSON.stringify(outcomes))
      assert.isAbove(outcomes.answered, 100, JSON.stringify(outcomes))
    }))
})

// A first deployment of a cluster: the primary migrates an EMPTY database before forking, as the
// schema owner (MIGRATION_DATABASE_URL), while the instances serve as pay_app. It used to run the
// migrator as DATABASE_URL, which pay_app's grants refuse (no DDL, no lock of the migrator's table):
// the cluster never started on a database with pending migrations.
layer(testServerLayer({ emptyDatabase: true, env: { SERVER_INSTANCES: "2", DATABASE_POOL_SIZE: "4" } }), { excludeTestServices: true, timeout: "120 seconds" })(
  "two server instances on an empty database",
  (it) => {
    it.effect("the primary migrates it as the owner, then the instances serve as pay_app: a payment is created", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const [migrated] = yield* decodeRows(Schema.Struct({ applied: Schema.Int }))(sql`SELECT count(*)::int AS applied FROM effect_sql_migrations`)
        const carried = readdirSync(new URL("../../../migrations", import.meta.url)).filter((file) => /^\d+_[a-z0-9_]+\.sql$/.test(file)).length
        assert.strictEqual(migrated?.applied, carried, "every migration applied")
        const merchant = yield* createMerchant("Cluster, first deployment")
        const created = yield* createPayment(merchant, newKey("first"))
        assert.strictEqual(created.status, 201, describeAnswer(created))
      }))
  }
)

// Each instance's own /metrics: on one shared METRICS_PORT (node:cluster hands a listener's
// connections out in turn) every scrape read another instance and counters seemed to reset
// (outside operator review). Instance i serves METRICS_PORT + i.
// Below Linux's ephemeral range (32768..60999): a client's outgoing connection (this file's
// connection storm leaves thousands in TIME_WAIT) never holds the port the instance must bind.
const metricsBase = 20_000 + Math.floor(Math.random() * 12_000)
layer(testServerLayer({ env: { SERVER_INSTANCES: "2", DATABASE_POOL_SIZE: "4", METRICS_PORT: String(metricsBase) } }), { excludeTestServices: true, timeout: "120 seconds" })(
  "two server instances, each its own metrics port",
  (it) => {
    it.effect("METRICS_PORT and METRICS_PORT + 1 each answer /metrics (before, the second port had no listener and the first answered for either instance)", () =>
      Effect.gen(function* () {
        const scrape = (port: number) =>
          Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`).then(async (response) => ({ status: response.status, text: await response.text() }), () => ({ status: 0, text: "" })))
        // The test server is ready once one instance answers; the other may still be starting.
        for (const port of [metricsBase, metricsBase + 1]) {
          yield* eventually(`an instance serves /metrics on ${port}`, 200, Effect.map(scrape(port), (answer) => answer.status === 200 && answer.text.includes("nodejs_heap_used_bytes")))
        }
      }))
  }
)
