import { describe, expect, it } from "vitest"
import { longestFirst } from "../DurationSequencer.ts"

describe("test files ordered by recorded duration (scripts/ci/DurationSequencer.ts)", () => {
  it("runs the longest recorded files first and files it has no record of before them, keeping their order", () => {
    const durations = new Map([["a.test.ts", 5_000], ["b.test.ts", 80_000], ["c.test.ts", 20_000]])
    const files = ["a.test.ts", "new-1.test.ts", "c.test.ts", "b.test.ts", "new-2.test.ts"]
    expect(longestFirst(files, (file) => file, durations)).toEqual(["new-1.test.ts", "new-2.test.ts", "b.test.ts", "c.test.ts", "a.test.ts"])
  })

  it("leaves the order alone without a record", () => {
    expect(longestFirst(["x", "y", "z"], (file) => file, new Map())).toEqual(["x", "y", "z"])
  })
})
