import { existsSync, readFileSync } from "node:fs"
import { relative } from "node:path"
import { Schema } from "effect"
import { BaseSequencer, type TestSpecification } from "vitest/node"

/** `.ci/test-durations.json`: how long each test file took in a recorded full run (scripts/ci/record-test-durations.ts). */
export const TestDurations = Schema.Struct({
  recorded_at: Schema.String,
  durations_ms: Schema.Record(Schema.String, Schema.Number)
})

export const durationsFile = ".ci/test-durations.json"

const readDurations = (root: string): ReadonlyMap<string, number> => {
  const path = `${root}/${durationsFile}`
  if (!existsSync(path)) return new Map()
  const decoded = Schema.decodeUnknownOption(Schema.fromJsonString(TestDurations))(readFileSync(path, "utf8"))
  return decoded._tag === "Some" ? new Map(Object.entries(decoded.value.durations_ms)) : new Map()
}

/**
 * `items` ordered longest first by `durations` (keyed by `keyOf`); items it does not know go first,
 * in their given order. A stable sort: equal durations keep their order.
 */
export const longestFirst = <A>(items: ReadonlyArray<A>, keyOf: (item: A) => string, durations: ReadonlyMap<string, number>): Array<A> =>
  [...items].sort((a, b) => {
    const da = durations.get(keyOf(a))
    const db = durations.get(keyOf(b))
    if (da === undefined || db === undefined) return da === undefined && db !== undefined ? -1 : db === undefined && da !== undefined ? 1 : 0
    return db - da
  })

/**
 * Longest files first, by the committed record of a full run, so that the two workers finish
 * together instead of one running a long file alone at the end (longest-processing-time-first).
 * A fresh clone has no Vitest cache, which is what Vitest's own order relies on; files the record
 * does not know (new ones) go first, as Vitest does with unknown files. Order only: every file runs.
 */
export default class DurationSequencer extends BaseSequencer {
  override async sort(files: Array<TestSpecification>): Promise<Array<TestSpecification>> {
    const root = this.ctx.config.root
    const durations = readDurations(root)
    if (durations.size === 0) return super.sort(files)
    return longestFirst(files, (spec) => relative(root, spec.moduleId), durations)
  }
}
