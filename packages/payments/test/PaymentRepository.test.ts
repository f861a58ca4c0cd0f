import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import {
  AMOUNT_MINOR_MAX,
  generateMerchantId,
  generatePaymentId,
  InvalidCursor,
  InvalidTransition,
  MerchantNotFound,
  PageLimit,
  type PaymentId,
  PaymentNotFound
} from "@pay/domain"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { TestClock } from "effect/testing"
import type { PaymentPage } from "../src/PaymentRepository.ts"
import { applyCommand, commandFor, context, paymentInput, PaymentsTestLayer, setup } from "./support.ts"

class Boom extends Schema.TaggedError<Boom>()("Boom", {}) {}

const outboxRows = (paymentId: PaymentId) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* decodeRows(Schema.Struct({ event_type: Schema.String, event_version: Schema.Number, amount_type: Schema.String, payload: Schema.Unknown, headers: Schema.Unknown }))(sql`
      SELECT event_type, event_version, jsonb_typeof(payload->'amount_minor') AS amount_type, payload, headers
      FROM outbox_events WHERE aggregate_type = 'payment' AND aggregate_id = ${paymentId} ORDER BY position`)
  })

const historyRows = (paymentId: PaymentId) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* decodeRows(Schema.Struct({ version: Schema.Number, from_status: Schema.NullOr(Schema.String), to_status: Schema.String, actor: Schema.String, reason: Schema.NullOr(Schema.String), correlation_id: Schema.String, traceparent: Schema.NullOr(Schema.String) }))(sql`
      SELECT version, from_status, to_status, actor, reason, correlation_id, traceparent
      FROM payment_status_history WHERE payment_id = ${paymentId} ORDER BY version`)
  })

