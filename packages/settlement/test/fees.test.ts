// The fee rule (Fees.computeFee): worked examples, the rounding boundary, the bounds, and
// properties checked against the rule written out a second way (support/Books.ts expectedFee).
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { computeFee, type FeeSchedule } from "../src/Fees.ts"
import { expectedFee } from "./support/Books.ts"

const AMOUNT_MINOR_MAX = 99_999_999_999n
const terms = (fee_bps: number, fee_fixed_minor: bigint): FeeSchedule => ({ fee_bps, fee_fixed_minor })

describe("computeFee: examples", () => {
  it("10.50 USD at 2.90 % + 0.30: 30.45 rounds to 0.30, fee 0.60, net 9.90", () => {
    assert.deepStrictEqual(computeFee(1_050n, terms(290, 30n)), { gross_minor: 1_050n, fee_minor: 60n, net_minor: 990n })
  })

  it("JPY (no minor unit): ¥1,234 at 3.60 % is ¥44 (44.424), net ¥1,190; ¥125 at 3.60 % is 4.5, rounded half up to ¥5", () => {
    assert.deepStrictEqual(computeFee(1_234n, terms(360, 0n)), { gross_minor: 1_234n, fee_minor: 44n, net_minor: 1_190n })
    assert.deepStrictEqual(computeFee(125n, terms(360, 0n)), { gross_minor: 125n, fee_minor: 5n, net_minor: 120n })
  })

  it("KWD (three decimals): 12.345 KWD at 2.50 % + 0.100 is 308.625 → 309 + 100 = 0.409, net 11.936", () => {
    assert.deepStrictEqual(computeFee(12_345n, terms(250, 100n)), { gross_minor: 12_345n, fee_minor: 409n, net_minor: 11_936n })
  })

  it("the half-up boundary: .4999 rounds down, .5 rounds up, in minor units", () => {
    // 49 × 100 bps = 0.49 → 0 ; 50 × 100 bps = 0.50 → 1 ; 149 × 100 bps = 1.49 → 1 ; 150 → 2
    assert.strictEqual(computeFee(49n, terms(100, 0n)).fee_minor, 0n)
    assert.strictEqual(computeFee(50n, terms(100, 0n)).fee_minor, 1n)
    assert.strictEqual(computeFee(149n, terms(100, 0n)).fee_minor, 1n)
    assert.strictEqual(computeFee(150n, terms(100, 0n)).fee_minor, 2n)
    // 1 bp of 4 999 minor units is 0.4999 → 0; of 5 000 it is 0.5 → 1
    assert.strictEqual(computeFee(4_999n, terms(1, 0n)).fee_minor, 0n)
    assert.strictEqual(computeFee(5_000n, terms(1, 0n)).fee_minor, 1n)
  })

  it("the fee is capped at the gross: 0.20 USD at 2.90 % + 0.30 is all fee, net 0", () => {
    assert.deepStrictEqual(computeFee(20n, terms(290, 30n)), { gross_minor: 20n, fee_minor: 20n, net_minor: 0n })
    assert.deepStrictEqual(computeFee(1n, terms(0, 1n)), { gross_minor: 1n, fee_minor: 1n, net_minor: 0n })
  })

  it("zero fee: 0 bps + 0 leaves the whole amount to the merchant", () => {
    assert.deepStrictEqual(computeFee(1n, terms(0, 0n)), { gross_minor: 1n, fee_minor: 0n, net_minor: 1n })
    assert.deepStrictEqual(computeFee(AMOUNT_MINOR_MAX, terms(0, 0n)), { gross_minor: AMOUNT_MINOR_MAX, fee_minor: 0n, net_minor: AMOUNT_MINOR_MAX })
  })

  it("the largest amount: 99 999 999 999 at 10 000 bps is all fee, exactly; at 9 999 bps + 0 it is 99 989 999 999 (99 989 999 999.0001)", () => {
    assert.deepStrictEqual(computeFee(AMOUNT_MINOR_MAX, terms(10_000, 0n)), { gross_minor: AMOUNT_MINOR_MAX, fee_minor: AMOUNT_MINOR_MAX, net_minor: 0n })
    assert.deepStrictEqual(computeFee(AMOUNT_MINOR_MAX, terms(10_000, 99_999_999_999n)).net_minor, 0n)
    assert.deepStrictEqual(computeFee(AMOUNT_MINOR_MAX, terms(9_999, 0n)), {
      gross_minor: AMOUNT_MINOR_MAX,
      fee_minor: 99_989_999_999n,
      net_minor: 10_000_000n
    })
    // 2.90 % + 0.30 of the maximum: 2 899 999 999.971 → 2 900 000 000 + 30
    assert.strictEqual(computeFee(AMOUNT_MINOR_MAX, terms(290, 30n)).fee_minor, 2_900_000_030n)
  })

  it("refuses what has no meaning: a non-positive gross, bps outside 0..10 000 or not an integer, a negative fixed fee", () => {
    assert.throws(() => computeFee(0n, terms(290, 30n)), RangeError)
    assert.throws(() => computeFee(-1n, terms(290, 30n)), RangeError)
    assert.throws(() => computeFee(100n, terms(-1, 0n)), RangeError)
    assert.throws(() => computeFee(100n, terms(10_001, 0n)), RangeError)
    assert.throws(() => computeFee(100n, terms(2.5, 0n)), RangeError)
    assert.throws(() => computeFee(100n, terms(Number.NaN, 0n)), RangeError)
    assert.throws(() => computeFee(100n, terms(0, -1n)), RangeError)
  })
})

