import { ChildProcessError, freePort, startManagedProcess } from "@pay/testkit/ChildProcess"
import { Effect } from "effect"

/** The launch, output tail, signals and readiness probe live in `@pay/testkit/ChildProcess`. */
export { freePort }

/** The last bytes of the server's output kept for failure messages (it logs every request). */
const outputKept_chars = 64 * 1024
/** Start-up (migrations, Redis, Kafka) within this, or the test fails with the server's output. */
const startTimeout_ms = 30_000

export interface ServerProcessOptions {
  readonly port: number
  /** Merged over the parent's environment. */
  readonly env: Readonly<Record<string, string>>
}

/**
 * `node packages/server/src/main.ts` as a child process, the way an operator runs it: the real
 * entry point, real dependencies, killed by its own pid and nothing else.
 */
export interface ServerProcess {
  readonly baseUrl: string
  readonly port: number
  /** The pid of the process running now (changes on `restart`). */
  readonly pid: () => number
  /** The tail of stdout + stderr of the current process. */
  readonly output: () => string
  /**
   * A barrier on the current process's output: succeeds once a line containing every one of
   * `fragments` has been printed (before or after the call); fails after `timeout_ms` with a
   * message naming what it waited for and the output's tail.
   */
  readonly awaitOutput: (fragments: ReadonlyArray<string>, timeout_ms: number) => Effect.Effect<void, ChildProcessError>
  /** `kill -9`: no shutdown hooks, no release of idempotency keys. Waits (bounded) for the exit. */
  readonly kill9: Effect.Effect<void, ChildProcessError>
  /**
   * A new process on the same port and environment (after `kill9`), ready when this succeeds.
   * `env` is merged over the first start's environment (e.g. to let the completer run).
   */
  readonly restart: (env?: Readonly<Record<string, string>>) => Effect.Effect<void, ChildProcessError>
}

/**
 * Starts the server (scoped): ready when `/health/live` answers; at scope end SIGTERM, then
 * SIGKILL if it has not exited within 5 s.
 */
export const startServerProcess = (options: ServerProcessOptions) =>
  Effect.gen(function* () {
    const baseUrl = `http://127.0.0.1:${options.port}`
    const managed = yield* startManagedProcess({
      label: "the server",
      script: "packages/server/src/main.ts",
      // METRICS_PORT 0: servers of parallel test files must not share the operators' port.
      env: { METRICS_PORT: "0", ...options.env, PORT: String(options.port) },
      outputKept_chars,
      readyUrl: `${baseUrl}/health/live`,
      startTimeout_ms
    })
    const server: ServerProcess = {
      baseUrl,
      port: options.port,
      pid: managed.pid,
      output: managed.output,
      awaitOutput: managed.awaitOutput,
      kill9: managed.kill9,
      restart: managed.restart
    }
    return server
  })
