// The completer's wait after a failed attempt (Parking.ts completerBackoff_ms): exponential with
// "equal jitter", capped, checked against the rule written out by hand.
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { completerBackoff_ms, type CompleterRetryPolicy, defaultCompleterRetryPolicy } from "../src/Parking.ts"

const policy = fc.record({
  attemptsMax: fc.integer({ min: 1, max: 100 }),
  backoffBase_ms: fc.integer({ min: 10, max: 3_600_000 }),
  backoffMax_ms: fc.integer({ min: 10, max: 86_400_000 })
})

describe("completerBackoff_ms", () => {
  it("defaults: 5 s base doubling to a 10 min cap; each wait between half the cap and the cap", () => {
    const caps = [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 600_000, 600_000]
    caps.forEach((cap, index) => {
      assert.strictEqual(completerBackoff_ms(index + 1, defaultCompleterRetryPolicy, 0), cap - Math.floor(cap / 2))
      assert.strictEqual(completerBackoff_ms(index + 1, defaultCompleterRetryPolicy, 0.999_999_999), cap)
    })
  })

  it("property: cap/2 ≤ wait ≤ cap where cap = min(max, base·2^(attempt−1)), and more random never waits less", () => {
    fc.assert(fc.property(policy, fc.integer({ min: 1, max: 200 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (p: CompleterRetryPolicy, attempt, a, b) => {
      let cap = p.backoffBase_ms
      for (let i = 1; i < attempt && cap < p.backoffMax_ms; i++) cap *= 2
      cap = Math.min(cap, p.backoffMax_ms)
      const wait = completerBackoff_ms(attempt, p, a)
      assert.isTrue(wait * 2 >= cap && wait <= cap, `${wait} for cap ${cap}`)
      assert.isTrue(Number.isInteger(wait))
      const [low, high] = a <= b ? [a, b] : [b, a]
      assert.isTrue(completerBackoff_ms(attempt, p, low) <= completerBackoff_ms(attempt, p, high))
    }), { numRuns: 2_000 })
  })

  it("refuses an attempt below 1 and a random outside [0, 1)", () => {
    assert.throws(() => completerBackoff_ms(0, defaultCompleterRetryPolicy, 0.5), RangeError)
    assert.throws(() => completerBackoff_ms(1.5, defaultCompleterRetryPolicy, 0.5), RangeError)
    assert.throws(() => completerBackoff_ms(1, defaultCompleterRetryPolicy, 1), RangeError)
    assert.throws(() => completerBackoff_ms(1, defaultCompleterRetryPolicy, Number.NaN), RangeError)
  })
})
