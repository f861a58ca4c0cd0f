import type { MerchantId } from "@pay/domain"
import { postgresLayer, decodeRows } from "@pay/infra"
import { ApiKeys, createMerchantWithKey, MerchantRepository } from "@pay/merchants"
import { acquireEmptyTestDatabase, acquireTestDatabase, shortId, testDatabaseUrlAsRole, type TestDatabaseInfo, testRun, throwaway, type ThrowawayInstance } from "@pay/testkit"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { randomInt } from "node:crypto"
import { SqlClient } from "effect/sql"
import { type Answer, call, HttpCallError, type RequestOptions } from "./Http.ts"
import { freePort, type ServerProcess, startServerProcess } from "./ServerProcess.ts"

export interface TestServerOptions {
  /** A private Redis (`throwaway("redis")`) that the test may kill; the run's Redis otherwise. */
  readonly throwawayRedis?: boolean
  /** Extra environment for the server (ACQUIRER_TIMEOUT_MS, IDEMPOTENCY_LOCK_TIMEOUT_MS, …). */
  readonly env?: Readonly<Record<string, string>>
  /** An empty database, which the server migrates as the owner at start (a first deployment), instead of a migrated clone. */
  readonly emptyDatabase?: boolean
}

/**
 * The real server process on a fresh database of its own, with the run's Kafka topic prefix and a
 * Redis key prefix of its own (the run's prefix + a suffix), so servers of parallel test files
 * share nothing but the brokers.
 */
export class TestServer extends Context.Service<TestServer, {
  readonly process: ServerProcess
  readonly database: TestDatabaseInfo
  readonly redisKeyPrefix: string
  /** The server's private Redis, when started with `throwawayRedis`. */
  readonly redis: ThrowawayInstance | undefined
  readonly request: (method: string, path: string, options?: RequestOptions) => ReturnType<typeof call>
}>()("test/TestServer") {}

const startTestServer = (database: TestDatabaseInfo, options: TestServerOptions) =>
  Effect.gen(function* () {
    const run = testRun()
    // Acquired first, released last: the server never outlives nor precedes its Redis by accident.
    const redis = options.throwawayRedis === true ? yield* throwaway("redis") : undefined
    const redisKeyPrefix = `${run.redisKeyPrefix}${shortId()}:`
    const port = yield* freePort
    const process = yield* startServerProcess({
      port,
      env: {
        // As a deployment runs it: the API as pay_app, the consumers and the sender as pay_consumer
        // (CONSUMERS_DATABASE_URL derived from this URL), migrations (none pending: the test
        // database is a clone of the migrated template) as the owner.
        DATABASE_URL: testDatabaseUrlAsRole(database.url, "pay_app"),
        MIGRATION_DATABASE_URL: database.url,
        // Two servers run at once on 2 cores next to the test process's own pool.
        DATABASE_POOL_SIZE: "8",
        REDIS_URL: redis?.url ?? run.redisUrl,
        REDIS_KEY_PREFIX: redisKeyPrefix,
        KAFKA_BROKERS: run.kafkaBrokers,
        KAFKA_TOPIC_PREFIX: run.kafkaTopicPrefix,
        // Tests send bad keys and bursts on purpose: the limits are the limit tests' own business
        // (api-limits.test.ts lowers them).
        RATE_LIMIT_MERCHANT_REQUESTS_MAX: "1000000",
        RATE_LIMIT_AUTH_FAILURES_MAX: "100000",
        // A burst of one merchant's requests (50 settles at once) waits in its queue behind its
        // 4 places; on a loaded CI machine 2 s was not always enough and a request got the cap's
        // 429 where the test asserts what the work answers (settlement-process.test.ts, once).
        // The cap's own tests (api-fairness, merchant-in-flight) set what they measure.
        RATE_LIMIT_MERCHANT_QUEUE_WAIT_MS: "30000",
        // Tests that kill a dependency read /health/ready right after: no cached round.
        READINESS_CACHE_MS: "0",
        // The run's servers share one events topic: a consumer would read the other servers'
        // events into this database. Tests of the consumers turn them on with a prefix of their own.
        CONSUMERS_ENABLED: "false",
        ...options.env
      }
    })
    return TestServer.of({
      process,
      database,
      redisKeyPrefix,
      redis,
      // A failed call says what the server printed last (it may have died).
      request: (method, path, requestOptions) =>
        call(process.baseUrl, method, path, requestOptions).pipe(
          Effect.mapError((error) => new HttpCallError({ ...error, message: `${error.message}\nserver output (tail):\n${process.output().slice(-3_000)}` }))
        )
    })
  })

/**
 * A test layer: a fresh migrated database, the server process on it, and for the test itself a
 * SQL client on the same database plus the repositories that create merchants and API keys.
 * Released in reverse: the server stops before its database is dropped.
 */
export const testServerLayer = (options: TestServerOptions = {}) =>
  Layer.unwrap(
    Effect.gen(function* () {
      const database = options.emptyDatabase === true ? yield* acquireEmptyTestDatabase : yield* acquireTestDatabase
      const server = yield* startTestServer(database, options)
      const sqlLayer = postgresLayer({ url: Redacted.make(database.url), maxConnections: 4, applicationName: "pay-test-api" })
      return Layer.mergeAll(MerchantRepository.layer, ApiKeys.layer).pipe(
        Layer.provideMerge(sqlLayer),
        Layer.merge(Layer.succeed(TestServer, server))
      )
    })
  )

export interface TestMerchant {
  readonly merchantId: MerchantId
  readonly apiKey: string
}

/** A merchant and an API key, written straight into the server's database. */
export const createMerchant = (name: string) =>
  Effect.gen(function* () {
    const { merchant, key } = yield* createMerchantWithKey(name)
    const created: TestMerchant = { merchantId: merchant.id, apiKey: Redacted.value(key.secret) }
    return created
  })

/** What a request may have written, counted: payments of the merchant, all outbox rows, the merchant's keys. */
export const writtenRows = (merchantId: MerchantId) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ payments: Schema.BigInt, outbox: Schema.BigInt, keys: Schema.BigInt }))(sql`
      SELECT (SELECT count(*) FROM payments WHERE merchant_id = ${merchantId}) AS payments,
             (SELECT count(*) FROM outbox_events) AS outbox,
             (SELECT count(*) FROM idempotency_keys WHERE merchant_id = ${merchantId}) AS keys`)
    return { payments: Number(row?.payments ?? -1), outbox: Number(row?.outbox ?? -1), keys: Number(row?.keys ?? -1) }
  })

export const paymentCount = (merchantId: MerchantId) => Effect.map(writtenRows(merchantId), (rows) => rows.payments)

export const newKey = (label = "k"): string => `${label}-${crypto.randomUUID()}`

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
/** A well-formed API key that names nothing: looked up in the database, then refused (an attempt of its source). */
export const unknownApiKey = () => `sk_test_${Array.from({ length: 32 }, () => base62[randomInt(base62.length)]).join("")}`

export const paymentBody = (overrides: Readonly<Record<string, unknown>> = {}) => ({
  amount: 1050,
  currency: "USD",
  payment_method: "pm_card_visa",
  ...overrides
})

/** `POST /v1/payments` as merchant `m` with key `key`. */
export const createPayment = (m: TestMerchant, key: string, body: unknown = paymentBody(), options: RequestOptions = {}) =>
  Effect.gen(function* () {
    const server = yield* TestServer
    return yield* server.request("POST", "/v1/payments", { apiKey: m.apiKey, idempotencyKey: key, json: body, ...options })
  })

export type { Answer }
