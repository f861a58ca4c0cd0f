// The closing line of scripts/test.sh against crafted Vitest reports (each way a run can fail
// while Vitest's own counts read "0 failed"), then end to end: the real Vitest on fixtures that
// break a run in those ways, with the suite's reporters, and the real script on what they wrote.
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { type DeclaredSkip, summarize, type SummaryInput, type VitestReport } from "../TestSummary.ts"

const root = "/repo"
const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url))

type Status = "passed" | "failed" | "skipped" | "todo"
const test = (title: string, status: Status) => ({
  fullName: `suite ${title}`,
  title,
  status,
  failureMessages: status === "failed" ? ["AssertionError: boom"] : []
})
const file = (name: string, tests: ReadonlyArray<ReturnType<typeof test>>, failed = tests.some((t) => t.status === "failed"), message = "") => ({
  name: `${root}/${name}`,
  status: failed ? "failed" : "passed",
  message,
  assertionResults: tests
})
const green = file("packages/a/test/a.test.ts", [test("one", "passed"), test("two", "passed")])

const input = (report: VitestReport | undefined, overrides: Partial<SummaryInput> = {}): SummaryInput => ({
  report,
  unhandled: { reason: "passed", errors: [] },
  vitestExitCode: 0,
  gates: [],
  declaredSkips: [],
  recordedCount: 2,
  partial: false,
  acceptCount: false,
  ...overrides
})
const lastLine = (lines: ReadonlyArray<string>) => lines[lines.length - 1]

