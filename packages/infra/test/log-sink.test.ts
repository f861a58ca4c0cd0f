// The batched log writer (Logging.ts makeLineSink): one write per turn of the event loop, in
// order, forced at the bound; and a process that logs then exits has written every line.
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { makeLineSink } from "../src/observability/Logging.ts"

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

describe("makeLineSink", () => {
  it("writes the lines of one turn with one write, in order, and a later turn's with another", async () => {
    const writes: Array<string> = []
    const sink = makeLineSink((chunk) => writes.push(chunk), 100)
    sink.push("a")
    sink.push("b")
    sink.push("c")
    assert.deepStrictEqual(writes, [], "nothing written before the turn ends")
    await nextTurn()
    sink.push("d")
    await nextTurn()
    assert.deepStrictEqual(writes, ["a\nb\nc\n", "d\n"])
  })

  it("writes at once when the bound is reached, never holding more than the bound", async () => {
    const writes: Array<string> = []
    const sink = makeLineSink((chunk) => writes.push(chunk), 3)
    for (const line of ["1", "2", "3", "4", "5", "6", "7"]) sink.push(line)
    assert.deepStrictEqual(writes, ["1\n2\n3\n", "4\n5\n6\n"])
    await nextTurn()
    assert.deepStrictEqual(writes, ["1\n2\n3\n", "4\n5\n6\n", "7\n"])
    sink.flush()
    assert.lengthOf(writes, 3, "an empty flush writes nothing")
  })

  it("a process that logs with the JSON layer and exits at once has written every line, in order", () => {
    const logging = fileURLToPath(new URL("../src/observability/Logging.ts", import.meta.url))
    const program = `
      import { Effect } from "effect"
      import { JsonLoggingLive } from ${JSON.stringify(logging)}
      await Effect.runPromise(Effect.forEach([1, 2, 3, 4, 5], (n) => Effect.log("line " + n)).pipe(Effect.provide(JsonLoggingLive)))
      process.exit(0)`
    const output = execFileSync(process.execPath, ["--input-type=module", "-e", program], { cwd: fileURLToPath(new URL("..", import.meta.url)), encoding: "utf8", timeout: 30_000 })
    const messages = output.trim().split("\n").map((line) => {
      const parsed: unknown = JSON.parse(line)
      return typeof parsed === "object" && parsed !== null && "message" in parsed ? parsed.message : line
    })
    assert.deepStrictEqual(messages, ["line 1", "line 2", "line 3", "line 4", "line 5"])
  })
})
