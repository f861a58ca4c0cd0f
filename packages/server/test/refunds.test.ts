// Refunds (issue 19) over real HTTP on the in-process app (a fresh database): refunds as objects,
// PENDING → SUCCEEDED / FAILED by the acquirer simulator, one balanced reversal per succeeded
// refund (fee kept), and the cap (Σ refunds not FAILED ≤ captured) held by the code AND by the
// database: 50 concurrent partial refunds, raw SQL attacks, an unknown outcome that keeps counting.
import { assert, layer } from "@effect/vitest"
import { AcquirerSimulator } from "@pay/acquirer"
import type { MerchantId } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { FeeSchedules } from "@pay/settlement"
import { acquirerOperation, assertLedgerVerifies } from "@pay/settlement/test-support"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { authorizedPayment, codeOf, describeAnswer, get, jsonOf, newKey, payableBalance, post, replayed, settle, type TestMerchant } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const layerOptions = { excludeTestServices: true, timeout: "120 seconds" } as const

const refund = (m: TestMerchant, paymentId: string, key: string, json: unknown = {}) => post(m, `/v1/payments/${paymentId}/refunds`, key, { json })

/** A merchant without fees (its payable covers every refund up to the capture) and a settled payment. */
const settledPayment = (name: string, amount_minor: bigint, payment_method = "pm_card_visa") =>
  Effect.gen(function* () {
    const merchant = yield* createMerchant(name)
    const fees = yield* FeeSchedules
    yield* fees.set(merchant.merchantId, "EUR", { fee_bps: 0, fee_fixed_minor: 0n })
    const id = payment_method === "pm_card_visa"
      ? yield* authorizedPayment(merchant, amount_minor, "EUR")
      : yield* authorizedWith(merchant, amount_minor, payment_method)
    const settled = yield* settle(merchant, id, newKey("settle"))
    assert.strictEqual(settled.status, 200, describeAnswer(settled))
    return { merchant, id }
  })

const authorizedWith = (m: TestMerchant, amount_minor: bigint, payment_method: string) =>
  Effect.gen(function* () {
    const created = yield* post(m, "/v1/payments", newKey("create"), { json: { amount: Number(amount_minor), currency: "EUR", payment_method } })
    const id = String(jsonOf(created)["id"])
    const authorized = yield* post(m, `/v1/payments/${id}/authorize`, newKey("authorize"))
    assert.strictEqual(jsonOf(authorized)["status"], "AUTHORIZED", describeAnswer(authorized))
    return id
  })

/** What the database says about a payment's refunds and their money. */
const refundBooks = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ succeeded_minor: Schema.BigInt, not_failed_minor: Schema.BigInt, postings: Schema.BigInt, reversed_minor: Schema.BigInt }))(sql`
      SELECT (SELECT coalesce(sum(amount_minor), 0) FROM refunds WHERE payment_id = ${paymentId} AND status = 'SUCCEEDED')::bigint AS succeeded_minor,
             (SELECT coalesce(sum(amount_minor), 0) FROM refunds WHERE payment_id = ${paymentId} AND status <> 'FAILED')::bigint AS not_failed_minor,
             (SELECT count(*) FROM transactions WHERE reference LIKE ${`payment:${paymentId}:refund:%`}) AS postings,
             (SELECT coalesce(sum(e.amount_minor), 0) FROM transactions t JOIN ledger_entries e ON e.transaction_id = t.id
              WHERE t.reference LIKE ${`payment:${paymentId}:refund:%`} AND e.side = 'debit')::bigint AS reversed_minor`)
    return row
  })

const euroBalance = (m: TestMerchant) => Effect.map(payableBalance(m), (balances) => JSON.stringify(balances))

