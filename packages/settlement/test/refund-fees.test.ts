// A refund's share of the fee (issue 19, docs/refunds.md): cumulative and rounded down. For any
// split of a capture into refunds the shares sum to floor(fee × refunded / captured), never more
// than the proportional fee, and exactly the whole fee once the whole capture is refunded, also
// when refunds reserved on the way FAILED. Integer minor units: the same for every exponent
// (JPY 0, KWD 3). Properties with fast-check.
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { proportionalFeeShare } from "../src/RefundFees.ts"

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

describe("proportionalFeeShare", () => {
  it("the shares of any split sum to floor(fee × refunded / captured); the whole capture returns the whole fee", () => {
    fc.assert(fc.property(splitArbitrary, ({ captured, fee, amounts }) => {
    let before = 0n
    let returned = 0n
    for (const amount of amounts) {
      const share = proportionalFeeShare({ fee_minor: fee, captured_minor: captured, refunded_before_minor: before, shares_before_minor: returned, amount_minor: amount })
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
      shares: [...state.shares, proportionalFeeShare({ fee_minor: 36n, captured_minor: 1_000n, refunded_before_minor: state.before, shares_before_minor: state.shares.reduce((sum, share) => sum + share, 0n), amount_minor: amount })]
    }), { before: 0n, shares: [] }).shares
    assert.deepStrictEqual(shares, [11n, 12n, 13n])
  })

  it("KWD (exponent 3): 12.345 KWD (12,345 fils) with a fee of 658 fils: 6,172 fils refunded return 328, the other 6,173 return 330 (= 658)", () => {
    assert.strictEqual(proportionalFeeShare({ fee_minor: 658n, captured_minor: 12_345n, refunded_before_minor: 0n, shares_before_minor: 0n, amount_minor: 6_172n }), 328n)
    assert.strictEqual(proportionalFeeShare({ fee_minor: 658n, captured_minor: 12_345n, refunded_before_minor: 6_172n, shares_before_minor: 328n, amount_minor: 6_173n }), 330n)
  })

  it("a PENDING refund that FAILED: fee 35 on 1,000, a pending 1 (share 0) and 999 (share 35), the 1 failed, a new 1 takes 0, not 1 (36 in all)", () => {
    const share = (refunded_before_minor: bigint, shares_before_minor: bigint, amount_minor: bigint) =>
      proportionalFeeShare({ fee_minor: 35n, captured_minor: 1_000n, refunded_before_minor, shares_before_minor, amount_minor })
    const pending = share(0n, 0n, 1n)
    const big = share(1n, pending, 999n)
    assert.deepStrictEqual([pending, big], [0n, 35n])
    // The pending 1 FAILED: it counts neither in the refunded nor in the shares' sums.
    assert.strictEqual(share(999n, big, 1n), 0n, "the fee (35) is taken once, not 36")
  })

  it("a PENDING refund that FAILED, the other way: fee 35 on 1,000, refunds 20, 9 (share 1, then FAILED), 20, then the last 960 takes 35 in all, not 34", () => {
    const share = (refunded_before_minor: bigint, shares_before_minor: bigint, amount_minor: bigint) =>
      proportionalFeeShare({ fee_minor: 35n, captured_minor: 1_000n, refunded_before_minor, shares_before_minor, amount_minor })
    const first = share(0n, 0n, 20n)
    const pending = share(20n, first, 9n)
    const third = share(29n, first + pending, 20n)
    assert.deepStrictEqual([first, pending, third], [0n, 1n, 0n])
    // The 9 FAILED: left are 20 + 20 refunded with shares 0 + 0; the remaining 960 takes the rest.
    const last = share(40n, first + third, 960n)
    assert.strictEqual(first + third + last, 35n, "the whole fee once the whole capture is refunded")
  })

  it("any sequence with refunds that FAIL: the shares of those not FAILED never exceed the fee, and refunding the rest of the capture brings them to exactly the fee", () => {
    const sequence = fc.record({
      captured: fc.bigInt({ min: 1n, max: 9_999_999n }),
      feeRatio: fc.double({ min: 0, max: 1, noNaN: true }),
      steps: fc.array(fc.record({ cut: fc.double({ min: 0, max: 1, noNaN: true }), fails: fc.boolean() }), { minLength: 1, maxLength: 12 })
    })
    fc.assert(fc.property(sequence, ({ captured, feeRatio, steps }) => {
      const fee = BigInt(Math.floor(Number(captured) * feeRatio))
      let refunded = 0n
      let shares = 0n
      for (const step of steps) {
        const amount = BigInt(Math.floor(Number(captured - refunded) * step.cut))
        if (amount <= 0n) continue
        const share = proportionalFeeShare({ fee_minor: fee, captured_minor: captured, refunded_before_minor: refunded, shares_before_minor: shares, amount_minor: amount })
        assert.isTrue(share >= 0n && share <= amount, "a share is between 0 and the refund")
        assert.isTrue(shares + share <= fee, "never more than the fee")
        if (!step.fails) {
          refunded += amount
          shares += share
        }
      }
      if (refunded < captured) {
        shares += proportionalFeeShare({ fee_minor: fee, captured_minor: captured, refunded_before_minor: refunded, shares_before_minor: shares, amount_minor: captured - refunded })
      }
      assert.strictEqual(shares, fee, "the whole capture refunded: the whole fee")
    }), { numRuns: 1_000 })
  })

  it("refuses what cannot be: more than captured, a zero refund", () => {
    assert.throws(() => proportionalFeeShare({ fee_minor: 1n, captured_minor: 10n, refunded_before_minor: 5n, shares_before_minor: 0n, amount_minor: 6n }), RangeError)
    assert.throws(() => proportionalFeeShare({ fee_minor: 1n, captured_minor: 10n, refunded_before_minor: 0n, shares_before_minor: 0n, amount_minor: 0n }), RangeError)
  })
})
