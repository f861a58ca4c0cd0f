// The fee returned on a refund (issue 19, docs/refunds.md): cumulative and rounded down. For any
// split of a capture into refunds the shares sum to floor(fee × refunded / captured), never more
// than the proportional fee, and exactly the whole fee once the whole capture is refunded. Integer
// minor units: the same for every exponent (JPY 0, KWD 3). Properties with fast-check.
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { proportionalFeeReturned } from "../src/RefundFees.ts"

/** A capture, a fee ≤ it, and a split of part or all of it into refunds. */
const splitArbitrary = fc
  .record({ captured: fc.bigInt({ min: 1n, max: 99_999_999_999n }), feeRatio: fc.double({ min: 0, max: 1, noNaN: true }), cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 12 }), whole: fc.boolean() })
  .map(({ captured, feeRatio, cuts, whole }) => {
    const fee = BigInt(Math.floor(Number(captured) * feeRatio))
    const points = [...new Set(cuts.map((cut) => BigInt(Math.floor(Number(captured) * cut))))].filter((point) => point > 0n && point < captured).sort((a, b) => (a < b ? -1 : 1))
    const end = whole ? captured : (points.at(-1) ?? captured)
    const bounds = [0n, ...points.filter((point) => point < end), end]
    const amounts = bounds.slice(1).map((bound, index) => bound - (bounds[index] ?? 0n)).filter((amount) => amount > 0n)
    return { captured, fee, amounts }
  })

describe("proportionalFeeReturned", () => {
  it("the shares of any split sum to floor(fee × refunded / captured); the whole capture returns the whole fee", () => {
    fc.assert(fc.property(splitArbitrary, ({ captured, fee, amounts }) => {
    let before = 0n
    let returned = 0n
    for (const amount of amounts) {
      const share = proportionalFeeReturned({ fee_minor: fee, captured_minor: captured, refunded_before_minor: before, amount_minor: amount })
      assert.isTrue(share >= 0n && share <= amount, "a share is between 0 and the refund")
      before += amount
      returned += share
      assert.strictEqual(returned, (fee * before) / captured, "cumulative: never above the proportional fee")
    }
    if (before === captured) assert.strictEqual(returned, fee, "fully refunded: the whole fee")
    }), { numRuns: 500 })
  })

  it("JPY (exponent 0): 1,000 yen at 3.6 % (fee 36) refunded 333 + 333 + 334 returns 11 + 12 + 13 = 36", () => {
    const shares = [333n, 333n, 334n].reduce<{ before: bigint; shares: Array<bigint> }>((state, amount) => ({
      before: state.before + amount,
      shares: [...state.shares, proportionalFeeReturned({ fee_minor: 36n, captured_minor: 1_000n, refunded_before_minor: state.before, amount_minor: amount })]
    }), { before: 0n, shares: [] }).shares
    assert.deepStrictEqual(shares, [11n, 12n, 13n])
  })

  it("KWD (exponent 3): 12.345 KWD (12,345 fils) with a fee of 658 fils: 6,172 fils refunded return 328, the other 6,173 return 330 (= 658)", () => {
    assert.strictEqual(proportionalFeeReturned({ fee_minor: 658n, captured_minor: 12_345n, refunded_before_minor: 0n, amount_minor: 6_172n }), 328n)
    assert.strictEqual(proportionalFeeReturned({ fee_minor: 658n, captured_minor: 12_345n, refunded_before_minor: 6_172n, amount_minor: 6_173n }), 330n)
  })

  it("capped at what is left of the fee: fee 35 on 1,000, a pending 1 (share 0) and 999 (share 35), the 1 failed, a new 1 returns 0, not 1 (36 in all)", () => {
    const pending = proportionalFeeReturned({ fee_minor: 35n, captured_minor: 1_000n, refunded_before_minor: 0n, amount_minor: 1n })
    const big = proportionalFeeReturned({ fee_minor: 35n, captured_minor: 1_000n, refunded_before_minor: 1n, returned_before_minor: pending, amount_minor: 999n })
    assert.deepStrictEqual([pending, big], [0n, 35n])
    // The pending 1 FAILED: it counts neither in the refunded nor in the returned sums.
    const last = proportionalFeeReturned({ fee_minor: 35n, captured_minor: 1_000n, refunded_before_minor: 999n, returned_before_minor: big, amount_minor: 1n })
    assert.strictEqual(last, 0n, "the fee (35) is returned once, not 36")
    assert.strictEqual(proportionalFeeReturned({ fee_minor: 35n, captured_minor: 1_000n, refunded_before_minor: 999n, amount_minor: 1n }), 1n, "the uncapped rule")
  })

  it("refuses what cannot be: more than captured, a zero refund", () => {
    assert.throws(() => proportionalFeeReturned({ fee_minor: 1n, captured_minor: 10n, refunded_before_minor: 5n, amount_minor: 6n }), RangeError)
    assert.throws(() => proportionalFeeReturned({ fee_minor: 1n, captured_minor: 10n, refunded_before_minor: 0n, amount_minor: 0n }), RangeError)
  })
})
