// Tests of the simulated acquirer (packages/acquirer/src/Simulator.ts) against real Postgres.
import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pay/testkit"
import { Deferred, Effect, Exit, Fiber, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomUUID } from "node:crypto"
import { Acquirer, AcquirerSimulator } from "../src/index.ts"

const timeout_ms = 250
const Live = AcquirerSimulator.layerWith({ timeout_ms, latency_ms: 1 }).pipe(Layer.provideMerge(TestDatabase))

const paymentId = () => `pay_${randomUUID().replaceAll("-", "").slice(0, 24)}`

const operationRow = (reference: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* decodeRows(Schema.Struct({ performed_count: Schema.Number, request_count: Schema.Number, outcome: Schema.String }))(sql`
      SELECT performed_count, request_count, outcome FROM acquirer_sim.operations WHERE reference = ${reference}`)
    return rows[0]
  })

const operationsOfPayment = (id: string, operation: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`
      SELECT count(*)::bigint AS n FROM acquirer_sim.operations WHERE payment_id = ${id} AND operation = ${operation}`)
    return Number(rows[0]?.n ?? -1n)
  })

const authorizeRequest = (id: string, paymentMethod: string) => ({
  reference: `payment:${id}:authorize`,
  paymentId: id,
  amount_minor: 1_250n,
  currency: "EUR",
  paymentMethod
})

/** An acquirer with faults over the same `acquirer_sim` records, scoped to the test. */
const faulty = (faults: Parameters<typeof AcquirerSimulator.layerFaulty>[0]) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* AcquirerSimulator.make({ timeout_ms, latency_ms: 1, faults }).pipe(Effect.provideService(SqlClient.SqlClient, sql))
  })

