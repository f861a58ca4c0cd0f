import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import {
  ConcurrentModification,
  InvalidTransition,
  type Merchant,
  type Payment,
  type PaymentCommandName,
  type PaymentId,
  type PaymentStatus
} from "@pay/domain"
import { makeTestDatabase } from "@pay/testkit"
import { Clock, Deferred, Effect, Layer, Schema } from "effect"
import { TestClock } from "effect/testing"
import { SqlClient } from "effect/sql"
import { MerchantRepository } from "@pay/merchants"
import { PaymentRepository } from "../src/PaymentRepository.ts"
import { applyCommand, commandFor, context, paymentInput, settlementServices, setup } from "./support.ts"

/**
 * Two transitions of one payment at the same time, on two real connections of the pool. The row
 * lock makes them queue: the first commits, the second then reads the new status and is refused
 * with a typed InvalidTransition. Never both.
 *
 * The races get a lock timeout far longer than any wait (30 s): a loser that timed out on a loaded
 * machine would be a ConcurrentModification, not the InvalidTransition the race is about (a full
 * run once saw it with 300 ms). The lock-timeout test builds its own repository with 300 ms.
 */
const TestLayer = Layer.mergeAll(PaymentRepository.layerWith({ lockTimeout_ms: 30_000 }), MerchantRepository.layer).pipe(
  Layer.provideMerge(settlementServices),
  Layer.provideMerge(makeTestDatabase({ maxConnections: 8 }))
)

const ROUNDS = 20

const races: ReadonlyArray<{
  readonly start: PaymentStatus
  readonly commands: readonly [PaymentCommandName, PaymentCommandName]
}> = [
  { start: "CREATED", commands: ["authorize", "decline"] }, // approve vs refuse the same authorization
  { start: "AUTHORIZED", commands: ["settle", "fail"] }, // capture vs void of the same authorization
  { start: "AUTHORIZED", commands: ["settle", "settle"] }, // a settlement batch run twice
  { start: "AUTHORIZED", commands: ["settle", "cancel"] } // capture vs merchant's void
]

const targetOf: Readonly<Record<PaymentCommandName, PaymentStatus>> = {
  authorize: "AUTHORIZED",
  decline: "FAILED",
  settle: "SETTLED",
  fail: "FAILED",
  cancel: "CANCELED",
  expire: "EXPIRED"
}

const paymentIn = (merchant: Merchant, status: PaymentStatus) =>
  Effect.gen(function* () {
    const payments = yield* PaymentRepository
    const created = yield* payments.create(paymentInput(merchant), context)
    return status === "AUTHORIZED"
      ? yield* payments.apply(merchant.id, created.id, commandFor("authorize"), context)
      : created
  })

const countRows = (paymentId: PaymentId) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* decodeRows(Schema.Struct({ history: Schema.Number, events: Schema.Number }))(sql`
      SELECT (SELECT count(*)::int FROM payment_status_history WHERE payment_id = ${paymentId}) AS history,
             (SELECT count(*)::int FROM outbox_events WHERE aggregate_type = 'payment' AND aggregate_id = ${paymentId}) AS events`)
    return rows[0] ?? { history: -1, events: -1 }
  })

