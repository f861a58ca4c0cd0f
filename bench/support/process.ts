import type { ChildProcess } from "node:child_process"
import { Effect } from "effect"

/** Stops a child the benchmark started: SIGTERM (graceful), SIGKILL after 10 s. Never rejects. */
export const stopChild = (child: ChildProcess): Effect.Effect<void> =>
  Effect.promise(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
        child.once("exit", () => {
          clearTimeout(timer)
          resolve()
        })
        child.kill("SIGTERM")
      })
  )