layer(Live, { excludeTestServices: true })("simulated acquirer (real Postgres)", (it) => {
  it.effect("pm_card_visa approves; asking again with the same reference performs nothing new", () =>
    Effect.gen(function* () {
      const acquirer = yield* Acquirer
      const id = paymentId()
      const first = yield* acquirer.authorize(authorizeRequest(id, "pm_card_visa"))
      const second = yield* acquirer.authorize(authorizeRequest(id, "pm_card_visa"))
      assert.strictEqual(first._tag, "Approved")
      assert.deepStrictEqual(second, first)
      assert.deepStrictEqual(yield* operationRow(`payment:${id}:authorize`), { performed_count: 1, request_count: 2, outcome: "approved" })
      assert.strictEqual(yield* operationsOfPayment(id, "authorize"), 1)
    }))

  it.effect("pm_card_declined and pm_card_insufficient_funds decline with their codes", () =>
    Effect.gen(function* () {
      const acquirer = yield* Acquirer
      const declined = yield* acquirer.authorize(authorizeRequest(paymentId(), "pm_card_declined"))
      const poor = yield* acquirer.authorize(authorizeRequest(paymentId(), "pm_card_insufficient_funds"))
      assert.isTrue(declined._tag === "Declined" && declined.code === "card_declined")
      assert.isTrue(poor._tag === "Declined" && poor.code === "insufficient_funds")
    }))

  it.effect("pm_card_timeout: the first call is performed but times out; the retry answers the recorded outcome promptly", () =>
    Effect.gen(function* () {
      const acquirer = yield* Acquirer
      const id = paymentId()
      const started = Date.now()
      const first = yield* Effect.flip(acquirer.authorize(authorizeRequest(id, "pm_card_timeout")))
      const first_ms = Date.now() - started
      assert.strictEqual(first._tag, "AcquirerTimeout")
      assert.isAtLeast(first_ms, timeout_ms - 5)
      // It happened at the acquirer even though we never heard back.
      assert.deepStrictEqual(yield* operationRow(`payment:${id}:authorize`), { performed_count: 1, request_count: 1, outcome: "approved" })

      const retryStarted = Date.now()
      const retry = yield* acquirer.authorize(authorizeRequest(id, "pm_card_timeout"))
      assert.strictEqual(retry._tag, "Approved")
      assert.isBelow(Date.now() - retryStarted, timeout_ms)
      assert.deepStrictEqual(yield* operationRow(`payment:${id}:authorize`), { performed_count: 1, request_count: 2, outcome: "approved" })

      // The capture of such a payment behaves the same way.
      const capture = { reference: `payment:${id}:capture`, paymentId: id, amount_minor: 1_250n, currency: "EUR" }
      assert.strictEqual((yield* Effect.flip(acquirer.capture(capture)))._tag, "AcquirerTimeout")
      assert.strictEqual((yield* acquirer.capture(capture))._tag, "Approved")
      assert.strictEqual(yield* operationsOfPayment(id, "capture"), 1)
    }))

  it.effect("capture is approved only within an approved authorization", () =>
    Effect.gen(function* () {
      const acquirer = yield* Acquirer
      const id = paymentId()
      const none = yield* acquirer.capture({ reference: `payment:${id}:capture`, paymentId: id, amount_minor: 1n, currency: "EUR" })
      assert.strictEqual(none._tag, "Declined")
      const other = paymentId()
      yield* acquirer.authorize(authorizeRequest(other, "pm_card_visa"))
      const tooMuch = yield* acquirer.capture({ reference: `payment:${other}:capture-big`, paymentId: other, amount_minor: 1_251n, currency: "EUR" })
      assert.strictEqual(tooMuch._tag, "Declined")
      const ok = yield* acquirer.capture({ reference: `payment:${other}:capture`, paymentId: other, amount_minor: 1_250n, currency: "EUR" })
      assert.strictEqual(ok._tag, "Approved")
    }))

  it.effect("a capture waits for the payment's lock, then decides on what the holder committed: the void that won declines it", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // A generous timeout: this capture waits for the lock on purpose.
      const acquirer = yield* AcquirerSimulator.make({ timeout_ms: 10_000, latency_ms: 1, faults: {} }).pipe(Effect.provideService(SqlClient.SqlClient, sql))
      const id = paymentId()
      yield* acquirer.authorize(authorizeRequest(id, "pm_card_visa"))
      const locked = yield* Deferred.make<void>()
      // Another decision of the same payment, by hand: it holds the payment's lock, records an
      // approved void, and commits a moment after the capture started waiting.
      const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function* () {
        yield* sql`SELECT pg_advisory_xact_lock(hashtextextended(${`acquirer_sim:${id}`}, 0))`
        yield* sql`
          INSERT INTO acquirer_sim.operations (reference, operation, payment_id, amount_minor, currency, payment_method, outcome, acquirer_reference)
          VALUES (${`payment:${id}:void`}, 'void', ${id}, 1250, 'EUR', 'pm_card_visa', 'approved', ${`acq_${randomUUID().replaceAll("-", "")}`})`
        yield* Deferred.succeed(locked, undefined)
        yield* Effect.sleep("400 millis")
      })))
      yield* Deferred.await(locked)
      const started_ms = Date.now()
      const capture = yield* acquirer.capture({ reference: `payment:${id}:capture`, paymentId: id, amount_minor: 1_250n, currency: "EUR" })
      yield* Fiber.join(holder)
      assert.isAtLeast(Date.now() - started_ms, 200, "the capture waited for the holder's lock")
      // Had the read been taken before the lock was granted (one statement), it would not see the
      // void and would approve: a capture and a void of one authorization.
      assert.strictEqual(capture._tag, "Declined")
      if (capture._tag === "Declined") assert.strictEqual(capture.code, "authorization_voided")
      assert.strictEqual(yield* operationsOfPayment(id, "capture"), 1)
      assert.strictEqual((yield* operationRow(`payment:${id}:capture`))?.outcome, "declined")
    }))

  it.effect("what happened at the acquirer survives our transaction rolling back", () =>
    Effect.gen(function* () {
      const acquirer = yield* Acquirer
      const sql = yield* SqlClient.SqlClient
      const id = paymentId()
      const exit = yield* Effect.exit(
        sql.withTransaction(
          Effect.gen(function* () {
            yield* acquirer.authorize(authorizeRequest(id, "pm_card_visa"))
            return yield* Effect.fail("our commit fails" as const)
          })
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.deepStrictEqual(yield* operationRow(`payment:${id}:authorize`), { performed_count: 1, request_count: 1, outcome: "approved" })
    }))

  it.effect("reusing a reference for a different amount is a defect (our bug), not an answer", () =>
    Effect.gen(function* () {
      const acquirer = yield* Acquirer
      const id = paymentId()
      yield* acquirer.authorize(authorizeRequest(id, "pm_card_visa"))
      const exit = yield* Effect.exit(acquirer.authorize({ ...authorizeRequest(id, "pm_card_visa"), amount_minor: 1n }))
      assert.isTrue(Exit.isFailure(exit) && exit.cause.reasons.some((reason) => reason._tag === "Die"))
    }))

  it.effect("fault layer: a capture performed whose answer is lost; the retry answers it; performed once", () =>
    Effect.gen(function* () {
      const acquirer = yield* Acquirer
      const lossy = yield* faulty({ failCaptureAfterPerforming: "first_call" })
      const id = paymentId()
      yield* acquirer.authorize(authorizeRequest(id, "pm_card_visa"))
      const capture = { reference: `payment:${id}:capture`, paymentId: id, amount_minor: 1_250n, currency: "EUR" }
      assert.strictEqual((yield* Effect.flip(lossy.capture(capture)))._tag, "AcquirerTimeout")
      assert.strictEqual((yield* lossy.capture(capture))._tag, "Approved")
      assert.deepStrictEqual(yield* operationRow(capture.reference), { performed_count: 1, request_count: 2, outcome: "approved" })

      const down = yield* faulty({ unavailable: true })
      const unavailable = yield* Effect.flip(down.authorize(authorizeRequest(paymentId(), "pm_card_visa")))
      assert.strictEqual(unavailable._tag, "AcquirerUnavailable")
    }))
})