const gross = fc.oneof(
  fc.bigInt({ min: 1n, max: 10_000n }),
  fc.bigInt({ min: 1n, max: AMOUNT_MINOR_MAX }),
  fc.constant(AMOUNT_MINOR_MAX)
)
const bps = fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.constantFrom(0, 1, 290, 9_999, 10_000))
const fixed = fc.oneof(fc.bigInt({ min: 0n, max: 1_000n }), fc.bigInt({ min: 0n, max: AMOUNT_MINOR_MAX }))
const schedule = fc.record({ fee_bps: bps, fee_fixed_minor: fixed })
const runs = { numRuns: 2_000 }

describe("computeFee: properties", () => {
  it("fee + net = gross and 0 ≤ fee ≤ gross (so 0 ≤ net ≤ gross)", () => {
    fc.assert(fc.property(gross, schedule, (g, s) => {
      const split = computeFee(g, s)
      return split.gross_minor === g && split.fee_minor + split.net_minor === g && split.fee_minor >= 0n && split.fee_minor <= g
    }), runs)
  })

  it("equals the rule written another way: ⌊gross × bps / 10 000⌉ (half up) + fixed, capped at gross", () => {
    fc.assert(fc.property(gross, schedule, (g, s) => computeFee(g, s).fee_minor === expectedFee(g, s)), runs)
  })

  it("the percentage part is within half a minor unit of the exact value, and a tie rounds up", () => {
    fc.assert(fc.property(gross, bps, (g, b) => {
      const percentage = computeFee(g, terms(b, 0n)).fee_minor
      // 10 000 × percentage − gross × bps is the rounding error in units of 1/10 000 minor unit
      const error = percentage * 10_000n - g * BigInt(b)
      return error > -5_000n && error <= 5_000n
    }), runs)
  })

  it("monotone: more bps, a larger fixed part, or a larger gross never lowers the fee", () => {
    fc.assert(fc.property(gross, bps, bps, fixed, (g, b1, b2, f) => {
      const [low, high] = b1 <= b2 ? [b1, b2] : [b2, b1]
      return computeFee(g, terms(low, f)).fee_minor <= computeFee(g, terms(high, f)).fee_minor
    }), runs)
    fc.assert(fc.property(gross, bps, fixed, fixed, (g, b, f1, f2) => {
      const [low, high] = f1 <= f2 ? [f1, f2] : [f2, f1]
      return computeFee(g, terms(b, low)).fee_minor <= computeFee(g, terms(b, high)).fee_minor
    }), runs)
    fc.assert(fc.property(gross, gross, schedule, (g1, g2, s) => {
      const [low, high] = g1 <= g2 ? [g1, g2] : [g2, g1]
      return computeFee(low, s).fee_minor <= computeFee(high, s).fee_minor
    }), runs)
  })
})
