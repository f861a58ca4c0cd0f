import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"

const repositoryRoot = fileURLToPath(new URL("../../../../", import.meta.url))
const serverMain = "packages/server/src/main.ts"

/** The last bytes of the server's output kept for failure messages (it logs every request). */
const outputKept_chars = 64 * 1024
/** Start-up (migrations, Redis, Kafka) within this, or the test fails with the server's output. */
const startTimeout_ms = 30_000
/** A graceful shutdown (SIGTERM) gets this long before SIGKILL. */
const stopTimeout_ms = 5_000
/** Every probe of `/health/live` is cut off after this: a request sent while the process starts can hang. */
const probeTimeout_ms = 1_000
const probeInterval_ms = 100

export class ServerProcessError extends Schema.TaggedError<ServerProcessError>()("ServerProcessError", {
  message: Schema.String
}) {}

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
  readonly awaitOutput: (fragments: ReadonlyArray<string>, timeout_ms: number) => Effect.Effect<void, ServerProcessError>
  /** `kill -9`: no shutdown hooks, no release of idempotency keys. Waits (bounded) for the exit. */
  readonly kill9: Effect.Effect<void, ServerProcessError>
  /**
   * A new process on the same port and environment (after `kill9`), ready when this succeeds.
   * `env` is merged over the first start's environment (e.g. to let the completer run).
   */
  readonly restart: (env?: Readonly<Record<string, string>>) => Effect.Effect<void, ServerProcessError>
}

/** A port the kernel just handed out on loopback; free again when we close it. */
export const freePort = Effect.callback<number, ServerProcessError>((resume) => {
  const probe = createServer()
  probe.once("error", (error) => resume(Effect.fail(new ServerProcessError({ message: `no free port: ${error.message}` }))))
  probe.listen(0, "127.0.0.1", () => {
    const address = probe.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    probe.close(() => resume(port > 0 ? Effect.succeed(port) : Effect.fail(new ServerProcessError({ message: "no port assigned" }))))
  })
})

interface Running {
  readonly child: ChildProcess
  readonly exited: Promise<void>
  output: string
  /** Every complete line printed so far is offered to these (then they are dropped once matched). */
  readonly lineWaiters: Set<(line: string) => boolean>
  partialLine: string
}

const isRunning = (running: Running) => running.child.exitCode === null && running.child.signalCode === null

