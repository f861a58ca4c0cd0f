import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { runScenario, scenarios } from "@pay/scenarios"

/**
 * The fast scenarios, through the same code as `pnpm scenario <name>` (runScenario): each starts
 * the real API on a database of its own, breaks something on purpose and must end with
 * `VERDICT: PASS`. A failure shows the scenario's whole transcript. `it.live`: the scenarios wait
 * on real processes, so the clock must be the real one.
 */
const fast = scenarios.filter((scenario) => scenario.fast)

describe("failure scenarios (pnpm scenario)", () => {
  it("the suite runs at least the phase scenarios and two fault scenarios", () => {
    assert.isAtLeast(fast.length, 6)
  })

  for (const scenario of fast) {
    it.live(`${scenario.name} ends with VERDICT: PASS`, () =>
      Effect.gen(function* () {
        const transcript: Array<string> = []
        const verdict = yield* runScenario(scenario, (line) => transcript.push(line))
        assert.strictEqual(verdict.line, `VERDICT: PASS ${scenario.name}`, transcript.join("\n"))
        // The transcript shows the evidence, not just the verdict.
        assert.isTrue(transcript.some((line) => line.includes("ledger_verify()")), "the closing audit was printed")
      }), 60_000)
  }
})
