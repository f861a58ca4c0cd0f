import { NodeHttpServer } from "@effect/platform-node"
import type { Payment } from "@pay/domain"
import { defaultRedisTimeouts, KafkaAdmin, KafkaConsumer, KafkaProducer, postgresLayer, Redis } from "@pay/infra"
import { Ledger } from "@pay/ledger"
import type { Acquirer } from "@pay/acquirer"
import { ApiKeys, MerchantRepository } from "@pay/merchants"
import { acquireTestDatabase, shortId, testDatabaseAsRole, testRun } from "@pay/testkit"
import { Clock, ConfigProvider, Context, Deferred, Effect, Layer, Redacted, References } from "effect"
import { HttpServer } from "effect/http"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { createLimitedServer, socketLimitsDefault } from "../../src/http/Socket.ts"
import { FeeSchedules, SettlementPosting, SettlementUnavailable } from "@pay/settlement"
import { appLayer } from "../../src/Server.ts"
import { Api } from "./Api.ts"

/**
 * Faults the test arms for the NEXT settlement posting only (then the posting is the real one
 * again). Every fault first runs the real posting, in the settle transaction, so that what is
 * rolled back is real work.
 */
export type SettlementFault =
  /** The posting completes, then the ledger "becomes unavailable": a typed SettlementUnavailable (503). */
  | { readonly _tag: "UnavailableAfterPosting" }
  /** The posting completes, then its settlement row is inserted a second time: a real 23505 (PK). */
  | { readonly _tag: "ConstraintHitAfterPosting" }
  /**
   * The posting completes, then an entry-less ledger transaction is added: every statement
   * succeeds and the COMMIT itself fails (the ledger's deferred balance trigger, LG001).
   */
  | { readonly _tag: "CommitFails" }
  /**
   * The posting completes, then the transaction waits (open, before COMMIT) until the request is
   * interrupted; `reached` completes when it starts waiting (the test then hangs up).
   */
  | { readonly _tag: "HoldBeforeCommit"; readonly reached: Deferred.Deferred<void> }
  /**
   * The posting completes; once the transaction has COMMITTED, the request is held before its
   * response is written (an after-commit callback, registered before the idempotency key's own)
   * until `release`; `reached` completes when the hold starts. The test hangs up meanwhile: the
   * response is lost after the commit.
   */
  | {
    readonly _tag: "HoldAfterCommit"
    readonly reached: Deferred.Deferred<void>
    readonly release: Deferred.Deferred<void>
  }

/** Upper bound of a hold: a test that forgot to hang up fails instead of hanging. */
const hold_ms = 8_000

export class SettlementFaults extends Context.Service<SettlementFaults, {
  /** Arms a fault for the next posting (replacing any armed one). */
  readonly arm: (fault: SettlementFault) => Effect.Effect<void>
  /** How many postings a fault was injected into so far. */
  readonly injected: Effect.Effect<number>
  /** The SQLSTATE of the last SQL error an injected fault ran into (proof that the database refused). */
  readonly lastSqlState: Effect.Effect<string | undefined>
}>()("server-test/SettlementFaults") {}

interface FaultState {
  armed: SettlementFault | undefined
  injected: number
  lastSqlState: string | undefined
}

/** The SQLSTATE PostgreSQL answered (the driver keeps it on the reason's cause). */
const sqlStateOf = (error: SqlError): string => {
  const cause: unknown = error.reason.cause
  return typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : ""
}

/**
 * The real `SettlementPosting` with a switch in front: the app under test uses this one. Built on
 * the given database context (the app's own client), so the real posting and the injected fault
 * run on the settle transaction's connection.
 */
