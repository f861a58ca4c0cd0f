import { Deferred, Duration, Effect } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

/** The consumers as their own process, for the crash and rebalance tests. */
const repositoryRoot = fileURLToPath(new URL("../../..", import.meta.url))
const childTimeout_ms = 40_000

export interface Exit {
  readonly code: number | null
  readonly signal: string | null
  readonly output: string
}

export interface Child {
  readonly exited: Effect.Effect<Exit>
  readonly kill: (signal: "SIGKILL" | "SIGTERM") => Effect.Effect<void>
}

/**
 * `node packages/consumers/src/main.ts` (scoped: SIGKILLed if still alive when the scope closes). */
export const startChild = (env: Readonly<Record<string, string>>) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const child = spawn(process.execPath, ["packages/consumers/src/main.ts"], {
        cwd: repositoryRoot,
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      const keep = (chunk: Buffer) => {
        output = (output + chunk.toString("utf8")).slice(-4_000)
      }
      child.stdout.on("data", keep)
      child.stderr.on("data", keep)
      const exit = yield* Deferred.make<Exit>()
      child.on("exit", (code, signal) => Deferred.doneUnsafe(exit, Effect.succeed({ code, signal, output })))
      const handle: Child & { readonly process: typeof child } = {
        process: child,
        exited: Deferred.await(exit).pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(childTimeout_ms),
            orElse: () => Effect.die(new Error(`consumer process still alive after ${childTimeout_ms} ms: ${output}`))
          })
        ),
        kill: (signal) => Effect.sync(() => void child.kill(signal))
      }
      return handle
    }),
    (handle) => Effect.sync(() => {
      if (handle.process.exitCode === null && handle.process.signalCode === null) handle.process.kill("SIGKILL")
    })
  )
