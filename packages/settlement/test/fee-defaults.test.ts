// Issue 11: the default fixed fee of 30 minor units applied to every currency (30 đồng of VND, 30
// fils of KWD). The default is now the same fraction of the major unit in every currency, scaled
// by the currency's exponent and rounded half up (or none when it rounds to 0): examples, the
// rule checked against its second writing (support/Books.ts scaledFixedFee, by decimal strings),
// and the service and the posting on a real database for VND, JPY and KWD.
import { assert, describe, it, layer } from "@effect/vitest"
import { currencyCodes, generateMerchantId, minorUnitExponent } from "@pay/domain"
import { makeTestDatabase } from "@pay/testkit"
import { Cause, Effect, Layer } from "effect"
import fc from "fast-check"
import { computeFee, defaultScheduleForExponent, scaleFixedFeeToExponent } from "../src/Fees.ts"
import { FeeSchedules } from "../src/FeeSchedules.ts"
import { defaultTerms, defaultTermsIn, expectedFee, scaledFixedFee } from "./support/Books.ts"

const FIXED_MAX = 99_999_999_999n
const runs = { numRuns: 3_000 }

describe("the default fixed fee per currency: examples", () => {
  it("30 (0.30 of a two-decimal unit): USD 30, KWD 300 fils, JPY and VND none", () => {
    assert.strictEqual(scaleFixedFeeToExponent(30n, minorUnitExponent("USD")), 30n)
    assert.strictEqual(scaleFixedFeeToExponent(30n, minorUnitExponent("KWD")), 300n)
    assert.strictEqual(scaleFixedFeeToExponent(30n, minorUnitExponent("JPY")), 0n)
    assert.strictEqual(scaleFixedFeeToExponent(30n, minorUnitExponent("VND")), 0n)
  })

  it("the half-up boundary at exponent 0: 0.49 → 0, 0.50 → 1, 1.49 → 1, 1.50 → 2; at exponent 3 nothing is rounded", () => {
    assert.deepStrictEqual([49n, 50n, 149n, 150n, 0n].map((f) => scaleFixedFeeToExponent(f, 0)), [0n, 1n, 1n, 2n, 0n])
    assert.strictEqual(scaleFixedFeeToExponent(FIXED_MAX, 3), 999_999_999_990n)
    assert.strictEqual(scaleFixedFeeToExponent(FIXED_MAX, 0), 1_000_000_000n)
  })

  it("refuses a negative fee or an exponent outside 0..4", () => {
    assert.throws(() => scaleFixedFeeToExponent(-1n, 2), RangeError)
    assert.throws(() => scaleFixedFeeToExponent(30n, -1), RangeError)
    assert.throws(() => scaleFixedFeeToExponent(30n, 1.5), RangeError)
    assert.throws(() => scaleFixedFeeToExponent(30n, 5), RangeError)
  })
})

const fixed = fc.oneof(fc.bigInt({ min: 0n, max: 1_000n }), fc.bigInt({ min: 0n, max: FIXED_MAX }))
const currency = fc.constantFrom(...currencyCodes)

describe("the default fixed fee per currency: properties", () => {
  it("equals the rule written a second way (decimal string, point moved, first dropped digit decides) for every supported currency", () => {
    fc.assert(fc.property(fixed, currency, (fixed_minor, code) => {
      const exponent = minorUnitExponent(code)
      assert.strictEqual(scaleFixedFeeToExponent(fixed_minor, exponent), scaledFixedFee(fixed_minor, exponent), `${fixed_minor} in ${code}`)
    }), runs)
  })

  it("is the nearest whole minor unit to the same major amount (ties up): |scaled·100 − fixed·10^e|·2 ≤ 100, and < 100 unless rounding up", () => {
    fc.assert(fc.property(fixed, fc.constantFrom(0, 2, 3), (fixed_minor, exponent) => {
      const scaled = scaleFixedFeeToExponent(fixed_minor, exponent)
      const distance = scaled * 100n - fixed_minor * 10n ** BigInt(exponent)
      // In hundredths of a minor unit of the target currency, times 100 (exact integers).
      assert.isTrue(distance * 2n <= 100n && distance * 2n > -100n, `${fixed_minor} at exponent ${exponent} → ${scaled}`)
    }), runs)
  })

  it("a two-decimal currency keeps the configured number; monotonic in the configured fee for every exponent", () => {
    fc.assert(fc.property(fixed, fixed, fc.constantFrom(0, 2, 3), (a, b, exponent) => {
      assert.strictEqual(scaleFixedFeeToExponent(a, 2), a)
      const [low, high] = a <= b ? [a, b] : [b, a]
      assert.isTrue(scaleFixedFeeToExponent(low, exponent) <= scaleFixedFeeToExponent(high, exponent))
    }), runs)
  })

  it("the default schedule keeps the bps and scales only the fixed part; the fee it gives equals the second writing's", () => {
    fc.assert(fc.property(fc.bigInt({ min: 1n, max: 99_999_999_999n }), fc.integer({ min: 0, max: 10_000 }), fixed, currency, (gross, bps, fixed_minor, code) => {
      const exponent = minorUnitExponent(code)
      const schedule = defaultScheduleForExponent({ fee_bps: bps, fee_fixed_minor: fixed_minor }, exponent)
      assert.strictEqual(schedule.fee_bps, bps)
      const terms = defaultTermsIn(exponent, { fee_bps: bps, fee_fixed_minor: fixed_minor })
      assert.strictEqual(computeFee(gross, schedule).fee_minor, expectedFee(gross, terms))
    }), runs)
  })
})

const Live = FeeSchedules.layerWith({ fee_bps: defaultTerms.fee_bps, fee_fixed_minor: defaultTerms.fee_fixed_minor }).pipe(
  Layer.provideMerge(makeTestDatabase({ maxConnections: 2 }))
)

layer(Live, { excludeTestServices: true })("default fees on a real database (VND, JPY, KWD, USD)", (it) => {
  it.effect("a merchant without a schedule gets the default scaled to the currency (the posting through the API: server/test/fee-defaults-api.test.ts)", () =>
    Effect.gen(function* () {
      const fees = yield* FeeSchedules
      const merchant = yield* generateMerchantId
      assert.deepStrictEqual(yield* fees.get(merchant, "USD"), { fee_bps: 290, fee_fixed_minor: 30n })
      assert.deepStrictEqual(yield* fees.get(merchant, "KWD"), { fee_bps: 290, fee_fixed_minor: 300n })
      assert.deepStrictEqual(yield* fees.get(merchant, "JPY"), { fee_bps: 290, fee_fixed_minor: 0n })
      assert.deepStrictEqual(yield* fees.get(merchant, "VND"), { fee_bps: 290, fee_fixed_minor: 0n })
    }))

  it.effect("a currency the platform does not support has no default: a defect, not a guess", () =>
    Effect.gen(function* () {
      const fees = yield* FeeSchedules
      const exit = yield* Effect.exit(fees.get(yield* generateMerchantId, "XYZ"))
      assert.isTrue(exit._tag === "Failure" && Cause.hasDies(exit.cause))
    }))
})
