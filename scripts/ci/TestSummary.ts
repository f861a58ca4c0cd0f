import { Schema } from "effect"

/**
 * The closing line of `scripts/test.sh`, computed from Vitest's JSON report and what the run
 * knows besides it. Vitest's own counts can read "N passed, 0 failed" while the run failed:
 * a `layer(...)` that fails to build marks its tests skipped, an `afterAll` failure or a file that
 * does not load fails the file but no test, and an unhandled error belongs to no test at all. Here
 * every one of those is a failure, and so is:
 * - a skipped (or todo) test that `.ci/skips.json` does not declare with a reason;
 * - a declared skip that no longer skips anything (full runs only: the list stays true);
 * - a total below the floor recorded in `.ci/test-count` (full runs only), unless the run is told
 *   to accept the new count (`scripts/test.sh --accept-test-count`);
 * - each failed gate of the run (typecheck, dependency rules, code shape, invariants table).
 * The last line is always exactly `N passed, N failed` (CI reads it).
 */

const AssertionResult = Schema.Struct({
  fullName: Schema.String,
  title: Schema.String,
  status: Schema.String,
  failureMessages: Schema.Array(Schema.String)
})

const FileResult = Schema.Struct({
  name: Schema.String,
  status: Schema.String,
  message: Schema.String,
  assertionResults: Schema.Array(AssertionResult)
})

export const VitestReport = Schema.Struct({
  success: Schema.Boolean,
  testResults: Schema.Array(FileResult)
})
export type VitestReport = typeof VitestReport.Type

export const UnhandledErrors = Schema.Struct({
  reason: Schema.String,
  errors: Schema.Array(Schema.String)
})
export type UnhandledErrors = typeof UnhandledErrors.Type

/** One deliberate skip: the file (path from the repository root), a fragment of the test's full name, and why. */
export const DeclaredSkip = Schema.Struct({
  file: Schema.String.check(Schema.isMinLength(1)),
  test: Schema.String.check(Schema.isMinLength(1)),
  reason: Schema.String.check(Schema.isMinLength(10, { message: "a declared skip needs a reason (10 characters at least)" }))
})
export type DeclaredSkip = typeof DeclaredSkip.Type
export const DeclaredSkips = Schema.Array(DeclaredSkip)

export interface Gate {
  readonly name: string
  readonly failed: boolean
}

export interface SummaryInput {
  /** Undefined when Vitest wrote no report (it crashed, or never ran). */
  readonly report: VitestReport | undefined
  /** Undefined when the reporter wrote nothing (then a failed run with no failed test counts as one). */
  readonly unhandled: UnhandledErrors | undefined
  readonly vitestExitCode: number
  readonly gates: ReadonlyArray<Gate>
  readonly declaredSkips: ReadonlyArray<DeclaredSkip>
  /** The floor from `.ci/test-count`; undefined when the file is missing. */
  readonly recordedCount: number | undefined
  /** Extra arguments were given to Vitest (a path, `-t`): no count floor, skips of filtered tests are not failures. */
  readonly partial: boolean
  readonly acceptCount: boolean
}

export interface Summary {
  readonly passed: number
  readonly failed: number
  readonly skipped: number
  readonly total: number
  /** Why each failure counted, one line each, then the counts line, then `N passed, N failed`. */
  readonly lines: ReadonlyArray<string>
  /** The count to write to `.ci/test-count`, when the run was asked to accept it and may. */
  readonly countToRecord: number | undefined
}

type Assertion = typeof AssertionResult.Type
type File = typeof FileResult.Type

const skippedStatuses = new Set(["skipped", "pending", "todo", "disabled"])

const relative = (file: string, root: string) => (file.startsWith(`${root}/`) ? file.slice(root.length + 1) : file)

const declarationFor = (declared: ReadonlyArray<DeclaredSkip>, file: string, test: Assertion) =>
  declared.find((skip) => file === skip.file && test.fullName.includes(skip.test))

interface Counted {
  readonly passed: number
  readonly failedTests: number
  readonly skipped: number
  readonly total: number
  readonly reasons: ReadonlyArray<string>
  readonly usedDeclarations: ReadonlySet<DeclaredSkip>
}

/** Tests and files: failed tests, files that failed with no failed test, skips declared or not. */
const countReport = (report: VitestReport, input: SummaryInput, root: string): Counted => {
  const reasons: Array<string> = []
  const used = new Set<DeclaredSkip>()
  let passed = 0
  let failedTests = 0
  let skipped = 0
  let total = 0
  for (const file of report.testResults) {
    const path = relative(file.name, root)
    let failedHere = 0
    for (const test of file.assertionResults) {
      total++
      if (test.status === "passed") passed++
      else if (test.status === "failed") {
        failedTests++
        failedHere++
        reasons.push(`failed test: ${path} > ${test.fullName}`)
      } else if (skippedStatuses.has(test.status)) {
        skipped++
        const declaration = declarationFor(input.declaredSkips, path, test)
        if (declaration !== undefined) used.add(declaration)
        else if (!input.partial) reasons.push(`undeclared ${test.status} test (declare it in .ci/skips.json with its reason, or make it run): ${path} > ${test.fullName}`)
      } else {
        reasons.push(`test with unknown status ${JSON.stringify(test.status)}: ${path} > ${test.fullName}`)
      }
    }
    if (file.status === "failed" && failedHere === 0) reasons.push(fileFailure(path, file))
  }
  return { passed, failedTests, skipped, total, reasons, usedDeclarations: used }
}

