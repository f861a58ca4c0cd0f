// The create path's budget (issue 18): at most one durable commit and at most 4 round trips to
// Postgres and Redis per create on the happy path, counted on the wire by proxies between the
// real server process and the real databases (support/CountingProxy.ts). A change that adds a
// statement, a transaction or a Redis call to a create fails here. Counts, never timings.
import { assert, layer } from "@effect/vitest"
import { postgresLayer } from "@pay/infra"
import { ApiKeys, MerchantRepository } from "@pay/merchants"
import { acquireTestDatabase, shortId, testRun } from "@pay/testkit"
import { Effect, Layer, Redacted } from "effect"
import { type Counters, countingProxies, type PgRoundTrip } from "./support/CountingProxy.ts"
import { call, jsonOf } from "./support/Http.ts"
import { freePort, startServerProcess } from "./support/ServerProcess.ts"
import { createMerchant, createPayment, newKey, paymentCount, TestServer } from "./support/TestServer.ts"
import { Context } from "effect"

class Proxied extends Context.Service<Proxied, { readonly counters: Counters }>()("test/Proxied") {}

const Live = Layer.unwrap(
  Effect.gen(function* () {
    const database = yield* acquireTestDatabase
    const run = testRun()
    const proxied = yield* countingProxies(database.url, run.redisUrl)
    const redisKeyPrefix = `${run.redisKeyPrefix}${shortId()}:`
    const process = yield* startServerProcess({
      port: yield* freePort,
      env: {
        DATABASE_URL: proxied.postgresUrl,
        DATABASE_POOL_SIZE: "4",
        REDIS_URL: proxied.redisUrl,
        REDIS_KEY_PREFIX: redisKeyPrefix,
        KAFKA_BROKERS: run.kafkaBrokers,
        KAFKA_TOPIC_PREFIX: run.kafkaTopicPrefix,
        // Only the request path on the wire: no publisher, the completer and reaper asleep.
        OUTBOX_PUBLISHER_ENABLED: "false",
        // The consumers' own statements (offsets, projection) are not a create's; and they would
        // read the run's shared topic (support/TestServer.ts).
        CONSUMERS_ENABLED: "false",
        COMPLETER_INTERVAL_MS: "3600000",
        REAPER_INTERVAL_MS: "3600000",
        // The webhook sender's claims and the ledger audit's ledger_verify() are background work,
        // not a create's: off, so that every round trip counted here is the request's.
        WEBHOOK_SENDER_ENABLED: "false",
        LEDGER_VERIFY_INTERVAL_MS: "0",
        // The authorization-expiry job's scan is background work too.
        EXPIRY_INTERVAL_MS: "0"
      }
    })
    const server = TestServer.of({
      process,
      database,
      redisKeyPrefix,
      redis: undefined,
      request: (method, path, options) => call(process.baseUrl, method, path, options)
    })
    const sqlLayer = postgresLayer({ url: Redacted.make(database.url), maxConnections: 2, applicationName: "pay-test-cost" })
    return Layer.mergeAll(MerchantRepository.layer, ApiKeys.layer).pipe(
      Layer.provideMerge(sqlLayer),
      Layer.merge(Layer.succeed(TestServer, server)),
      Layer.merge(Layer.succeed(Proxied, Proxied.of({ counters: proxied.counters })))
    )
  })
)

/** The API-key lookup: read-only, cached for <= 1 s, so it shows up only when the cache expired. */
const isKeyLookup = (statements: ReadonlyArray<string>) =>
  statements.length === 1 && (statements[0] ?? "").startsWith("SELECT id, merchant_id FROM api_keys")

const creates = 20

/**
 * The round trips that are not the simulated acquirer's (it stands for a remote service; its
 * tables share the database): its statements name `acquirer_sim.`, and a capture's transaction
 * (`BEGIN`, its locked read of the authorization, its record, `COMMIT`) is on its own connection while the request waits for it.
 */