describe("the closing line (scripts/ci/TestSummary.ts)", () => {
  it("a green run: passed, failed, skipped and total, then exactly `N passed, N failed`", () => {
    const summary = summarize(input({ success: true, testResults: [green] }), root)
    assert.deepStrictEqual(summary.lines, ["2 passed, 0 failed, 0 skipped (0 declared), 2 total; floor 2 (.ci/test-count)", "2 passed, 0 failed"])
  })

  it("a layer that fails to build (file failed, its tests skipped, no message) counts the file and each skipped test", () => {
    const broken = file("packages/b/test/b.test.ts", [test("needs the layer", "skipped"), test("also", "skipped")], true)
    const summary = summarize(input({ success: false, testResults: [green, broken] }, { vitestExitCode: 1, recordedCount: 4 }), root)
    assert.strictEqual(lastLine(summary.lines), "2 passed, 3 failed")
    assert.strictEqual(summary.skipped, 2)
    assert.isTrue(summary.lines.some((l) => l.startsWith("failed file (no failed test and no message") && l.endsWith("packages/b/test/b.test.ts")))
  })

  it("an afterAll failure (file failed, every test passed) is a failure with the hook's message", () => {
    const hook = file("packages/c/test/c.test.ts", [test("fine", "passed")], true, "Error: afterAll failed\n    at …")
    const summary = summarize(input({ success: false, testResults: [hook] }, { vitestExitCode: 1, recordedCount: 1 }), root)
    assert.strictEqual(lastLine(summary.lines), "1 passed, 1 failed")
    assert.include(summary.lines[0], "packages/c/test/c.test.ts: Error: afterAll failed")
  })

  it("an unhandled error counts once per error; without the reporter's file, a failed run that nothing explains counts once", () => {
    const report = { success: false, testResults: [green] }
    const withErrors = summarize(input(report, { vitestExitCode: 1, unhandled: { reason: "failed", errors: ["Error: leaked", "Error: again"] } }), root)
    assert.strictEqual(lastLine(withErrors.lines), "2 passed, 2 failed")
    assert.include(withErrors.lines[0], "unhandled error (outside any test): Error: leaked")
    const withoutFile = summarize(input(report, { vitestExitCode: 1, unhandled: undefined }), root)
    assert.strictEqual(lastLine(withoutFile.lines), "2 passed, 1 failed")
    assert.include(withoutFile.lines[0], "Vitest failed (exit code 1) with no failed test")
  })

  it("a skipped or todo test fails unless declared with its reason; a declaration that skips nothing fails a full run", () => {
    const skipping = file("packages/d/test/d.test.ts", [test("runs", "passed"), test("off on purpose", "skipped"), test("later", "todo")])
    const report = { success: true, testResults: [skipping] }
    const undeclared = summarize(input(report, { recordedCount: 3 }), root)
    assert.strictEqual(lastLine(undeclared.lines), "1 passed, 2 failed")
    const declared: ReadonlyArray<DeclaredSkip> = [
      { file: "packages/d/test/d.test.ts", test: "off on purpose", reason: "needs a second machine" },
      { file: "packages/d/test/d.test.ts", test: "later", reason: "waits for issue 19" }
    ]
    const ok = summarize(input(report, { recordedCount: 3, declaredSkips: declared }), root)
    assert.strictEqual(lastLine(ok.lines), "1 passed, 0 failed")
    assert.include(ok.lines[0], "2 skipped (2 declared), 3 total")
    const stale = [...declared, { file: "packages/d/test/d.test.ts", test: "runs", reason: "was flaky once upon a time" }]
    const staleFull = summarize(input(report, { recordedCount: 3, declaredSkips: stale }), root)
    assert.strictEqual(lastLine(staleFull.lines), "1 passed, 1 failed")
    assert.include(staleFull.lines[0], "declared skip that skipped nothing")
    // A partial run (a path or -t given) skips what it filtered out: neither counts.
    assert.strictEqual(lastLine(summarize(input(report, { partial: true, declaredSkips: stale }), root).lines), "1 passed, 0 failed")
  })

  it("a total below the recorded floor fails a full run, unless accepted from a green run; a partial run has no floor", () => {
    const report = { success: true, testResults: [green] }
    const dropped = summarize(input(report, { recordedCount: 3 }), root)
    assert.strictEqual(lastLine(dropped.lines), "2 passed, 1 failed")
    assert.include(dropped.lines[0], "test count dropped: 2 < 3")
    assert.strictEqual(lastLine(summarize(input(report, { recordedCount: 3, partial: true }), root).lines), "2 passed, 0 failed")
    const accepted = summarize(input(report, { recordedCount: 3, acceptCount: true }), root)
    assert.strictEqual(accepted.countToRecord, 2)
    assert.include(accepted.lines, "2 passed, 0 failed, 0 skipped (0 declared), 2 total; floor 2 (.ci/test-count)")
    assert.strictEqual(lastLine(accepted.lines), "2 passed, 0 failed")
    const refused = summarize(input(report, { recordedCount: 3, acceptCount: true, gates: [{ name: "typecheck", failed: true }] }), root)
    assert.isUndefined(refused.countToRecord)
    assert.strictEqual(lastLine(refused.lines), "2 passed, 2 failed")
    assert.include(summarize(input(report, { recordedCount: 1 }), root).lines[0], "above the recorded 1")
    assert.strictEqual(lastLine(summarize(input(report, { recordedCount: undefined }), root).lines), "2 passed, 1 failed")
  })

  it("each failed gate counts once; no report at all is a failure, never a green line", () => {
    const gates = [{ name: "typecheck", failed: true }, { name: "invariants table", failed: true }, { name: "code shape", failed: false }]
    const summary = summarize(input({ success: true, testResults: [green] }, { gates }), root)
    assert.deepStrictEqual(summary.lines.slice(0, 2), ["typecheck failed (counted as one failure)", "invariants table failed (counted as one failure)"])
    assert.strictEqual(lastLine(summary.lines), "2 passed, 2 failed")
    assert.strictEqual(lastLine(summarize(input(undefined), root).lines), "0 passed, 1 failed")
  })

  it("end to end: the real Vitest on fixtures that break a run (layer, afterAll, load, unhandled rejection, skip), then the script", () => {
    const dir = mkdtempSync(join(tmpdir(), "test-summary-"))
    try {
      const fixtures = join(repositoryRoot, "scripts/ci/test/fixtures")
      const report = join(dir, "report.json")
      const unhandled = join(dir, "unhandled.json")
      const vitest = spawnSync(process.execPath, [join(repositoryRoot, "node_modules/vitest/vitest.mjs"), "run", "--config", "vitest.fixtures.config.ts"], {
        cwd: fixtures,
        env: { ...process.env, FIXTURE_REPORT: report, FIXTURE_UNHANDLED: unhandled },
        encoding: "utf8",
        timeout: 60_000
      })
      assert.strictEqual(vitest.status, 1, `the fixtures' run fails:\n${vitest.stdout}\n${vitest.stderr}`)
      // The floor and the one declared skip, in a .ci folder of the test's own.
      const ci = join(dir, "ci")
      mkdirSync(ci)
      writeFileSync(join(ci, "test-count"), "5\n")
      const skip = { file: "skipped.fixture.ts", test: "skipped on purpose", reason: "the fixture of a declared skip" }
      writeFileSync(join(ci, "skips.json"), JSON.stringify([skip]))
      const summary = spawnSync(process.execPath, [
        join(repositoryRoot, "scripts/ci/test-summary.ts"),
        "--report", report, "--unhandled", unhandled, "--vitest-exit", String(vitest.status),
        "--gate", "typecheck=0", "--root", fixtures, "--ci", ci, "--accept-test-count"
      ], { encoding: "utf8", timeout: 30_000 })
      assert.strictEqual(summary.status, 1, summary.stderr)
      const lines = summary.stdout.trim().split("\n")
      // The afterAll, load and layer files (3), the layer's skipped test, the leaked rejection; the
      // declared skip is not a failure, and a red run may not record its count.
      assert.strictEqual(lines[lines.length - 1], "3 passed, 6 failed", summary.stdout)
      assert.include(summary.stdout, "unhandled error (outside any test): Error: a leaked rejection")
      assert.include(summary.stdout, "failed file (no failed test; a hook, an import or a layer failed): after-all-fails.fixture.ts: afterAll failed")
      assert.include(summary.stdout, "failed file (no failed test and no message: typically a layer that failed to build")
      assert.include(summary.stdout, "undeclared skipped test (declare it in .ci/skips.json with its reason, or make it run): layer-fails.fixture.ts")
      assert.include(summary.stdout, "--accept-test-count refused")
      assert.include(summary.stdout, "3 passed, 0 failed, 2 skipped (1 declared), 5 total; floor 5")
      assert.strictEqual(readFileSync(join(ci, "test-count"), "utf8"), "5\n")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 90_000)
})
