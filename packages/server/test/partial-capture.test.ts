// Partial capture (issue 19): POST /v1/payments/{id}/settle with `{ "amount": n }` over real HTTP
// on the in-process app. The captured amount, never the authorized one, is what the ledger, the
// balance, the settlement row and the payment_settled event carry; the fee is computed on it. An
// amount above the authorized one is a stored 422 before the acquirer is asked. The database
// refuses a settlement row or a captured amount that disagrees (raw SQL).
import { assert, layer } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { acquirerOperation, assertBooksConsistent } from "@pay/settlement/test-support"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import {
  authorizedPayment,
  codeOf,
  describeAnswer,
  jsonOf,
  newKey,
  payableBalance,
  replayed,
  settle
} from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const layerOptions = { excludeTestServices: true, timeout: "60 seconds" } as const

const settledRows = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({
      captured_amount_minor: Schema.NullOr(Schema.BigInt),
      gross_minor: Schema.BigInt,
      fee_minor: Schema.BigInt,
      net_minor: Schema.BigInt,
      receivable_minor: Schema.BigInt,
      event_captured: Schema.NullOr(Schema.String),
      event_fee: Schema.NullOr(Schema.String)
    }))(sql`
      SELECT p.captured_amount_minor, s.gross_minor, s.fee_minor, s.net_minor,
             (SELECT e.amount_minor FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
              WHERE e.transaction_id = s.ledger_transaction_id AND a.code LIKE 'acquirer:receivable:%') AS receivable_minor,
             (SELECT o.payload ->> 'captured_amount_minor' FROM outbox_events o
              WHERE o.aggregate_id = p.id AND o.event_type = 'payment_settled') AS event_captured,
             (SELECT o.payload ->> 'fee_minor' FROM outbox_events o
              WHERE o.aggregate_id = p.id AND o.event_type = 'payment_settled') AS event_fee
      FROM payments p JOIN payment_settlements s ON s.payment_id = p.id
      WHERE p.id = ${paymentId}`)
    return row
  })

layer(inProcessAppLayer(), layerOptions)("partial capture: settle with an amount (in-process app over HTTP)", (it) => {
  it.effect("capture 6.00 of 10.00 USD: fee on 6.00 (0.47), balance +5.53, the row, the posting and payment_settled carry 600; the key replays", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Partial")
      const id = yield* authorizedPayment(merchant, 1_000n, "USD")
      const key = newKey("settle")
      const first = yield* settle(merchant, id, key, { json: { amount: 600 } })
      assert.strictEqual(first.status, 200, describeAnswer(first))
      assert.strictEqual(jsonOf(first)["status"], "SETTLED")
      assert.strictEqual(jsonOf(first)["amount"], 1_000)
      assert.strictEqual(jsonOf(first)["captured_amount"], 600)
      const again = yield* settle(merchant, id, key, { json: { amount: 600 } })
      assert.isTrue(replayed(again))
      assert.strictEqual(again.text, first.text)
      // The same key with another amount is another request.
      const otherAmount = yield* settle(merchant, id, key, { json: { amount: 500 } })
      assert.strictEqual(otherAmount.status, 422, describeAnswer(otherAmount))
      assert.strictEqual(codeOf(otherAmount), "idempotency_key_reused")
      // Default fees: 2.90 % + 0.30 on 6.00 = 0.174 → 0.17 + 0.30 = 0.47; net 5.53.
      assert.deepStrictEqual(yield* settledRows(id), {
        captured_amount_minor: 600n,
        gross_minor: 600n,
        fee_minor: 47n,
        net_minor: 553n,
        receivable_minor: 600n,
        event_captured: "600",
        event_fee: "47"
      })
      assert.deepStrictEqual(yield* payableBalance(merchant), [{ currency: "USD", amount: 553 }])
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture:600`), [{ performed_count: 1, request_count: 1 }])
      yield* assertBooksConsistent
    }))

  it.effect("no amount captures everything (reference payment:<id>:capture); an amount above the authorized one is a stored 422, the acquirer not asked", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Partial edges")
      const id = yield* authorizedPayment(merchant, 1_000n, "USD")
      const key = newKey("settle")
      const over = yield* settle(merchant, id, key, { json: { amount: 1_001 } })
      assert.strictEqual(over.status, 422, describeAnswer(over))
      assert.strictEqual(codeOf(over), "capture_exceeds_authorized")
      assert.strictEqual(jsonOf(over)["field"], "amount")
      const overAgain = yield* settle(merchant, id, key, { json: { amount: 1_001 } })
      assert.isTrue(replayed(overAgain), "a decided refusal is stored with its key")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture:1001`), [])
      const zero = yield* settle(merchant, id, newKey("settle"), { json: { amount: 0 } })
      assert.strictEqual(zero.status, 400, describeAnswer(zero))
      const full = yield* settle(merchant, id, newKey("settle"), { json: {} })
      assert.strictEqual(full.status, 200, describeAnswer(full))
      assert.strictEqual(jsonOf(full)["captured_amount"], 1_000)
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 1 }])
      yield* assertBooksConsistent
    }))

  it.effect("two keys capture different amounts of one authorization concurrently: one capture at the acquirer, one settlement, the loser 409", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Partial race")
      for (let round = 0; round < 6; round++) {
        const id = yield* authorizedPayment(merchant, 2_000n, "EUR")
        const answers = yield* Effect.all([
          settle(merchant, id, newKey("settle"), { json: { amount: 700 } }),
          settle(merchant, id, newKey("settle"), { json: { amount: 900 } })
        ], { concurrency: 2 })
        assert.deepStrictEqual(answers.map((a) => a.status).sort(), [200, 409], answers.map(describeAnswer).join(" / "))
        const winner = answers.find((a) => a.status === 200)
        const sql = yield* SqlClient.SqlClient
        const captures = yield* decodeRows(Schema.Struct({ amount_minor: Schema.BigInt }))(sql`
          SELECT amount_minor FROM acquirer_sim.operations WHERE payment_id = ${id} AND operation = 'capture' AND outcome = 'approved'`)
        assert.deepStrictEqual(captures.map((c) => Number(c.amount_minor)), [winner === undefined ? -1 : Number(jsonOf(winner)["captured_amount"])])
      }
      yield* assertBooksConsistent
    }))

  it.effect("raw SQL: a captured amount above the authorized one, or a SETTLED payment without one, is refused", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchant = yield* createMerchant("Partial raw")
      const id = yield* authorizedPayment(merchant, 1_000n, "USD")
      const over = yield* Effect.flip(sql`
        UPDATE payments SET status = 'SETTLED', captured_amount_minor = 1001, version = version + 1 WHERE id = ${id}`)
      assert.match(String(over.reason.cause), /payments_captured_within_authorized/)
      const missing = yield* Effect.flip(sql`
        UPDATE payments SET status = 'SETTLED', version = version + 1 WHERE id = ${id}`)
      assert.match(String(missing.reason.cause), /payments_captured_iff_settled/)
      assert.strictEqual((yield* settle(merchant, id, newKey("settle"), { json: { amount: 400 } })).status, 200)
      const rewrite = yield* Effect.flip(sql`UPDATE payments SET captured_amount_minor = 1000 WHERE id = ${id}`)
      assert.match(String(rewrite.reason.cause), /terminal/)
      const captured = yield* settledRows(id)
      assert.strictEqual(captured?.gross_minor, 400n)
      yield* assertBooksConsistent
    }))
})
