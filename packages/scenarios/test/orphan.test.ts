import { assert, describe, it } from "@effect/vitest"
import { isAlive } from "@pay/testkit"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const child = fileURLToPath(new URL("./fixtures/orphan-child.ts", import.meta.url))

const textOf = (path: string) => (existsSync(path) ? readFileSync(path, "utf8") : "")

/** Polls `done` every 100 ms for at most `bound_ms`; whether it became true. */
const waitFor = (done: () => boolean, bound_ms: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + bound_ms
    while (!done() && Date.now() < deadline) yield* Effect.sleep(100)
    return done()
  })

// `timeout 60 pnpm scenario …` left the scenario running after pnpm exited (pnpm does not pass
// SIGTERM on), with its API processes, throwaway broker and database: the outside fault audit.
describe("a scenario or chaos run whose parent goes away stops and cleans up (stopWhenOrphaned)", () => {
  it.live("while its parent lives it runs on; when the parent exits, it releases what it holds and exits within seconds", () =>
    Effect.gen(function* () {
      const folder = mkdtempSync(join(tmpdir(), "orphan-"))
      const marker = join(folder, "marker")
      const go = join(folder, "go")
      const pidFile = join(folder, "pid")
      // The parent: a shell that starts the run in the background and exits once told to (bounded: 60 s).
      const shell = spawn("bash", ["-c", `"${process.execPath}" "${child}" "${marker}" & echo $! > "${pidFile}"; for i in $(seq 600); do [ -f "${go}" ] && exit 0; sleep 0.1; done`], { stdio: "ignore" })
      yield* Effect.addFinalizer(() => Effect.gen(function* () {
        if (shell.exitCode === null) shell.kill("SIGKILL")
        const pid = Number(textOf(pidFile).trim())
        if (pid > 0 && (yield* isAlive(pid))) process.kill(pid, "SIGKILL")
        rmSync(folder, { recursive: true, force: true })
      }))
      assert.isTrue(yield* waitFor(() => textOf(marker) === "started\n", 30_000), `the run started: ${textOf(marker)}`)
      const pid = Number(textOf(pidFile).trim())
      yield* Effect.sleep(1_500)
      assert.strictEqual(textOf(marker), "started\n", "its parent alive, the run goes on")
      assert.isTrue(yield* isAlive(pid))

      writeFileSync(go, "")
      assert.isTrue(yield* waitFor(() => textOf(marker) === "started\nreleased\n", 15_000), `released after the parent exited: ${JSON.stringify(textOf(marker))}`)
      const deadline = Date.now() + 10_000
      while ((yield* isAlive(pid)) && Date.now() < deadline) yield* Effect.sleep(100)
      assert.isFalse(yield* isAlive(pid), "and exited")
    }).pipe(Effect.scoped), 90_000)
})
