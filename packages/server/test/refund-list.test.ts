// GET /v1/payments/{id}/refunds pages like the other lists (an outside tester found it stuck at
// the first 100 refunds, `limit` and `starting_after` refused as unknown parameters): `limit`
// 1-100 (decimal digits), `starting_after` one of THIS payment's refunds, anything else 400
// `invalid_cursor`; oldest first, stable when refunds share a created_at (ties broken by id).
import { assert, layer } from "@effect/vitest"
import { generateRefundId } from "@pay/domain"
import { FeeSchedules } from "@pay/settlement"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { type Answer, authorizedPayment, codeOf, describeAnswer, get, jsonOf, newKey, post, settle, type TestMerchant } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const layerOptions = { excludeTestServices: true, timeout: "120 seconds" } as const

/** A merchant without fees and one of its payments, settled for `amount_minor` EUR. */
const settledPayment = (merchant: TestMerchant, amount_minor: bigint) =>
  Effect.gen(function* () {
    const id = yield* authorizedPayment(merchant, amount_minor, "EUR")
    const settled = yield* settle(merchant, id, newKey("settle"))
    assert.strictEqual(settled.status, 200, describeAnswer(settled))
    return id
  })

const feelessMerchant = (name: string) =>
  Effect.gen(function* () {
    const merchant = yield* createMerchant(name)
    yield* (yield* FeeSchedules).set(merchant.merchantId, "EUR", { fee_bps: 0, fee_fixed_minor: 0n })
    return merchant
  })

const refundOver = (m: TestMerchant, paymentId: string, amount: number) =>
  Effect.gen(function* () {
    const answer = yield* post(m, `/v1/payments/${paymentId}/refunds`, newKey("refund"), { json: { amount } })
    assert.strictEqual(answer.status, 201, describeAnswer(answer))
    return String(jsonOf(answer)["id"])
  })

/**
 * `count` refunds of 1 written by SQL in one transaction, so all share one created_at (the
 * transaction's now(), with its microseconds), each with the outbox event the database requires
 * (0060). Their ids are random: id order is not insertion order.
 */
const refundsInOneInstant = (m: TestMerchant, paymentId: string, count: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const ids = yield* Effect.forEach(Array.from({ length: count }), () => generateRefundId)
    yield* sql.withTransaction(Effect.forEach(ids, (id) =>
      Effect.andThen(
        sql`INSERT INTO refunds (id, payment_id, merchant_id, amount_minor, currency, status, created_at, updated_at)
            VALUES (${id}, ${paymentId}, ${m.merchantId}, 1, 'EUR', 'PENDING', now(), now())`,
        sql`INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
            VALUES (gen_random_uuid(), 'payment', ${paymentId}, 'refund_created', jsonb_build_object('refund_id', ${id}::text, 'version', 1))`
      ), { discard: true }))
    return ids
  })

const listData = (answer: Answer): ReadonlyArray<string> => {
  const data = jsonOf(answer)["data"]
  assert.isTrue(Array.isArray(data), describeAnswer(answer))
  return Array.isArray(data)
    ? data.map((refund: unknown) => (typeof refund === "object" && refund !== null && "id" in refund ? String(refund.id) : "not a refund"))
    : []
}

/** Every page of the list, `limit` at a time (undefined: the default), following has_more. */
const walk = (m: TestMerchant, paymentId: string, limit: number | undefined) =>
  Effect.gen(function* () {
    const seen: Array<string> = []
    const pageSizes: Array<number> = []
    for (let page = 0; page < 200; page++) {
      const params = [
        ...(limit === undefined ? [] : [`limit=${limit}`]),
        ...(seen.length === 0 ? [] : [`starting_after=${seen[seen.length - 1]}`])
      ]
      const answer = yield* get(m, `/v1/payments/${paymentId}/refunds${params.length === 0 ? "" : `?${params.join("&")}`}`)
      assert.strictEqual(answer.status, 200, describeAnswer(answer))
      const ids = listData(answer)
      seen.push(...ids)
      pageSizes.push(ids.length)
      if (jsonOf(answer)["has_more"] !== true) return { seen, pageSizes }
    }
    return assert.fail("more than 200 pages")
  })

