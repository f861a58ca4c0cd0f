// The closing line of scripts/test.sh (see TestSummary.ts for what counts as a failure).
//
//   node scripts/ci/test-summary.ts --report .stack/vitest-report.json \
//     --unhandled .stack/vitest-unhandled-errors.json --vitest-exit 0 \
//     --gate typecheck=0 --gate "dependency rules=0" [--partial] [--accept-test-count] [--root DIR] [--ci DIR]
//
// Prints one line per failure, the counts, and last `N passed, N failed`; exits 1 when N failed > 0.
// Test files are named relative to --root (default: the working directory). Reads `skips.json`
// (declared skips) and `test-count` (the floor) from --ci (default: <root>/.ci), and writes
// `test-count` when a green full run is told to accept its count.
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { parseArgs } from "node:util"
import { Schema } from "effect"
import { DeclaredSkips, type Gate, summarize, UnhandledErrors, VitestReport } from "./TestSummary.ts"

const { values } = parseArgs({
  options: {
    report: { type: "string" },
    unhandled: { type: "string" },
    "vitest-exit": { type: "string", default: "0" },
    gate: { type: "string", multiple: true, default: [] },
    partial: { type: "boolean", default: false },
    "accept-test-count": { type: "boolean", default: false },
    root: { type: "string", default: process.cwd() },
    ci: { type: "string" }
  }
})

const root = resolve(values.root)
const readJson = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, path: string | undefined) =>
  path === undefined || !existsSync(path)
    ? undefined
    : Schema.decodeUnknownSync(Schema.fromJsonString(schema))(readFileSync(path, "utf8"))

const gates: ReadonlyArray<Gate> = values.gate.map((spec) => {
  const at = spec.lastIndexOf("=")
  if (at <= 0) throw new Error(`--gate expects name=0|1, got ${JSON.stringify(spec)}`)
  return { name: spec.slice(0, at), failed: spec.slice(at + 1) !== "0" }
})

const ciDir = resolve(values.ci ?? join(root, ".ci"))
const countFile = join(ciDir, "test-count")
const recorded = existsSync(countFile) ? Number(readFileSync(countFile, "utf8").trim()) : undefined
if (recorded !== undefined && !Number.isSafeInteger(recorded)) throw new Error(`.ci/test-count must hold one integer`)

const vitestExitCode = Number(values["vitest-exit"])
const summary = summarize({
  report: readJson(VitestReport, values.report),
  unhandled: readJson(UnhandledErrors, values.unhandled),
  vitestExitCode: Number.isInteger(vitestExitCode) ? vitestExitCode : 1,
  gates,
  declaredSkips: readJson(DeclaredSkips, join(ciDir, "skips.json")) ?? [],
  recordedCount: recorded,
  partial: values.partial,
  acceptCount: values["accept-test-count"]
}, root)

if (summary.countToRecord !== undefined) writeFileSync(countFile, `${summary.countToRecord}\n`)
for (const line of summary.lines) console.log(line)
process.exitCode = summary.failed === 0 ? 0 : 1
