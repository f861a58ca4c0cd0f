// TEST_LATENCY_FACTOR: one factor for every absolute latency bound (packages/testkit/src/Latency.ts).
import { assert, describe, it } from "@effect/vitest"
import { parseLatencyFactor } from "../src/Latency.ts"

describe("TEST_LATENCY_FACTOR", () => {
  it("unset or empty is 1; a number from 1 to 20 is taken as is; anything else is refused, naming the variable", () => {
    assert.strictEqual(parseLatencyFactor(undefined), 1)
    assert.strictEqual(parseLatencyFactor(""), 1)
    assert.strictEqual(parseLatencyFactor("2.5"), 2.5)
    assert.strictEqual(parseLatencyFactor("20"), 20)
    for (const bad of ["0.5", "21", "fast", "NaN", "Infinity"]) {
      assert.throws(() => parseLatencyFactor(bad), /TEST_LATENCY_FACTOR must be a number between 1 and 20/)
    }
  })
})