const expectRefused = (m: TestMerchant, path: string, expected: readonly [number, string, string | undefined]) =>
  Effect.gen(function* () {
    const answer = yield* get(m, path)
    assert.deepStrictEqual([answer.status, codeOf(answer), jsonOf(answer)["field"]], [...expected], `${path}: ${describeAnswer(answer)}`)
  })

layer(inProcessAppLayer(), layerOptions)("refund list paging (in-process app over HTTP)", (it) => {
  it.effect("107 refunds, 104 of them in one instant: every limit walks them all, oldest first, no gap, no duplicate; no limit is 100 a page", () =>
    Effect.gen(function* () {
      const merchant = yield* feelessMerchant("Refund pages")
      const id = yield* settledPayment(merchant, 10_000n)
      const first = [yield* refundOver(merchant, id, 100), yield* refundOver(merchant, id, 100)]
      const sameInstant = yield* refundsInOneInstant(merchant, id, 104)
      const last = yield* refundOver(merchant, id, 100)
      // Oldest first; inside the instant, by id (the tie-break that keeps pages apart).
      const expected = [...first, ...[...sameInstant].sort(), last]
      for (const limit of [1, 7, 52, 100]) {
        const { seen, pageSizes } = yield* walk(merchant, id, limit)
        assert.deepStrictEqual(seen, expected, `limit=${limit}`)
        assert.isTrue(pageSizes.slice(0, -1).every((size) => size === limit), `limit=${limit}: full pages before the last`)
      }
      const unlimited = yield* walk(merchant, id, undefined)
      assert.deepStrictEqual(unlimited.pageSizes, [100, 7], "without limit: 100 a page, as the list answered before paging")
      assert.deepStrictEqual(unlimited.seen, expected)
      const lastPage = yield* get(merchant, `/v1/payments/${id}/refunds?starting_after=${last}`)
      assert.deepStrictEqual([lastPage.status, listData(lastPage), jsonOf(lastPage)["has_more"]], [200, [], false], "after the newest: an empty last page")
    }))

  it.effect("limit is 1-100 in decimal digits; starting_after must be a refund of THIS payment: malformed, unknown, another payment's, another merchant's, a payment id are 400 invalid_cursor", () =>
    Effect.gen(function* () {
      const merchant = yield* feelessMerchant("Refund cursors")
      const other = yield* feelessMerchant("Refund cursors, other merchant")
      const id = yield* settledPayment(merchant, 5_000n)
      const sibling = yield* settledPayment(merchant, 5_000n)
      const foreign = yield* settledPayment(other, 5_000n)
      const ours = yield* refundOver(merchant, id, 100)
      const siblingRefund = yield* refundOver(merchant, sibling, 100)
      const foreignRefund = yield* refundOver(other, foreign, 100)
      const base = `/v1/payments/${id}/refunds`
      for (const limit of ["0", "101", "-1", "", "0x5", "1e1", "%2B5", "%205", "5.0", "1000000"]) {
        yield* expectRefused(merchant, `${base}?limit=${limit}`, [400, "invalid_request", "limit"])
      }
      const unknownRefund = yield* generateRefundId
      for (const cursor of ["garbage", "re_", unknownRefund, siblingRefund, foreignRefund, id, `${ours}x`, ours.toUpperCase()]) {
        yield* expectRefused(merchant, `${base}?starting_after=${encodeURIComponent(cursor)}`, [400, "invalid_cursor", "starting_after"])
      }
      // The payment is checked before the cursor: another merchant's payment stays a 404 (no oracle).
      yield* expectRefused(merchant, `/v1/payments/${foreign}/refunds?starting_after=${foreignRefund}`, [404, "payment_not_found", undefined])
      yield* expectRefused(other, `${base}?starting_after=${ours}`, [404, "payment_not_found", undefined])
      yield* expectRefused(merchant, `${base}?cursor=${ours}`, [400, "invalid_request", "cursor"])
      const fine = yield* get(merchant, `${base}?limit=100&starting_after=${ours}`)
      assert.deepStrictEqual([fine.status, listData(fine), jsonOf(fine)["has_more"]], [200, [], false], describeAnswer(fine))
      const one = yield* get(merchant, `${base}?limit=1`)
      assert.deepStrictEqual([one.status, listData(one), jsonOf(one)["has_more"]], [200, [ours], false], describeAnswer(one))
    }))
})
