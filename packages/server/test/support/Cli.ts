import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"

const repositoryRoot = fileURLToPath(new URL("../../../../", import.meta.url))
/** The CLI checks the schema first (it never migrates, but for `migrate`); a command is done in a second or two. */
const cliTimeout_ms = 30_000

export class CliError extends Schema.TaggedError<CliError>()("CliError", { message: Schema.String }) {}

/** `node packages/cli/src/main.ts <args>` against the given database, as an operator runs it; its stdout. */
export const runCli = (databaseUrl: string, args: ReadonlyArray<string>) =>
  Effect.callback<string, CliError>((resume) => {
    const child = execFile(
      process.execPath,
      ["packages/cli/src/main.ts", ...args],
      { cwd: repositoryRoot, env: { ...process.env, DATABASE_URL: databaseUrl }, timeout: cliTimeout_ms, killSignal: "SIGKILL" },
      (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(stdout)
            : Effect.fail(new CliError({ message: `cli ${args.join(" ")} failed: ${error.message}\n${stderr.slice(-2_000)}` }))
        )
    )
    // Interrupted (test timeout): this child only, by its own handle.
    return Effect.sync(() => {
      if (child.exitCode === null) child.kill("SIGKILL")
    })
  })