const faultySettlement = (state: FaultState) =>
  Layer.effect(
    SettlementPosting,
    Effect.gen(function* () {
      const real = yield* SettlementPosting
      const sql = yield* SqlClient.SqlClient
      // What the real posting does with an SQL error (SettlementUnavailable), after noting the SQLSTATE.
      const asUnavailable = (payment: Payment) => (error: SqlError) => {
        state.lastSqlState = sqlStateOf(error)
        return new SettlementUnavailable({ paymentId: payment.id, reason: `injected: ${error.message}` })
      }

      const inject = (fault: SettlementFault, payment: Payment): Effect.Effect<void, SettlementUnavailable> => {
        switch (fault._tag) {
          case "UnavailableAfterPosting":
            return Effect.fail(new SettlementUnavailable({ paymentId: payment.id, reason: "injected: the ledger stopped answering" }))
          case "ConstraintHitAfterPosting":
            // The row the real posting just wrote, once more: the primary key refuses it.
            return sql`
              INSERT INTO payment_settlements
                (payment_id, ledger_transaction_id, currency, gross_minor, fee_minor, net_minor, fee_bps, fee_fixed_minor)
              SELECT payment_id, ledger_transaction_id, currency, gross_minor, fee_minor, net_minor, fee_bps, fee_fixed_minor
              FROM payment_settlements WHERE payment_id = ${payment.id}`.pipe(
              Effect.asVoid,
              Effect.mapError(asUnavailable(payment))
            )
          case "CommitFails":
            return sql`INSERT INTO transactions (reference, description)
                       VALUES (${`fault:${payment.id}:dangling`}, 'injected: a transaction without entries fails at COMMIT')`.pipe(
              Effect.asVoid,
              Effect.mapError(asUnavailable(payment))
            )
          case "HoldBeforeCommit":
            return Deferred.succeed(fault.reached, undefined).pipe(
              Effect.andThen(Effect.sleep(hold_ms)),
              Effect.andThen(Effect.fail(new SettlementUnavailable({ paymentId: payment.id, reason: "injected hold was not interrupted" })))
            )
          case "HoldAfterCommit":
            return sql.afterCommit(
              Deferred.succeed(fault.reached, undefined).pipe(
                Effect.andThen(Deferred.await(fault.release).pipe(Effect.timeoutOption(hold_ms))),
                Effect.asVoid
              )
            )
        }
      }

      return SettlementPosting.of({
        post: (payment, feeScheduleRead, alongside) =>
          Effect.gen(function* () {
            const fault = state.armed
            state.armed = undefined
            const record = yield* real.post(payment, feeScheduleRead, alongside)
            if (fault !== undefined) {
              state.injected += 1
              yield* inject(fault, payment)
            }
            return record
          })
      })
    })
  )

export interface InProcessAppOptions {
  /** Replaces the simulated acquirer (e.g. `AcquirerSimulator.layerFaulty(...)`); needs only `SqlClient`. */
  readonly acquirer?: Layer.Layer<Acquirer, unknown, SqlClient.SqlClient>
  /** Extra configuration (IDEMPOTENCY_LOCK_TIMEOUT_MS, SETTLEMENT_FEE_BPS, …). */
  readonly env?: Readonly<Record<string, string>>
  /** The process's own clock, as the app finds it (a skewed one: `offsetClock`); the app's clock is the database's. */
  readonly localClock?: Clock.Clock
}

/**
 * The server's `appLayer` served in this process on a free port, on a fresh database, the run's
 * Redis (a key prefix of its own) and Kafka, with `SettlementFaults` in front of the real
 * settlement posting. The completer is configured not to run during a test (a key is abandoned
 * only after 10 minutes), so that every resumption here is the client's retry; the outbox
 * publisher is off (the rows are what the tests read).
 *
 * Provides `Api` (HTTP to the app), `SettlementFaults`, and for the test itself a `SqlClient` on
 * the same database plus the repositories that create merchants, keys and fee schedules, and the Ledger.
 */