const withoutAcquirer = (roundTrips: ReadonlyArray<PgRoundTrip>): Array<PgRoundTrip> => {
  const kept: Array<PgRoundTrip> = []
  let inAcquirerTransaction = false
  roundTrips.forEach((roundTrip, index) => {
    const text = roundTrip.statements.join(";")
    const next = (roundTrips[index + 1]?.statements ?? []).join(";")
    // Its transaction opens with the payment's lock and read (`acquirer_sim.locked_approval`).
    if (text === "BEGIN" && next.includes("acquirer_sim.")) inAcquirerTransaction = true
    const acquirers = inAcquirerTransaction || text.includes("acquirer_sim.")
    if (inAcquirerTransaction && roundTrip.status === "I") inAcquirerTransaction = false
    if (!acquirers) kept.push(roundTrip)
  })
  return kept
}

/**
 * A background worker's read through the same pool (the completer's, the expiry job's round): one
 * autocommitted SELECT, never a request's work. A loaded machine stretches the measured window
 * over one of their rounds (CI once counted 21 round trips for 20 creates).
 */
const isBackgroundRead = (roundTrip: PgRoundTrip) =>
  roundTrip.status === "I" && roundTrip.statements.length === 1 && (roundTrip.statements[0] ?? "").startsWith("SELECT ")

/** POST `path` as merchant `m` with a new key; the payment's new status. */
const transitionOnce = (m: { readonly apiKey: string }, path: string) =>
  Effect.gen(function* () {
    const server = yield* TestServer
    const answer = yield* server.request("POST", path, { apiKey: m.apiKey, idempotencyKey: newKey("step") })
    assert.strictEqual(answer.status, 200, answer.text)
    return String(jsonOf(answer)["status"])
  })

const transitions = 10

