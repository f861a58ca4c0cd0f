import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { findScenario, runScenario } from "@pay/scenarios"

/**
 * The fast scenarios, through the same code as `pnpm scenario <name>` (runScenario): each starts
 * the real API on a database of its own, breaks something on purpose and must end with
 * `VERDICT: PASS`. A failure shows the scenario's whole transcript.
 */
const fastScenarios = ["double-settle-storm", "raw-sql-ledger-break", "invalid-transition", "concurrent-duplicate-request"]

describe("failure scenarios (pnpm scenario)", () => {
  for (const name of fastScenarios) {
    it.live(`${name} ends with VERDICT: PASS`, () =>
      Effect.gen(function* () {
        const scenario = findScenario(name)
        assert.isDefined(scenario, `scenario ${name} is registered`)
        if (scenario === undefined) return
        const transcript: Array<string> = []
        const verdict = yield* runScenario(scenario, (line) => transcript.push(line))
        assert.strictEqual(verdict.line, `VERDICT: PASS ${name}`, transcript.join("\n"))
        // The transcript shows the evidence, not just the verdict.
        assert.isTrue(transcript.some((line) => line.includes("ledger_verify()")), "the closing audit was printed")
      }), 60_000)
  }
})
