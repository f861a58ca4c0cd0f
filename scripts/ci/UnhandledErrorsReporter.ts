import { mkdirSync, writeFileSync } from "node:fs"
import { dirname } from "node:path"
import type { Reporter, SerializedError, TestModule, TestRunEndReason } from "vitest/node"

/**
 * Vitest's JSON report leaves out errors that belong to no test (an unhandled rejection, an error
 * thrown after a test ended): the run fails, yet every test reads passed. This reporter writes them,
 * with the run's end reason, to `outputFile` (relative to the working directory) so the closing
 * line (scripts/ci/test-summary.ts) counts each one.
 */
export default class UnhandledErrorsReporter implements Reporter {
  private readonly outputFile: string

  constructor(options: { readonly outputFile?: string } = {}) {
    this.outputFile = options.outputFile ?? ".stack/vitest-unhandled-errors.json"
  }

  onTestRunEnd(_modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError>, reason: TestRunEndReason) {
    const errors = unhandledErrors.map((error) => `${error.name ?? "Error"}: ${error.message ?? String(error)}`.slice(0, 2_000))
    mkdirSync(dirname(this.outputFile), { recursive: true })
    writeFileSync(this.outputFile, JSON.stringify({ reason, errors }, null, 2))
  }
}