layer(Live, { excludeTestServices: true, timeout: "120 seconds" })("what a create costs on the wire", (it) => {
  it.effect(`${creates} sequential creates: 1 Postgres round trip that ends its transaction (one commit) and 2 Redis commands each`, () =>
    Effect.gen(function* () {
      const { counters } = yield* Proxied
      const m = yield* createMerchant("Cost")
      // Warm: connections, prepared statements, the API-key cache.
      assert.strictEqual((yield* createPayment(m, newKey("warm"))).status, 201)
      counters.pg.length = 0
      counters.redis.length = 0
      for (let index = 0; index < creates; index++) {
        const answer = yield* createPayment(m, newKey("cost"))
        assert.strictEqual(answer.status, 201, answer.text)
      }
      assert.strictEqual(yield* paymentCount(m.merchantId), creates + 1)
      // The key lookup returns when the 1 s cache expired: counted apart, and it writes nothing.
      const work = counters.pg.filter((roundTrip) => !isKeyLookup(roundTrip.statements) && !isBackgroundRead(roundTrip))
      const unlike = work.filter((roundTrip) => !(roundTrip.statements[0] ?? "").startsWith("WITH gate AS"))
      const detail = JSON.stringify([...unlike, ...work].slice(0, 6).map((r) => [r.status, r.statements.map((s) => s.slice(0, 60))]))
      assert.strictEqual(work.length, creates, `Postgres round trips for ${creates} creates (key lookups aside): ${detail}`)
      // Every one of them ended its transaction: each create is one autocommitted statement.
      assert.isTrue(work.every((roundTrip) => roundTrip.status === "I"), detail)
      // Redis: the cached response looked up, then the new one stored.
      assert.deepStrictEqual(counters.redis.filter((c) => c !== "get" && c !== "set"), [], counters.redis.join(","))
      assert.strictEqual(counters.redis.length, 2 * creates, counters.redis.join(","))
      assert.isAtMost((work.length + counters.redis.length) / creates, 4)
    }))

  it.effect("a replay costs one Redis GET and no Postgres round trip (its key cached)", () =>
    Effect.gen(function* () {
      const { counters } = yield* Proxied
      const m = yield* createMerchant("Replay cost")
      const key = newKey("replayed")
      const first = yield* createPayment(m, key)
      assert.strictEqual(first.status, 201)
      counters.pg.length = 0
      counters.redis.length = 0
      const again = yield* createPayment(m, key)
      assert.strictEqual(again.text, first.text)
      assert.strictEqual(again.headers.get("idempotent-replayed"), "true")
      assert.deepStrictEqual(counters.redis, ["get"])
      assert.deepStrictEqual(counters.pg.filter((roundTrip) => !isKeyLookup(roundTrip.statements)), [])
    }))

  it.effect(`${transitions} authorizations, then ${transitions} settlements: each one commit before the acquirer is asked and one after, in few round trips`, () =>
    Effect.gen(function* () {
      const { counters } = yield* Proxied
      const m = yield* createMerchant("Transition cost")
      const ids: Array<string> = []
      for (let index = 0; index <= transitions; index++) {
        const created = yield* createPayment(m, newKey("created"))
        assert.strictEqual(created.status, 201, created.text)
        ids.push(String(jsonOf(created)["id"]))
      }
      // Warm (connections, prepared statements, accounts and fee schedule of the merchant): the first payment.
      assert.strictEqual(yield* transitionOnce(m, `/v1/payments/${ids[0]}/authorize`), "AUTHORIZED")
      assert.strictEqual(yield* transitionOnce(m, `/v1/payments/${ids[0]}/settle`), "SETTLED")
      const measure = (step: "authorize" | "settle", status: string) =>
        Effect.gen(function* () {
          counters.pg.length = 0
          counters.redis.length = 0
          for (const id of ids.slice(1)) assert.strictEqual(yield* transitionOnce(m, `/v1/payments/${id}/${step}`), status)
          // An autocommitted lone SELECT is never these requests' (theirs all write or sit inside
          // their transaction): it is a background gauge's read, or the key lookup.
          const ours = withoutAcquirer(counters.pg.filter((roundTrip) => !isKeyLookup(roundTrip.statements) && !isBackgroundRead(roundTrip)))
          // Each distinct statement once, with how many times it came (what to look at when a count moves).
          const seen = new Map<string, number>()
          for (const roundTrip of ours) {
            const text = `${roundTrip.status} ${roundTrip.statements.map((s) => s.slice(0, 60)).join("; ")}`
            seen.set(text, (seen.get(text) ?? 0) + 1)
          }
          const detail = JSON.stringify([...seen])
          return {
            roundTrips: ours.length / transitions,
            // A round trip after which no transaction is open ended one: with writes, a durable commit.
            commits: ours.filter((roundTrip) => roundTrip.status === "I").length / transitions,
            redis: counters.redis.length / transitions,
            detail
          }
        })
      const authorize = yield* measure("authorize", "AUTHORIZED")
      // The key leased at its recovery point with the payment's read (one commit), the acquirer,
      // then BEGIN, the row lock (with its lock_timeout), the update with its history and event,
      // the stored response, COMMIT. Redis: the cached-response lookup and the new response.
      assert.strictEqual(authorize.commits, 2, authorize.detail)
      assert.isAtMost(authorize.roundTrips, 6, authorize.detail)
      assert.strictEqual(authorize.redis, 2, counters.redis.join(","))
      const settle = yield* measure("settle", "SETTLED")
      // As an authorization, plus the ledger posting (no savepoint: the settle's transaction ends
      // on any failure), then the settlement row with its event (one statement). The fee
      // schedule is read by the gate's statement; the accounts are known (the warm-up settled).
      assert.strictEqual(settle.commits, 2, settle.detail)
      assert.isAtMost(settle.roundTrips, 8, settle.detail)
      assert.strictEqual(settle.redis, 2, counters.redis.join(","))
    }))
})
