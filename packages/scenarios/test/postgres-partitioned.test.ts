import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { runScenario, scenarios } from "@pay/scenarios"

/**
 * `pnpm scenario postgres-partitioned` in the suite (as scenarios.test.ts runs the other fast
 * scenarios): a network partition between the API and Postgres must end every request with a 503
 * within the answer and connect timeouts, and the same keys must finish once after the heal.
 * Without the database answer timeout (packages/infra/src/PostgresAnswerWatch.ts) a create waits
 * for as long as the partition lasts. In a file of its own: it waits out its timeouts (~25 s).
 */
describe("failure scenario postgres-partitioned (pnpm scenario)", () => {
  it.live("postgres-partitioned ends with VERDICT: PASS", () =>
    Effect.gen(function* () {
      const scenario = scenarios.find((candidate) => candidate.name === "postgres-partitioned")
      assert.isDefined(scenario)
      if (scenario === undefined) return
      const transcript: Array<string> = []
      const verdict = yield* runScenario(scenario, (line) => transcript.push(line))
      assert.strictEqual(verdict.line, "VERDICT: PASS postgres-partitioned", transcript.join("\n"))
      assert.isTrue(transcript.some((line) => line.includes("ledger_verify()")), "the closing audit was printed")
    }), 120_000)
})