export const inProcessAppLayer = (options: InProcessAppOptions = {}) =>
  Layer.unwrap(
    Effect.gen(function* () {
      const run = testRun()
      const config = ConfigProvider.layer(ConfigProvider.fromEnv({
        env: {
          KAFKA_BROKERS: run.kafkaBrokers,
          KAFKA_TOPIC_PREFIX: run.kafkaTopicPrefix,
          OUTBOX_PUBLISHER_ENABLED: "false",
          CONSUMERS_ENABLED: "false",
          COMPLETER_ABANDONED_AFTER_MS: "600000",
          COMPLETER_INTERVAL_MS: "600000",
          IDEMPOTENCY_LOCK_TIMEOUT_MS: "5000",
          RATE_LIMIT_MERCHANT_REQUESTS_MAX: "1000000",
          RATE_LIMIT_AUTH_FAILURES_MAX: "100000",
          // As TestServer.ts: a burst of one merchant's requests waits in its queue behind its
          // places; on a loaded CI machine 2 s was not enough (50 concurrent refunds: 12 of them
          // neither 201 nor 422). The cap's own tests set what they measure.
          RATE_LIMIT_MERCHANT_QUEUE_WAIT_MS: "30000",
          ...options.env
        }
      }))
      // Built once and shared as a fixed context: the app, the fault Layers and the test all use
      // this one client, so "the settle transaction" is one connection whoever asks.
      const info = yield* acquireTestDatabase
      const database = Layer.succeedContext(yield* Layer.build(postgresLayer({ url: Redacted.make(info.url), maxConnections: 10, applicationName: "pay-test" })))
      // The consumers and the webhook sender log in as their own role, as in a deployment
      // (migrations/0096): every test that runs them here also shows that role's grants suffice.
      const consumersDatabase = testDatabaseAsRole(info, "pay_consumer", 6)
      // The publisher likewise, as its own role (migrations/0108).
      const publisherDatabase = testDatabaseAsRole(info, "pay_publisher", 4)
      const state: FaultState = { armed: undefined, injected: 0, lastSqlState: undefined }
      const settlement = faultySettlement(state).pipe(
        Layer.provide(SettlementPosting.layer),
        Layer.provide([Ledger.layer, FeeSchedules.layer]),
        Layer.provide(database),
        Layer.provide(config)
      )
      const acquirer = options.acquirer === undefined ? undefined : options.acquirer.pipe(Layer.provide(database))
      const redis = Redis.layerWith({ url: run.redisUrl, keyPrefix: `${run.redisKeyPrefix}${shortId()}:`, ...defaultRedisTimeouts })
      const http = NodeHttpServer.layer(createLimitedServer(socketLimitsDefault), { port: 0, host: "127.0.0.1" })
      const app = appLayer({ settlement, acquirer, consumersDatabase, publisherDatabase }).pipe(
        Layer.provideMerge(Layer.mergeAll(http, redis, KafkaAdmin.layer, KafkaProducer.layer, KafkaConsumer.layer)),
        Layer.provide(database),
        Layer.provide(config),
        // The app logs every request at INFO; the test output keeps warnings and errors only.
        Layer.provide(Layer.succeed(References.MinimumLogLevel, "Warn")),
        Layer.provide(options.localClock === undefined ? Layer.empty : Layer.succeed(Clock.Clock, options.localClock))
      )
      const api = Layer.effect(
        Api,
        Effect.gen(function* () {
          const server = yield* HttpServer.HttpServer
          const address = server.address
          if (address._tag !== "InetAddressV4") return yield* Effect.die(new Error("the test server must listen on 127.0.0.1"))
          return Api.at(`http://127.0.0.1:${address.port}`)
        })
      )
      const faults = Layer.succeed(
        SettlementFaults,
        SettlementFaults.of({
          arm: (fault) => Effect.sync(() => { state.armed = fault }),
          injected: Effect.sync(() => state.injected),
          lastSqlState: Effect.sync(() => state.lastSqlState)
        })
      )
      const repositories = Layer.mergeAll(MerchantRepository.layer, ApiKeys.layer, FeeSchedules.layer, Ledger.layer).pipe(
        Layer.provide(config),
        Layer.provideMerge(database)
      )
      return Layer.mergeAll(api.pipe(Layer.provide(app)), faults, repositories)
    })
  )