const fileFailure = (path: string, file: File) => {
  const why = file.message.trim().split("\n")[0]?.slice(0, 300) ?? ""
  return why.length > 0
    ? `failed file (no failed test; a hook, an import or a layer failed): ${path}: ${why}`
    : `failed file (no failed test and no message: typically a layer that failed to build, its tests marked skipped; see the log above): ${path}`
}

/** Full runs only: a declaration that skipped nothing is stale. */
const staleDeclarations = (input: SummaryInput, used: ReadonlySet<DeclaredSkip>) =>
  input.partial ? [] : input.declaredSkips.filter((skip) => !used.has(skip)).map((skip) =>
    `declared skip that skipped nothing (remove it from .ci/skips.json): ${skip.file} > ${skip.test}`)

interface CountCheck {
  readonly reasons: ReadonlyArray<string>
  readonly notes: ReadonlyArray<string>
  readonly countToRecord: number | undefined
}

/** The floor: full runs only; a drop fails unless accepted; a rise is pointed out. */
const checkCount = (input: SummaryInput, total: number, otherFailures: number): CountCheck => {
  if (input.partial) {
    return { reasons: [], notes: input.acceptCount ? ["--accept-test-count ignored: only a full run records the count"] : [], countToRecord: undefined }
  }
  if (input.acceptCount) {
    return otherFailures === 0
      ? { reasons: [], notes: [`test count ${total} recorded in .ci/test-count (was ${input.recordedCount ?? "unset"})`], countToRecord: total }
      : { reasons: ["--accept-test-count refused: the run has failures; a count is recorded only from a green run"], notes: [], countToRecord: undefined }
  }
  if (input.recordedCount === undefined) {
    return { reasons: ["no .ci/test-count: record the floor with scripts/test.sh --accept-test-count"], notes: [], countToRecord: undefined }
  }
  if (total < input.recordedCount) {
    return {
      reasons: [`test count dropped: ${total} < ${input.recordedCount} recorded in .ci/test-count (tests removed on purpose? run scripts/test.sh --accept-test-count)`],
      notes: [],
      countToRecord: undefined
    }
  }
  const notes = total > input.recordedCount
    ? [`test count ${total} is above the recorded ${input.recordedCount}: raise the floor with scripts/test.sh --accept-test-count`]
    : []
  return { reasons: [], notes, countToRecord: undefined }
}

/** Errors outside any test, and a failed Vitest run that nothing above explains. */
const runFailures = (input: SummaryInput, explained: number): ReadonlyArray<string> => {
  const reasons = (input.unhandled?.errors ?? []).map((error) => `unhandled error (outside any test): ${error.split("\n")[0]?.slice(0, 300)}`)
  if (input.unhandled !== undefined && input.unhandled.reason === "interrupted") reasons.push("the Vitest run was interrupted")
  const vitestFailed = input.vitestExitCode !== 0 || input.report?.success === false
  if (vitestFailed && explained + reasons.length === 0) {
    reasons.push(`Vitest failed (exit code ${input.vitestExitCode}) with no failed test, file or recorded error`)
  }
  return reasons
}

export const summarize = (input: SummaryInput, root: string): Summary => {
  const gateReasons = input.gates.filter((gate) => gate.failed).map((gate) => `${gate.name} failed (counted as one failure)`)
  if (input.report === undefined) {
    const reasons = [...gateReasons, "Vitest wrote no report (it crashed or did not run)"]
    return { passed: 0, failed: reasons.length, skipped: 0, total: 0, lines: [...reasons, "0 passed, 0 failed, 0 skipped, 0 total", `0 passed, ${reasons.length} failed`], countToRecord: undefined }
  }
  const counted = countReport(input.report, input, root)
  const beforeRun = [...counted.reasons, ...staleDeclarations(input, counted.usedDeclarations)]
  const fromRun = runFailures(input, beforeRun.length)
  const beforeCount = [...gateReasons, ...beforeRun, ...fromRun]
  const count = checkCount(input, counted.total, beforeCount.length)
  const reasons = [...beforeCount, ...count.reasons]
  // Every reason is one failure; a failed test is one reason.
  const failed = reasons.length
  const declared = counted.usedDeclarations.size
  const floor = count.countToRecord ?? input.recordedCount
  const countsLine = `${counted.passed} passed, ${counted.failedTests} failed, ${counted.skipped} skipped (${declared} declared), ${counted.total} total` +
    (floor === undefined ? "" : `; floor ${floor} (.ci/test-count)`)
  return {
    passed: counted.passed,
    failed,
    skipped: counted.skipped,
    total: counted.total,
    lines: [...reasons, ...count.notes, countsLine, `${counted.passed} passed, ${failed} failed`],
    countToRecord: count.countToRecord
  }
}
