import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { apiEnvironment } from "./ApiProcess.ts"
import type { ScenarioStack } from "./Stack.ts"

const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url))
const cliTimeout_ms = 120_000

/** `node packages/cli/src/main.ts <args>` on the scenario's database and prefixes, as an operator runs it: exit code and output. */
export const runCli = (stack: ScenarioStack, args: ReadonlyArray<string>, timeout_ms: number = cliTimeout_ms) =>
  Effect.callback<{ readonly exitCode: number; readonly output: string }>((resume) => {
    const child = execFile(
      process.execPath,
      ["packages/cli/src/main.ts", ...args],
      { cwd: repositoryRoot, env: { ...process.env, ...apiEnvironment(stack) }, timeout: timeout_ms, killSignal: "SIGKILL", maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const exitCode = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resume(Effect.succeed({ exitCode, output: `${stdout}${stderr}`.trim() }))
      }
    )
    return Effect.sync(() => {
      if (child.exitCode === null) child.kill("SIGKILL")
    })
  })