const launch = (options: ServerProcessOptions): Running => {
  const child = spawn(process.execPath, [serverMain], {
    cwd: repositoryRoot,
    // METRICS_PORT 0: servers of parallel test files must not share the operators' port.
    env: { ...process.env, METRICS_PORT: "0", ...options.env, PORT: String(options.port) },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const running: Running = {
    child,
    exited: new Promise<void>((resolve) => child.once("exit", () => resolve())),
    output: "",
    lineWaiters: new Set(),
    partialLine: ""
  }
  const keep = (chunk: Buffer) => {
    const text = chunk.toString("utf8")
    running.output = (running.output + text).slice(-outputKept_chars)
    // stdout and stderr interleave by chunk; a line split across chunks of the two is rare and
    // costs a waiter only its timeout, never a false match.
    const lines = (running.partialLine + text).split("\n")
    running.partialLine = (lines.pop() ?? "").slice(-outputKept_chars)
    for (const line of lines) for (const waiter of running.lineWaiters) if (waiter(line)) running.lineWaiters.delete(waiter)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  return running
}

/** Waits for the exit, at most `timeout_ms`; true when it exited. */
const exitedWithin = (running: Running, timeout_ms: number) =>
  Effect.promise(() =>
    isRunning(running)
      ? Promise.race([running.exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeout_ms))])
      : Promise.resolve(true)
  )

const signal = (running: Running, name: NodeJS.Signals) =>
  Effect.sync(() => {
    // Only this child's pid, and only while it runs: a recycled pid is never signalled.
    if (isRunning(running)) running.child.kill(name)
  })

const probeLive = (baseUrl: string) =>
  Effect.promise(() =>
    fetch(`${baseUrl}/health/live`, { signal: AbortSignal.timeout(probeTimeout_ms) }).then(
      async (response) => {
        await response.arrayBuffer()
        return response.status === 200
      },
      () => false
    )
  )

/** Polls `/health/live` until 200, the process dies, or the start-up budget is spent. */
const waitUntilLive = (running: Running, baseUrl: string) =>
  Effect.gen(function* () {
    const deadline = Date.now() + startTimeout_ms
    while (Date.now() < deadline) {
      if (!isRunning(running)) {
        return yield* new ServerProcessError({ message: `the server exited during start-up:\n${running.output.slice(-4_000)}` })
      }
      if (yield* probeLive(baseUrl)) return
      yield* Effect.sleep(probeInterval_ms)
    }
    return yield* new ServerProcessError({
      message: `the server did not answer /health/live within ${startTimeout_ms} ms:\n${running.output.slice(-4_000)}`
    })
  })

/** See {@link ServerProcess.awaitOutput}. */
const awaitOutput = (running: Running, fragments: ReadonlyArray<string>, timeout_ms: number) =>
  Effect.callback<void, ServerProcessError>((resume) => {
    const wanted = fragments.map((f) => JSON.stringify(f)).join(" and ")
    const matches = (line: string) => fragments.every((fragment) => line.includes(fragment))
    if (running.output.split("\n").some(matches)) return resume(Effect.void)
    const waiter = (line: string) => {
      if (!matches(line)) return false
      clearTimeout(timer)
      resume(Effect.void)
      return true
    }
    const timer = setTimeout(() => {
      running.lineWaiters.delete(waiter)
      resume(Effect.fail(new ServerProcessError({
        message: `the server printed no line with ${wanted} within ${timeout_ms} ms; output (tail):\n${running.output.slice(-4_000)}`
      })))
    }, timeout_ms)
    running.lineWaiters.add(waiter)
    return Effect.sync(() => {
      clearTimeout(timer)
      running.lineWaiters.delete(waiter)
    })
  })

const stop = (running: Running) =>
  Effect.gen(function* () {
    yield* signal(running, "SIGTERM")
    if (yield* exitedWithin(running, stopTimeout_ms)) return
    yield* signal(running, "SIGKILL")
    yield* exitedWithin(running, stopTimeout_ms)
  })

/**
 * Starts the server (scoped): ready when `/health/live` answers; at scope end SIGTERM, then
 * SIGKILL if it has not exited within 5 s.
 */
export const startServerProcess = (options: ServerProcessOptions) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const baseUrl = `http://127.0.0.1:${options.port}`
      let current = launch(options)
      const startCurrent = waitUntilLive(current, baseUrl).pipe(Effect.tapError(() => stop(current)))
      yield* startCurrent

      const kill9 = Effect.gen(function* () {
        yield* signal(current, "SIGKILL")
        if (!(yield* exitedWithin(current, stopTimeout_ms))) {
          return yield* new ServerProcessError({ message: `server pid ${current.child.pid} still alive after SIGKILL` })
        }
      })

      const restart = (env: Readonly<Record<string, string>> = {}) => Effect.gen(function* () {
        if (isRunning(current)) return yield* new ServerProcessError({ message: "restart: the server is still running; kill it first" })
        current = launch({ ...options, env: { ...options.env, ...env } })
        yield* waitUntilLive(current, baseUrl).pipe(Effect.tapError(() => stop(current)))
      })

      const server: ServerProcess = {
        baseUrl,
        port: options.port,
        pid: () => current.child.pid ?? 0,
        output: () => current.output,
        awaitOutput: (fragments, timeout_ms) => awaitOutput(current, fragments, timeout_ms),
        kill9,
        restart
      }
      return { server, current: () => current }
    }),
    ({ current }) => stop(current())
  ).pipe(Effect.map(({ server }) => server))
