import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { runChaos } from "../src/chaos/Run.ts"

/**
 * The chaos run's short form in the suite (the long form is `pnpm chaos`, its latest report in
 * bench/results/): the same topology, load, seeded faults and checker, for 20 s with 4 clients.
 * Every check must hold; the run must really have been duplicated and broken (so that a green
 * result is not a quiet run's).
 */
describe("chaos run, short form (pnpm chaos --seed 7 --duration 20 --clients 4)", () => {
  it.live("every check of the checker holds after 20 s of duplicated load under seeded faults", () =>
    Effect.gen(function* () {
      const transcript: Array<string> = []
      // History and report in a folder of the test's own (bench/results/ keeps the long runs').
      const resultsDirectory = `${mkdtempSync(join(tmpdir(), "chaos-short-"))}/`
      const report = yield* runChaos({ seed: 7, duration_s: 20, clients: 4, resultsDirectory }, (line) => transcript.push(line)).pipe(
        Effect.ensuring(Effect.sync(() => rmSync(resultsDirectory, { recursive: true, force: true })))
      )
      const failed = report.checks.filter((check) => check.violations.length > 0)
      assert.deepStrictEqual(
        failed.map((check) => `${check.name}: ${check.violations.slice(0, 3).join("; ")}`),
        [],
        transcript.join("\n")
      )
      assert.isTrue(report.passed)
      assert.isAtLeast(report.operations, 50, "the clients really ran")
      assert.isAtLeast(report.duplicated_share, 0.3, "at least 30% of operations duplicated, retried or concurrent under one key")
      assert.isAtLeast(Object.values(report.faults_applied).reduce((sum, n) => sum + n, 0), 1, "faults were applied")
    }), 240_000)
})
