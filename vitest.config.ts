import { defineConfig } from "vitest/config"
import DurationSequencer from "./scripts/ci/DurationSequencer.ts"

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "scripts/ci/test/**/*.test.ts"],
    globalSetup: ["packages/testkit/src/globalSetup.ts"],
    // Files run in parallel workers; each gets its own database, so they never share rows.
    pool: "forks",
    maxWorkers: 2,
    // A worker keeps its modules from one file to the next instead of importing Effect, the
    // drivers and our packages again for each of the 120 files: measured on a full run, the
    // imports were 29 % of the workers' time (Vitest 525 s isolated, 370 s not, every test
    // passing both ways). What a file may not rely on, then: module state it did not create
    // (metrics registries, process.env, listeners) being fresh. Everything else is per file
    // already (database, topic prefix, Redis prefix, servers in their own processes).
    isolate: false,
    // Longest files first, by .ci/test-durations.json (a fresh clone has no Vitest cache to order by).
    sequence: { sequencer: DurationSequencer },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // The JSON report and the errors it leaves out feed the closing line (scripts/ci/test-summary.ts).
    reporters: ["default", "json", ["./scripts/ci/UnhandledErrorsReporter.ts", { outputFile: ".stack/vitest-unhandled-errors.json" }]],
    outputFile: { json: ".stack/vitest-report.json" }
  }
})