/** Checks one race: exactly one winner, a typed loser, and the database agrees with the winner. */
const checkRace = (
  merchant: Merchant,
  before: Payment,
  commands: readonly [PaymentCommandName, PaymentCommandName],
  outcomes: ReadonlyArray<{ readonly _tag: "Success"; readonly success: Payment } | { readonly _tag: "Failure"; readonly failure: unknown }>
) =>
  Effect.gen(function* () {
    const payments = yield* PaymentRepository
    const winners = outcomes.flatMap((outcome, index) => (outcome._tag === "Success" ? [index] : []))
    assert.strictEqual(winners.length, 1, `exactly one of ${commands.join(" / ")} must win`)
    const winner = winners[0] ?? 0
    const loser = outcomes[1 - winner]
    assert.isTrue(loser?._tag === "Failure")
    if (loser?._tag === "Failure") {
      assert.instanceOf(loser.failure, InvalidTransition)
      if (loser.failure instanceof InvalidTransition) {
        // The loser saw the winner's committed status.
        assert.strictEqual(loser.failure.from, targetOf[commands[winner] ?? "authorize"])
      }
    }
    const after = yield* payments.findById(merchant.id, before.id)
    assert.strictEqual(after.status, targetOf[commands[winner] ?? "authorize"])
    assert.strictEqual(after.version, before.version + 1)
    // One transition happened, so exactly one history row and one outbox event more.
    assert.deepStrictEqual(yield* countRows(before.id), { history: before.version + 1, events: before.version + 1 })
  })

