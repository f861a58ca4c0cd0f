import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { runChaos } from "../src/chaos/Run.ts"

/**
 * The chaos run's short form in the suite (the long forms are `pnpm chaos` and `pnpm chaos:long`,
 * their reports in bench/results/): the same processes (two APIs, two publishers, two consumer
 * instances, the webhook sender and a verifying receiver), load, seeded faults and checker, for
 * 20 s with 4 clients, but on the machine's broker (`kafka: "machine"`: no 3-node cluster to start,
 * so no broker faults; docs/failure-scenarios.md says what only the long forms cover). Every check
 * must hold; the run must really have been duplicated and broken (so that a green result is not a
 * quiet run's).
 */
describe("chaos run, short form (pnpm chaos --seed 181 --duration 20 --clients 4 --machine-kafka)", () => {
  it.live("every check of the checker holds after 20 s of duplicated load under seeded faults", () =>
    Effect.gen(function* () {
      const transcript: Array<string> = []
      // History and report in a folder of the test's own (bench/results/ keeps the long runs').
      const resultsDirectory = `${mkdtempSync(join(tmpdir(), "chaos-short-"))}/`
      const report = yield* runChaos({ seed: 181, duration_s: 20, clients: 4, drain_s: 120, kafka: "machine", resultsDirectory }, (line) => transcript.push(line)).pipe(
        Effect.ensuring(Effect.sync(() => rmSync(resultsDirectory, { recursive: true, force: true })))
      )
      const failed = report.checks.filter((check) => check.violations.length > 0)
      assert.deepStrictEqual(
        failed.map((check) => `${check.name}: ${check.violations.slice(0, 3).join("; ")}`),
        [],
        transcript.join("\n")
      )
      assert.isTrue(report.passed)
      // A floor, not a throughput figure: on a shared 2-core machine 4 clients manage 50..1 000
      // operations in 20 s depending on the neighbours' load (throughput is the bench's business).
      assert.isAtLeast(report.operations, 20, "the clients really ran")
      assert.isAtLeast(report.payments, 10, "payments were created")
      assert.isAtLeast(report.duplicated_share, 0.3, "at least 30% of operations duplicated, retried or concurrent under one key")
      assert.isAtLeast(report.webhooks.applied, 1, "webhooks reached the receiver")
      // Seed 181's schedule: a crash of an API, an outage of each dependency the short form may harm
      // (seed 7 drew a paused API, a killed publisher and a slow Postgres: no crash, no outage).
      // (Its fourth, a FLUSHALL at +19.8 s, falls after the load on a slow minute: not required.)
      for (const kind of ["kill-api", "cut-postgres", "kill-redis"]) {
        assert.isAtLeast(report.faults_applied[kind] ?? 0, 1, `fault ${kind} was applied`)
      }
    }), 480_000)
})
