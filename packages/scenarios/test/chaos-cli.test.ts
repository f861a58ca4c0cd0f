// `pnpm chaos` ignored what it did not know: a misspelt `--duraton 30`, or `--help`, started a full
// default run (a 3-node Kafka cluster and 60 s of load). Unknown arguments and an option without
// its value are now a usage error (exit 2) before anything starts; `--help` prints the usage.
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"

const main = fileURLToPath(new URL("../src/chaos/main.ts", import.meta.url))

const chaos = (args: ReadonlyArray<string>) =>
  new Promise<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>((resolve) => {
    execFile(process.execPath, [main, ...args], { timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : null, stdout, stderr })
    })
  })

describe("pnpm chaos: its arguments", () => {
  it("refuses what it does not know, before anything starts; --help is the usage", async () => {
    for (const args of [["--duraton", "30"], ["--seed", "--duration", "30"]]) {
      const run = await chaos(args)
      assert.strictEqual(run.code, 2, `${args.join(" ")}: ${run.stdout}${run.stderr}`)
      assert.include(run.stderr, "usage: pnpm chaos")
      assert.notInclude(run.stdout, "chaos: seed", "nothing started")
    }
    const help = await chaos(["--help"])
    assert.deepStrictEqual([help.code, help.stderr], [0, ""])
    assert.include(help.stdout, "usage: pnpm chaos")
  }, 60_000)
})