layer(PaymentsTestLayer)("PaymentRepository (real Postgres)", (it) => {
  it.effect("creates a payment with its history row and exactly one payment_created outbox event", () =>
    Effect.gen(function* () {
      const { payments, merchant } = yield* setup
      const created = yield* payments.create(
        paymentInput(merchant, { description: "order 7", metadata: { order_id: "7" } }),
        context
      )
      assert.strictEqual(created.status, "CREATED")
      assert.strictEqual(created.version, 1)
      assert.match(created.id, /^pay_[0-9a-hjkmnp-tv-z]{24}$/)

      const found = yield* payments.findById(merchant.id, created.id)
      assert.deepStrictEqual(
        { ...found, created_at: found.created_at.epochMilliseconds, updated_at: found.updated_at.epochMilliseconds },
        { ...created, created_at: created.created_at.epochMilliseconds, updated_at: created.updated_at.epochMilliseconds }
      )

      const history = yield* historyRows(created.id)
      assert.deepStrictEqual(history, [{
        version: 1,
        from_status: null,
        to_status: "CREATED",
        actor: "test:payments",
        reason: null,
        correlation_id: "corr-test-1",
        traceparent: context.traceparent ?? null
      }])

      const outbox = yield* outboxRows(created.id)
      assert.strictEqual(outbox.length, 1)
      assert.strictEqual(outbox[0]?.event_type, "payment_created")
      assert.strictEqual(outbox[0]?.event_version, 1)
      assert.strictEqual(outbox[0]?.amount_type, "number") // a JSON integer, not a string
      assert.deepInclude(outbox[0]?.payload, { type: "payment_created", payment_id: created.id, amount_minor: 1999, currency: "EUR" })
      assert.deepStrictEqual(outbox[0]?.headers, { correlation_id: "corr-test-1", traceparent: context.traceparent })
    }))

  it.effect("keeps the maximum amount exact through Postgres (bigint), and refuses an unknown merchant", () =>
    Effect.gen(function* () {
      const { payments, merchant } = yield* setup
      const big = yield* payments.create(paymentInput(merchant, { amount_minor: Number(AMOUNT_MINOR_MAX), currency: "KWD" }), context)
      const found = yield* payments.findById(merchant.id, big.id)
      assert.strictEqual(found.amount_minor, AMOUNT_MINOR_MAX)
      assert.strictEqual(found.currency, "KWD")

      const ghost = yield* generateMerchantId
      const error = yield* Effect.flip(payments.create({ ...paymentInput(merchant), merchant_id: ghost }, context))
      assert.instanceOf(error, MerchantNotFound)
      const sql = yield* SqlClient.SqlClient
      const count = yield* decodeRows(Schema.Struct({ n: Schema.Number }))(sql`SELECT count(*)::int AS n FROM payments WHERE merchant_id = ${ghost}`)
      assert.strictEqual(count[0]?.n, 0)
    }))

  it.effect("answers PaymentNotFound identically for an unknown id and for another merchant's payment", () =>
    Effect.gen(function* () {
      const { payments, merchants, merchant } = yield* setup
      const other = yield* merchants.create("Other merchant")
      const theirs = yield* payments.create(paymentInput(other), context)
      const unknown = yield* generatePaymentId

      const foreign = yield* Effect.flip(payments.findById(merchant.id, theirs.id))
      const missing = yield* Effect.flip(payments.findById(merchant.id, unknown))
      assert.instanceOf(foreign, PaymentNotFound)
      assert.instanceOf(missing, PaymentNotFound)
      // Same tag, same fields, same message shape: only the id the caller sent differs.
      assert.deepStrictEqual(Object.keys(foreign), Object.keys(missing))
      assert.strictEqual(foreign.message.replace(theirs.id, "<id>"), missing.message.replace(unknown, "<id>"))

      // A foreign merchant cannot move the payment either, and nothing is written.
      const applied = yield* Effect.flip(payments.apply(merchant.id, theirs.id, commandFor("authorize"), context))
      assert.instanceOf(applied, PaymentNotFound)
      const still = yield* payments.findById(other.id, theirs.id)
      assert.strictEqual(still.status, "CREATED")
      assert.strictEqual(still.version, 1)
    }))

  it.effect("applies authorize then settle: status, version, history and one outbox event per transition", () =>
    Effect.gen(function* () {
      const { payments, merchant } = yield* setup
      const created = yield* payments.create(paymentInput(merchant), context)
      const authorized = yield* payments.apply(merchant.id, created.id, commandFor("authorize"), context)
      assert.strictEqual(authorized.status, "AUTHORIZED")
      assert.strictEqual(authorized.version, 2)
      const settled = yield* applyCommand(
        merchant.id,
        created.id,
        commandFor("settle"),
        { actor: "system:settlement", correlationId: "corr-settle", reason: "daily batch" }
      )
      assert.strictEqual(settled.status, "SETTLED")
      assert.strictEqual(settled.version, 3)
      assert.strictEqual((yield* payments.findById(merchant.id, created.id)).status, "SETTLED")

      const history = yield* historyRows(created.id)
      assert.deepStrictEqual(
        history.map((row) => [row.version, row.from_status, row.to_status, row.actor, row.reason]),
        [
          [1, null, "CREATED", "test:payments", null],
          [2, "CREATED", "AUTHORIZED", "test:payments", null],
          [3, "AUTHORIZED", "SETTLED", "system:settlement", "daily batch"]
        ]
      )
      const outbox = yield* outboxRows(created.id)
      assert.deepStrictEqual(outbox.map((row) => row.event_type), ["payment_created", "payment_authorized", "payment_settled"])
      assert.deepInclude(outbox[2]?.payload, { previous_status: "AUTHORIZED", status: "SETTLED", version: 3, amount_minor: 1999 })
      assert.deepStrictEqual(outbox[2]?.headers, { correlation_id: "corr-settle" })
    }))

  it.effect("refuses an illegal command with InvalidTransition and writes nothing", () =>
    Effect.gen(function* () {
      const { payments, merchant } = yield* setup
      const created = yield* payments.create(paymentInput(merchant), context)
      const declined = yield* payments.apply(merchant.id, created.id, commandFor("decline"), context)
      assert.strictEqual(declined.status, "FAILED")
      assert.strictEqual(declined.failure_code, "card_declined")

      for (const name of ["authorize", "decline", "settle", "fail"] as const) {
        const error = yield* Effect.flip(payments.apply(merchant.id, created.id, commandFor(name), context))
        assert.instanceOf(error, InvalidTransition)
        if (error._tag === "InvalidTransition") {
          assert.deepStrictEqual([error.paymentId, error.from, error.command], [created.id, "FAILED", name])
        }
      }
      const after = yield* payments.findById(merchant.id, created.id)
      assert.strictEqual(after.version, 2)
      assert.strictEqual((yield* historyRows(created.id)).length, 2)
      assert.strictEqual((yield* outboxRows(created.id)).length, 2)
    }))

  it.effect("a transition whose transaction rolls back leaves no outbox row; a committed one leaves exactly one", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { payments, merchant } = yield* setup
      const created = yield* payments.create(paymentInput(merchant), context)

      // The caller's transaction fails after `apply` succeeded inside it: everything rolls back.
      const rolledBack = yield* Effect.flip(
        sql.withTransaction(
          Effect.gen(function* () {
            yield* payments.apply(merchant.id, created.id, commandFor("authorize"), context)
            return yield* new Boom()
          })
        )
      )
      assert.instanceOf(rolledBack, Boom)
      assert.strictEqual((yield* payments.findById(merchant.id, created.id)).status, "CREATED")
      assert.deepStrictEqual((yield* outboxRows(created.id)).map((row) => row.event_type), ["payment_created"])
      assert.strictEqual((yield* historyRows(created.id)).length, 1)

      yield* payments.apply(merchant.id, created.id, commandFor("authorize"), context)
      const outbox = yield* outboxRows(created.id)
      assert.deepStrictEqual(outbox.map((row) => row.event_type), ["payment_created", "payment_authorized"])
    }))

  it.effect("composes inside a caller's transaction: a failed nested apply rolls back to its savepoint only", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { payments, merchant } = yield* setup
      const first = yield* payments.create(paymentInput(merchant), context)
      const second = yield* payments.create(paymentInput(merchant), context)

      yield* sql.withTransaction(
        Effect.gen(function* () {
          yield* payments.apply(merchant.id, first.id, commandFor("authorize"), context)
          // Illegal on a CREATED payment: fails, the caller handles it, the transaction goes on.
          const refused = yield* Effect.flip(payments.apply(merchant.id, second.id, commandFor("settle"), context))
          assert.instanceOf(refused, InvalidTransition)
          yield* applyCommand(merchant.id, first.id, commandFor("settle"), context)
          yield* payments.apply(merchant.id, second.id, commandFor("decline"), context)
        })
      )
      assert.strictEqual((yield* payments.findById(merchant.id, first.id)).status, "SETTLED")
      assert.strictEqual((yield* payments.findById(merchant.id, second.id)).status, "FAILED")
      assert.deepStrictEqual(
        (yield* outboxRows(first.id)).map((row) => row.event_type),
        ["payment_created", "payment_authorized", "payment_settled"]
      )
      assert.deepStrictEqual((yield* outboxRows(second.id)).map((row) => row.event_type), ["payment_created", "payment_failed"])
    }))

  it.effect("lists a merchant's payments newest first, in bounded pages, with a cursor", () =>
    Effect.gen(function* () {
      const { payments, merchants, merchant } = yield* setup
      const other = yield* merchants.create("Noise merchant")
      const ids: Array<PaymentId> = []
      for (let index = 0; index < 23; index++) {
        yield* TestClock.adjust("1 second")
        ids.push((yield* payments.create(paymentInput(merchant), context)).id)
        // Two payments in the same millisecond: the id breaks the tie, nothing is skipped.
        if (index % 5 === 0) ids.push((yield* payments.create(paymentInput(merchant), context)).id)
        yield* payments.create(paymentInput(other), context)
      }
      const limit = PageLimit.make(10)
      const seen: Array<PaymentId> = []
      const pageSizes: Array<number> = []
      let cursor: PaymentId | undefined = undefined
      for (let page = 0; page < 10; page++) {
        const result: PaymentPage = yield* payments.list(merchant.id, { limit, startingAfter: cursor })
        pageSizes.push(result.data.length)
        for (const payment of result.data) {
          assert.strictEqual(payment.merchant_id, merchant.id)
          seen.push(payment.id)
        }
        if (!result.hasMore) break
        cursor = result.data[result.data.length - 1]?.id
      }
      assert.deepStrictEqual(pageSizes, [10, 10, 8])
      assert.strictEqual(new Set(seen).size, ids.length)
      assert.deepStrictEqual(new Set(seen), new Set(ids))
      // Newest first: created_at never increases along the listing.
      const listed = yield* payments.list(merchant.id, { limit: PageLimit.make(100) })
      assert.strictEqual(listed.data.length, 28)
      assert.isFalse(listed.hasMore)
      for (let index = 1; index < listed.data.length; index++) {
        const previous = listed.data[index - 1]
        const current = listed.data[index]
        if (previous === undefined || current === undefined) continue
        assert.isAtLeast(previous.created_at.epochMilliseconds, current.created_at.epochMilliseconds)
      }
      assert.strictEqual((yield* payments.list(merchant.id)).data.length, 10) // default limit
    }))

  it.effect("payments created microseconds apart (an import, a backfill: not the API, which writes milliseconds) are each listed once across pages", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { payments, merchant } = yield* setup
      const ids: Array<PaymentId> = []
      for (let index = 0; index < 10; index++) ids.push((yield* payments.create(paymentInput(merchant), context)).id)
      // As an import would date them: 1 µs apart (the owner, triggers off for the backfill).
      yield* sql.withTransaction(Effect.gen(function* () {
        yield* sql`SET LOCAL session_replication_role = replica`
        yield* sql`
          UPDATE payments p SET created_at = timestamptz '2026-12-02 00:00:00+00' + n.i * interval '1 microsecond', updated_at = timestamptz '2026-12-02 00:00:00+00' + n.i * interval '1 microsecond'
          FROM (SELECT id, row_number() OVER (ORDER BY id) AS i FROM payments WHERE merchant_id = ${merchant.id}) n
          WHERE p.id = n.id`
      }))
      const seen: Array<PaymentId> = []
      let cursor: PaymentId | undefined = undefined
      for (let page = 0; page < 20; page++) {
        const result: PaymentPage = yield* payments.list(merchant.id, { limit: PageLimit.make(2), startingAfter: cursor })
        seen.push(...result.data.map((payment) => payment.id))
        if (!result.hasMore) break
        cursor = result.data[result.data.length - 1]?.id
      }
      assert.strictEqual(seen.length, 10, "a Date cursor dropped the microseconds and skipped 8 of 10 (outside limits review)")
      assert.deepStrictEqual(new Set(seen), new Set(ids))
    }))

  it.effect("refuses a cursor that is unknown or belongs to another merchant, identically", () =>
    Effect.gen(function* () {
      const { payments, merchants, merchant } = yield* setup
      const other = yield* merchants.create("Other")
      const theirs = yield* payments.create(paymentInput(other), context)
      const foreign = yield* Effect.flip(payments.list(merchant.id, { startingAfter: theirs.id }))
      const unknown = yield* Effect.flip(payments.list(merchant.id, { startingAfter: yield* generatePaymentId }))
      assert.instanceOf(foreign, InvalidCursor)
      assert.instanceOf(unknown, InvalidCursor)
      assert.isTrue(Schema.decodeUnknownOption(PageLimit)(0)._tag === "None")
      assert.isTrue(Schema.decodeUnknownOption(PageLimit)(101)._tag === "None")
    }))
})
