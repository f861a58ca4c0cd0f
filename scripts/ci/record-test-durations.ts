// Records how long each test file took, from Vitest's JSON report of a full run, into
// .ci/test-durations.json: the order scripts/ci/DurationSequencer.ts runs files in (longest first).
//   node scripts/ci/record-test-durations.ts [.stack/vitest-report.json]
import { readFileSync, writeFileSync } from "node:fs"
import { dirname, relative, resolve } from "node:path"
import { Schema } from "effect"
import { durationsFile } from "./DurationSequencer.ts"

const Report = Schema.Struct({
  testResults: Schema.Array(Schema.Struct({ name: Schema.String, startTime: Schema.Number, endTime: Schema.Number }))
})

const reportPath = process.argv[2] ?? ".stack/vitest-report.json"
// The report names files by absolute path; the record keys them by path in the checkout that ran
// them (the report sits in its .stack/), so a report from a clone serves this checkout too.
const root = dirname(dirname(resolve(reportPath)))
const report = Schema.decodeUnknownSync(Schema.fromJsonString(Report))(readFileSync(reportPath, "utf8"))
const entries = report.testResults
  .map((file) => [relative(root, file.name), Math.round((file.endTime - file.startTime) / 100) * 100] as const)
  .sort((a, b) => b[1] - a[1])
const durations_ms = Object.fromEntries(entries)
writeFileSync(durationsFile, `${JSON.stringify({ recorded_at: new Date().toISOString(), durations_ms }, null, 2)}\n`)
const total_ms = entries.reduce((sum, [, ms]) => sum + ms, 0)
console.log(`${entries.length} files, ${Math.round(total_ms / 1000)} s in all; longest: ${entries.slice(0, 5).map(([f, ms]) => `${f} ${Math.round(ms / 1000)} s`).join(", ")}`)
