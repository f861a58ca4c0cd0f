import { defineConfig } from "vitest/config"
import DurationSequencer from "./scripts/ci/DurationSequencer.ts"

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "scripts/ci/test/**/*.test.ts"],
    globalSetup: ["packages/testkit/src/globalSetup.ts"],
    // Files run in parallel workers; each gets its own database, so they never share rows.
    pool: "forks",
    maxWorkers: 2,
    // Longest files first, by .ci/test-durations.json (a fresh clone has no Vitest cache to order by).
    sequence: { sequencer: DurationSequencer },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // The JSON report and the errors it leaves out feed the closing line (scripts/ci/test-summary.ts).
    reporters: ["default", "json", ["./scripts/ci/UnhandledErrorsReporter.ts", { outputFile: ".stack/vitest-unhandled-errors.json" }]],
    outputFile: { json: ".stack/vitest-report.json" }
  }
})