layer(inProcessAppLayer(), layerOptions)("refunds (in-process app over HTTP)", (it) => {
  it.effect("null as the reads show it: a create with description null and a refund with reason null are accepted as 'none', the same key replays, a wrong type is still a 400", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Nulls")
      const key = newKey("create")
      const body = { amount: 2_500, currency: "EUR", payment_method: "pm_card_visa", description: null }
      const created = yield* post(merchant, "/v1/payments", key, { json: body })
      assert.strictEqual(created.status, 201, describeAnswer(created))
      assert.isNull(jsonOf(created)["description"], "shown as null, as sent")
      const again = yield* post(merchant, "/v1/payments", key, { json: body })
      assert.isTrue(replayed(again))
      assert.strictEqual(again.text, created.text)
      const wrong = yield* post(merchant, "/v1/payments", newKey("create"), { json: { ...body, description: 5 } })
      assert.deepStrictEqual([wrong.status, jsonOf(wrong)["field"]], [400, "description"], describeAnswer(wrong))
      const { merchant: payer, id } = yield* settledPayment("Nulls refund", 4_000n)
      const refunded = yield* refund(payer, id, newKey("refund"), { amount: 1_000, reason: null })
      assert.strictEqual(refunded.status, 201, describeAnswer(refunded))
      assert.isNull(jsonOf(refunded)["reason"], "no reason given")
      const badReason = yield* refund(payer, id, newKey("refund"), { amount: 1_000, reason: "because" })
      assert.deepStrictEqual([badReason.status, jsonOf(badReason)["field"]], [400, "reason"], describeAnswer(badReason))
    }))

  it.effect("partial then the rest: 201 SUCCEEDED each, the key replays, list and retrieve; one reversal each, the balance falls by the refunds, the cap refuses 1 more", () =>
    Effect.gen(function* () {
      const { merchant, id } = yield* settledPayment("Refunds", 10_000n)
      const key = newKey("refund")
      const first = yield* refund(merchant, id, key, { amount: 3_000, reason: "requested_by_customer", metadata: { ticket: "42" } })
      assert.strictEqual(first.status, 201, describeAnswer(first))
      assert.strictEqual(jsonOf(first)["status"], "SUCCEEDED")
      const again = yield* refund(merchant, id, key, { amount: 3_000, reason: "requested_by_customer", metadata: { ticket: "42" } })
      assert.isTrue(replayed(again))
      assert.strictEqual(again.text, first.text)
      const rest = yield* refund(merchant, id, newKey("refund"))
      assert.strictEqual(rest.status, 201, describeAnswer(rest))
      assert.strictEqual(jsonOf(rest)["amount"], 7_000, "no amount: what is left")
      const over = yield* refund(merchant, id, newKey("refund"), { amount: 1 })
      assert.strictEqual(over.status, 422, describeAnswer(over))
      assert.strictEqual(codeOf(over), "refund_exceeds_captured")
      // Everything is refunded: the answer says so, not "a refund of 0 … would exceed" (a refund
      // with no amount asks for what is left, here 0).
      assert.include(String(jsonOf(over)["detail"]), "nothing is left to refund: 10000 of the captured 10000")
      const none = yield* refund(merchant, id, newKey("refund"))
      assert.deepStrictEqual([none.status, codeOf(none)], [422, "refund_exceeds_captured"], describeAnswer(none))
      assert.include(String(jsonOf(none)["detail"]), "nothing is left to refund")
      const list = yield* get(merchant, `/v1/payments/${id}/refunds`)
      assert.strictEqual(list.status, 200, describeAnswer(list))
      const data = jsonOf(list)["data"]
      assert.isTrue(Array.isArray(data) && data.length === 2)
      const one = yield* get(merchant, `/v1/payments/${id}/refunds/${String(jsonOf(first)["id"])}`)
      assert.strictEqual(one.text, first.text, describeAnswer(one))
      assert.deepStrictEqual(yield* refundBooks(id), { succeeded_minor: 10_000n, not_failed_minor: 10_000n, postings: 2n, reversed_minor: 10_000n })
      assert.strictEqual(yield* euroBalance(merchant), JSON.stringify([{ currency: "EUR", amount: 0 }]))
      yield* assertLedgerVerifies
    }))

  it.effect("GET one refund: an unknown or another merchant's payment is 404 payment_not_found, as the list answers; a known payment with an unknown or another payment's refund is refund_not_found", () =>
    Effect.gen(function* () {
      const { merchant, id } = yield* settledPayment("Refund reads", 5_000n)
      const made = yield* refund(merchant, id, newKey("refund"), { amount: 1_000 })
      assert.strictEqual(made.status, 201, describeAnswer(made))
      const refundId = String(jsonOf(made)["id"])
      const other = yield* settledPayment("Refund reads, other merchant", 5_000n)
      const otherRefund = yield* refund(other.merchant, other.id, newKey("refund"), { amount: 1_000 })
      assert.strictEqual(otherRefund.status, 201, describeAnswer(otherRefund))
      const otherRefundId = String(jsonOf(otherRefund)["id"])
      const unknownPayment = `pay_${"a".repeat(24)}`
      const unknownRefund = `re_${"a".repeat(24)}`

      const notFound = (path: string, code: string) =>
        Effect.gen(function* () {
          const answer = yield* get(merchant, path)
          assert.deepStrictEqual([answer.status, codeOf(answer)], [404, code], `${path}: ${describeAnswer(answer)}`)
        })
      // The payment is checked first, for the one refund as for the list.
      yield* notFound(`/v1/payments/${unknownPayment}/refunds`, "payment_not_found")
      yield* notFound(`/v1/payments/${unknownPayment}/refunds/${unknownRefund}`, "payment_not_found")
      yield* notFound(`/v1/payments/${unknownPayment}/refunds/${refundId}`, "payment_not_found")
      yield* notFound(`/v1/payments/${unknownPayment}/refunds/x`, "payment_not_found")
      yield* notFound(`/v1/payments/x/refunds/${refundId}`, "payment_not_found")
      // Another merchant's payment answers like an unknown one: no oracle.
      yield* notFound(`/v1/payments/${other.id}/refunds/${otherRefundId}`, "payment_not_found")
      yield* notFound(`/v1/payments/${other.id}/refunds`, "payment_not_found")
      // A payment of this merchant: its refund is found; any other refund id is refund_not_found.
      assert.strictEqual((yield* get(merchant, `/v1/payments/${id}/refunds/${refundId}`)).text, made.text)
      yield* notFound(`/v1/payments/${id}/refunds/${unknownRefund}`, "refund_not_found")
      yield* notFound(`/v1/payments/${id}/refunds/${otherRefundId}`, "refund_not_found")
      yield* notFound(`/v1/payments/${id}/refunds/x`, "refund_not_found")
    }))

  it.effect("50 concurrent refunds of 300 on a capture of 10,000: exactly the 33 that fit succeed, 17 are 422; the acquirer refunded 9,900; the ledger verifies", () =>
    Effect.gen(function* () {
      const { merchant, id } = yield* settledPayment("Refund cap", 10_000n)
      // A 503 (the acquirer slower than its timeout on a loaded machine) is an unknown outcome:
      // the client retries with the same key, as the API says, until the refund is decided (bounded).
      const decided = (key: string) =>
        Effect.gen(function* () {
          for (let attempt = 0; attempt < 40; attempt++) {
            const answer = yield* refund(merchant, id, key, { amount: 300 })
            if (answer.status !== 503 && !(answer.status === 409 && codeOf(answer) === "idempotency_key_in_use")) return answer
            yield* Effect.sleep(250)
          }
          return assert.fail(`refund with key ${key} still undecided after 40 attempts`)
        })
      const answers = yield* Effect.all(Array.from({ length: 50 }, () => decided(newKey("refund"))), { concurrency: 50 })
      const statuses = answers.map((a) => a.status)
      assert.strictEqual(statuses.filter((s) => s === 201).length, 33, answers.filter((a) => a.status !== 201 && a.status !== 422).map(describeAnswer).join(" / "))
      assert.strictEqual(statuses.filter((s) => s === 422).length, 17, answers.filter((a) => a.status !== 201 && a.status !== 422).map(describeAnswer).join(" / "))
      assert.isTrue(answers.filter((a) => a.status === 422).every((a) => codeOf(a) === "refund_exceeds_captured"))
      assert.deepStrictEqual(yield* refundBooks(id), { succeeded_minor: 9_900n, not_failed_minor: 9_900n, postings: 33n, reversed_minor: 9_900n })
      const sql = yield* SqlClient.SqlClient
      const [acquired] = yield* decodeRows(Schema.Struct({ n: Schema.BigInt, total: Schema.BigInt }))(sql`
        SELECT count(*) AS n, coalesce(sum(amount_minor), 0)::bigint AS total FROM acquirer_sim.operations
        WHERE payment_id = ${id} AND operation = 'refund' AND outcome = 'approved'`)
      assert.deepStrictEqual(acquired, { n: 33n, total: 9_900n })
      assert.strictEqual(yield* euroBalance(merchant), JSON.stringify([{ currency: "EUR", amount: 100 }]))
      yield* assertLedgerVerifies
    }))

  it.effect("raw SQL: an over-cap refund, a refund born SUCCEEDED, a FAILED refund revived, and SUCCEEDED naming another posting are refused", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant, id } = yield* settledPayment("Refund raw", 5_000n)
      assert.strictEqual((yield* refund(merchant, id, newKey("refund"), { amount: 4_000 })).status, 201)
      const insert = (refundId: string, amount_minor: number, status: string) => sql`
        INSERT INTO refunds (id, payment_id, merchant_id, amount_minor, currency, status, created_at, updated_at)
        VALUES (${refundId}, ${id}, ${merchant.merchantId}, ${amount_minor}, 'EUR', ${status}, now(), now())`
      // Each refund change commits with its outbox event (0060), as the store writes them.
      const event = (refundId: string, type: string, version: number) => sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
        VALUES (gen_random_uuid(), 'payment', ${id}, ${type}, jsonb_build_object('refund_id', ${refundId}::text, 'version', ${version}::int))`
      const insertWithEvent = (refundId: string, amount_minor: number) =>
        sql.withTransaction(Effect.andThen(insert(refundId, amount_minor, "PENDING"), event(refundId, "refund_created", 1)))
      const overCap = yield* Effect.flip(insert("re_000000000000000000000001", 1_001, "PENDING"))
      assert.match(String(overCap.reason.cause), /refund cap/)
      const bornSucceeded = yield* Effect.flip(insert("re_000000000000000000000002", 10, "SUCCEEDED"))
      assert.match(String(bornSucceeded.reason.cause), /must be inserted PENDING/)
      // A FAILED refund (declined by hand here) cannot come back to count again.
      yield* insertWithEvent("re_000000000000000000000003", 1_000)
      yield* sql.withTransaction(Effect.andThen(
        sql`UPDATE refunds SET status = 'FAILED', failure_code = 'by_hand', failure_message = 'x' WHERE id = 're_000000000000000000000003'`,
        event("re_000000000000000000000003", "refund_failed", 2)
      ))
      const revived = yield* Effect.flip(sql`UPDATE refunds SET status = 'PENDING', failure_code = NULL, failure_message = NULL WHERE id = 're_000000000000000000000003'`)
      assert.match(String(revived.reason.cause), /cannot move FAILED -> PENDING/)
      // A PENDING refund cannot claim SUCCEEDED with a posting that is not its reversal (here: the settlement's).
      yield* insertWithEvent("re_000000000000000000000004", 10)
      const succeededWithoutPosting = yield* Effect.flip(sql`
        UPDATE refunds SET status = 'SUCCEEDED', ledger_transaction_id = (SELECT min(id) FROM transactions) WHERE id = 're_000000000000000000000004'`)
      assert.match(String(succeededWithoutPosting.reason.cause), /must name its reversal posting/)
      assert.deepStrictEqual(yield* refundBooks(id), { succeeded_minor: 4_000n, not_failed_minor: 4_010n, postings: 1n, reversed_minor: 4_000n })
      yield* assertLedgerVerifies
    }))

  it.effect("raw SQL, concurrently: two transactions each inserting the rest of the cap, the second while the first is open, refund it once (the trigger's row lock)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant, id } = yield* settledPayment("Refund raw race", 3_000n)
      // Not through the refund store (its own locks would serialise the two): the trigger alone
      // must. Without its FOR NO KEY UPDATE the second sees no refund yet and both commit
      // (outside test audit: dropping it passed every test).
      const rest = (refundId: string, holdOpen_ms: number) => sql.withTransaction(Effect.gen(function* () {
        yield* sql`
          INSERT INTO refunds (id, payment_id, merchant_id, amount_minor, currency, status, created_at, updated_at)
          VALUES (${refundId}, ${id}, ${merchant.merchantId}, 3000, 'EUR', 'PENDING', now(), now())`
        yield* sql`
          INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
          VALUES (gen_random_uuid(), 'payment', ${id}, 'refund_created', jsonb_build_object('refund_id', ${refundId}::text, 'version', 1))`
        if (holdOpen_ms > 0) yield* sql`SELECT pg_sleep(${holdOpen_ms / 1_000})`
      }))
      const [first, second] = yield* Effect.all([
        Effect.result(rest("re_000000000000000000000011", 600)),
        Effect.andThen(Effect.sleep("150 millis"), Effect.result(rest("re_000000000000000000000012", 0)))
      ], { concurrency: 2 })
      assert.strictEqual(first._tag, "Success", "the first insert commits")
      assert.strictEqual(second._tag, "Failure", "the second, waiting on the payment's row, then sees the first")
      if (second._tag === "Failure") assert.match(String(second.failure.reason.cause), /refund cap/)
      assert.deepStrictEqual(yield* refundBooks(id), { succeeded_minor: 0n, not_failed_minor: 3_000n, postings: 0n, reversed_minor: 0n })
    }))

  it.effect("refused before anything moves: an AUTHORIZED payment (409 payment_not_refundable), a merchant whose balance (fee kept) cannot cover the refund (409 refund_exceeds_balance)", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Refund refused")
      const authorized = yield* authorizedPayment(merchant, 1_000n, "EUR")
      const early = yield* refund(merchant, authorized, newKey("refund"))
      assert.strictEqual(early.status, 409, describeAnswer(early))
      assert.strictEqual(codeOf(early), "payment_not_refundable")
      // Default fees: 1,000 EUR minor units settle with a fee, so the payable (the net) is below 1,000.
      assert.strictEqual((yield* settle(merchant, authorized, newKey("settle"))).status, 200)
      const full = yield* refund(merchant, authorized, newKey("refund"))
      assert.strictEqual(full.status, 409, describeAnswer(full))
      assert.strictEqual(codeOf(full), "refund_exceeds_balance")
      assert.deepStrictEqual(yield* refundBooks(authorized), { succeeded_minor: 0n, not_failed_minor: 0n, postings: 0n, reversed_minor: 0n })
    }))

  it.effect("a declined refund is 201 FAILED, moves nothing and no longer counts toward the cap", () =>
    Effect.gen(function* () {
      const { merchant, id } = yield* settledPayment("Refund declined", 2_000n, "pm_card_refund_declined")
      for (let attempt = 0; attempt < 2; attempt++) {
        const declined = yield* refund(merchant, id, newKey("refund"), { amount: 2_000 })
        assert.strictEqual(declined.status, 201, describeAnswer(declined))
        assert.strictEqual(jsonOf(declined)["status"], "FAILED")
        assert.strictEqual(jsonOf(declined)["failure_code"], "refund_declined")
      }
      assert.deepStrictEqual(yield* refundBooks(id), { succeeded_minor: 0n, not_failed_minor: 0n, postings: 0n, reversed_minor: 0n })
      yield* assertLedgerVerifies
    }))
})

const setNoFees = (merchantId: MerchantId) =>
  Effect.gen(function* () {
    const fees = yield* FeeSchedules
    yield* fees.set(merchantId, "EUR", { fee_bps: 0, fee_fixed_minor: 0n })
  })

layer(
  inProcessAppLayer({ acquirer: AcquirerSimulator.layerFaulty({ failRefundAfterPerforming: "first_call" }, { timeout_ms: 300 }) }),
  layerOptions
)("refunds with a lost acquirer answer", (it) => {
  it.effect("the refund is performed but its answer is lost: 503, the refund stays PENDING and counts toward the cap; the same key then finishes it, refunded once", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Refund lost answer")
      yield* setNoFees(merchant.merchantId)
      const id = yield* authorizedPayment(merchant, 1_000n, "EUR")
      assert.strictEqual((yield* settle(merchant, id, newKey("settle"))).status, 200)
      const key = newKey("refund")
      const lost = yield* refund(merchant, id, key, { amount: 600 })
      assert.strictEqual(lost.status, 503, describeAnswer(lost))
      assert.deepStrictEqual(yield* refundBooks(id), { succeeded_minor: 0n, not_failed_minor: 600n, postings: 0n, reversed_minor: 0n })
      const tooMuch = yield* refund(merchant, id, newKey("refund"), { amount: 401 })
      assert.strictEqual(tooMuch.status, 422, describeAnswer(tooMuch))
      const finished = yield* refund(merchant, id, key, { amount: 600 })
      assert.strictEqual(finished.status, 201, describeAnswer(finished))
      assert.strictEqual(jsonOf(finished)["status"], "SUCCEEDED")
      assert.deepStrictEqual(yield* acquirerOperation(`refund:${String(jsonOf(finished)["id"])}`), [{ performed_count: 1, request_count: 2 }])
      assert.deepStrictEqual(yield* refundBooks(id), { succeeded_minor: 600n, not_failed_minor: 600n, postings: 1n, reversed_minor: 600n })
      yield* assertLedgerVerifies
    }))
})
