// createGated: a create as one statement behind a gate (the idempotency key's INSERT in the API).
// The payment, its history row and its event are written only for the gate's row, all or nothing.
import { assert, layer } from "@effect/vitest"
import { generateMerchantId } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { context, paymentInput, PaymentsTestLayer, setup } from "./support.ts"

const counts = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ payments: Schema.Number, history: Schema.Number, events: Schema.Number }))(sql`
      SELECT (SELECT count(*)::int FROM payments WHERE id = ${paymentId}) AS payments,
             (SELECT count(*)::int FROM payment_status_history WHERE payment_id = ${paymentId}) AS history,
             (SELECT count(*)::int FROM outbox_events WHERE aggregate_id = ${paymentId}) AS events`)
    return row
  })

layer(PaymentsTestLayer)("PaymentRepository.createGated (real Postgres)", (it) => {
  it.effect("the gate's row: payment, history and event written together; no row: nothing written", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { payments, merchant } = yield* setup
      const open = yield* payments.prepareCreate(paymentInput(merchant))
      assert.isTrue(yield* payments.createGated(sql`SELECT 1 AS id`, open, context))
      assert.deepStrictEqual(yield* counts(open.payment.id), { payments: 1, history: 1, events: 1 })
      const shut = yield* payments.prepareCreate(paymentInput(merchant))
      assert.isFalse(yield* payments.createGated(sql`SELECT 1 AS id WHERE false`, shut, context))
      assert.deepStrictEqual(yield* counts(shut.payment.id), { payments: 0, history: 0, events: 0 })
    }))

  it.effect("an unknown merchant fails the whole statement (the database's foreign key): nothing written", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { payments, merchant } = yield* setup
      const prepared = yield* payments.prepareCreate(paymentInput(merchant))
      const stranger = yield* generateMerchantId
      const orphan = { ...prepared, payment: { ...prepared.payment, merchant_id: stranger } }
      const failed = yield* Effect.flip(payments.createGated(sql`SELECT 1 AS id`, orphan, context))
      assert.strictEqual(failed._tag, "SqlError")
      assert.deepStrictEqual(yield* counts(prepared.payment.id), { payments: 0, history: 0, events: 0 })
    }))
})