layer(TestLayer)("concurrent transitions on real parallel connections", (it) => {
  for (const race of races) {
    it.effect(`${race.commands[0]} vs ${race.commands[1]} on a ${race.start} payment, ${ROUNDS} rounds: exactly one wins`, () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { merchant } = yield* setup
        for (let round = 0; round < ROUNDS; round++) {
          const before = yield* paymentIn(merchant, race.start)
          // Each racer opens its own transaction (its own connection) and waits at a barrier until
          // the other has too: the two applies really overlap, they are not merely scheduled close.
          const ready = [yield* Deferred.make<number>(), yield* Deferred.make<number>()] as const
          const racer = (index: 0 | 1) =>
            sql.withTransaction(
              Effect.gen(function* () {
                const pid = yield* decodeRows(Schema.Struct({ pid: Schema.Number }))(sql`SELECT pg_backend_pid() AS pid`)
                yield* Deferred.succeed(ready[index], pid[0]?.pid ?? -1)
                yield* Deferred.await(ready[index === 0 ? 1 : 0])
                return yield* applyCommand(merchant.id, before.id, commandFor(race.commands[index]), context)
              })
            )
          const outcomes = yield* Effect.all([Effect.result(racer(0)), Effect.result(racer(1))], { concurrency: "unbounded" })
          const pids = [yield* Deferred.await(ready[0]), yield* Deferred.await(ready[1])]
          assert.notStrictEqual(pids[0], pids[1], "the racers must use two different connections")
          yield* checkRace(
            merchant,
            before,
            race.commands,
            outcomes.map((outcome) =>
              outcome._tag === "Success" ? { _tag: "Success", success: outcome.success } : { _tag: "Failure", failure: outcome.failure }
            )
          )
        }
      }))
  }

  it.effect(`top-level applies fired together (no outer transaction), ${ROUNDS} rounds per race`, () =>
    Effect.gen(function* () {
      const { merchant } = yield* setup
      for (const race of races) {
        for (let round = 0; round < ROUNDS; round++) {
          const before = yield* paymentIn(merchant, race.start)
          const outcomes = yield* Effect.all(
            race.commands.map((name) => Effect.result(applyCommand(merchant.id, before.id, commandFor(name), context))),
            { concurrency: "unbounded" }
          )
          yield* checkRace(
            merchant,
            before,
            race.commands,
            outcomes.map((outcome) =>
              outcome._tag === "Success" ? { _tag: "Success", success: outcome.success } : { _tag: "Failure", failure: outcome.failure }
            )
          )
        }
      }
    }))

  it.effect("the second transition waits for the first to commit, then sees its status", () =>
    TestClock.withLive(Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { payments, merchant } = yield* setup
      const payment = yield* paymentIn(merchant, "CREATED")
      const firstApplied = yield* Deferred.make<void>()
      const hold_ms = 150
      const first = sql.withTransaction(
        Effect.gen(function* () {
          yield* payments.apply(merchant.id, payment.id, commandFor("authorize"), context)
          yield* Deferred.succeed(firstApplied, undefined)
          yield* Effect.sleep(`${hold_ms} millis`) // hold the row lock, uncommitted
        })
      )
      const second = Effect.gen(function* () {
        yield* Deferred.await(firstApplied)
        const started = yield* Clock.currentTimeMillis
        const result = yield* Effect.result(payments.apply(merchant.id, payment.id, commandFor("decline"), context))
        return { result, waited_ms: (yield* Clock.currentTimeMillis) - started }
      })
      const [, { result, waited_ms }] = yield* Effect.all([first, second], { concurrency: "unbounded" })
      assert.isAtLeast(waited_ms, hold_ms - 30, "the second apply must have waited on the row lock")
      assert.strictEqual(result._tag, "Failure")
      if (result._tag === "Failure") {
        assert.instanceOf(result.failure, InvalidTransition)
        if (result.failure instanceof InvalidTransition) assert.strictEqual(result.failure.from, "AUTHORIZED")
      }
    })))

  it.effect("a lock held past the bound gives a typed, retryable ConcurrentModification (lock_timeout)", () =>
    TestClock.withLive(Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { payments, merchant } = yield* setup
      const payment = yield* paymentIn(merchant, "CREATED")
      const locked = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holder = sql.withTransaction(
        Effect.gen(function* () {
          yield* sql`SELECT id FROM payments WHERE id = ${payment.id} FOR UPDATE`
          yield* Deferred.succeed(locked, undefined)
          yield* Deferred.await(release)
        })
      )
      const waiter = Effect.gen(function* () {
        yield* Deferred.await(locked)
        const shortLock = yield* PaymentRepository.pipe(Effect.provide(PaymentRepository.layerWith({ lockTimeout_ms: 300 })))
        const error = yield* Effect.flip(shortLock.apply(merchant.id, payment.id, commandFor("authorize"), context))
        yield* Deferred.succeed(release, undefined)
        return error
      })
      const [, error] = yield* Effect.all([holder, waiter], { concurrency: "unbounded" })
      assert.instanceOf(error, ConcurrentModification)
      if (error instanceof ConcurrentModification) assert.strictEqual(error.reason, "lock_timeout")
      // Nothing was written; the retry (after the lock is gone) succeeds.
      const retried = yield* payments.apply(merchant.id, payment.id, commandFor("authorize"), context)
      assert.strictEqual(retried.version, 2)
    })))

  it.effect("inside a REPEATABLE READ transaction that predates a concurrent commit: ConcurrentModification", () =>
    TestClock.withLive(Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { payments, merchant } = yield* setup
      const payment = yield* paymentIn(merchant, "CREATED")
      const snapshotTaken = yield* Deferred.make<void>()
      const otherCommitted = yield* Deferred.make<void>()
      const stale = sql.withTransaction(
        Effect.gen(function* () {
          yield* sql`SELECT 1` // the snapshot is taken at the first statement
          yield* Deferred.succeed(snapshotTaken, undefined)
          yield* Deferred.await(otherCommitted)
          return yield* payments.apply(merchant.id, payment.id, commandFor("decline"), context)
        })
      ).pipe(Effect.provideService(SqlClient.BeginTransaction, "BEGIN ISOLATION LEVEL REPEATABLE READ"))
      const other = Effect.gen(function* () {
        yield* Deferred.await(snapshotTaken)
        yield* payments.apply(merchant.id, payment.id, commandFor("authorize"), context)
        yield* Deferred.succeed(otherCommitted, undefined)
      })
      const [staleResult] = yield* Effect.all([Effect.result(stale), other], { concurrency: "unbounded" })
      assert.strictEqual(staleResult._tag, "Failure")
      if (staleResult._tag === "Failure") {
        assert.instanceOf(staleResult.failure, ConcurrentModification)
        if (staleResult.failure instanceof ConcurrentModification) assert.strictEqual(staleResult.failure.reason, "serialization_failure")
      }
      assert.strictEqual((yield* payments.findById(merchant.id, payment.id)).status, "AUTHORIZED")
    })))
})
