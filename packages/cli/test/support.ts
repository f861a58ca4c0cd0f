import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"

const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url))
/** The CLI checks the schema first (it never migrates, but for `migrate`); a command is done in a second or two. */
const cliTimeout_ms = 30_000

export interface CliRun {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * `node packages/cli/src/main.ts <args>` against the given database, as an operator runs it: its
 * exit code and both outputs (a non-zero exit is a result here, not a failure).
 */
export const cli = (databaseUrl: string, args: ReadonlyArray<string>, extraEnv: Readonly<Record<string, string>> = {}) =>
  Effect.callback<CliRun>((resume) => {
    const child = execFile(
      process.execPath,
      ["packages/cli/src/main.ts", ...args],
      { cwd: repositoryRoot, env: { ...process.env, DATABASE_URL: databaseUrl, ...extraEnv }, timeout: cliTimeout_ms, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        const exitCode = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        resume(Effect.succeed({ exitCode, stdout, stderr }))
      }
    )
    // Interrupted (test timeout): this child only, by its own handle.
    return Effect.sync(() => {
      if (child.exitCode === null) child.kill("SIGKILL")
    })
  })

export const describeRun = (run: CliRun) => `exit ${run.exitCode}\nstdout: ${run.stdout.slice(-1_000)}\nstderr: ${run.stderr.slice(-1_000)}`
