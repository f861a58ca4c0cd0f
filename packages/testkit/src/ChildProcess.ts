import { type ChildProcess as NodeChild, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"
import { pickFreePort } from "./FreePort.ts"

/**
 * One of our own entry points (`node packages/<x>/src/main.ts`) as a child process, the way an
 * operator runs it: launched with its environment, its output's tail kept for failure messages,
 * signalled by its own pid and nothing else, stopped when the scope closes. Used by the server's
 * process tests (`packages/server/test/support/ServerProcess.ts`) and the drills
 * (`packages/scenarios/src/ApiProcess.ts`).
 */

const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url))

/** A graceful shutdown (SIGTERM) gets this long before SIGKILL; SIGKILL gets as long to take. */
const stopTimeout_ms = 5_000
/** Every readiness probe is cut off after this: a request sent while the process starts can hang. */
const probeTimeout_ms = 1_000
const probeInterval_ms = 100
/** How much of the output's tail a failure message quotes. */
const quotedOutput_chars = 4_000

export class ChildProcessError extends Schema.TaggedError<ChildProcessError>()("ChildProcessError", {
  message: Schema.String
}) {}

/** A free loopback port for a process started next ({@link pickFreePort}: below the kernel's ephemeral range). */
export const freePort = Effect.tryPromise({
  try: pickFreePort,
  catch: (error) => new ChildProcessError({ message: `no free port: ${error instanceof Error ? error.message : String(error)}` })
})

export interface ChildExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface LaunchOptions {
  /** Repository-relative script run by this Node (`process.execPath`), e.g. `packages/server/src/main.ts`. */
  readonly script: string
  /** Merged over the parent's environment. */
  readonly env: Readonly<Record<string, string>>
  /** The last characters of stdout + stderr kept (servers log every request). */
  readonly outputKept_chars: number
  /** Names the process in failure messages ("the server", "api-a"). */
  readonly label: string
}

/** One launched process (one pid): never relaunched; see {@link startManagedProcess} for restarts. */
export interface Child {
  readonly label: string
  readonly pid: number
  /** The tail of stdout + stderr. */
  readonly output: () => string
  readonly running: () => boolean
  /** How it ended; undefined while it runs. */
  readonly exit: () => ChildExit | undefined
  /**
   * A barrier on the output: succeeds once a line containing every one of `fragments` has been
   * printed (before or after the call); fails after `timeout_ms` naming what it waited for.
   */
  readonly awaitOutput: (fragments: ReadonlyArray<string>, timeout_ms: number) => Effect.Effect<void, ChildProcessError>
  /** Waits for the exit, at most `timeout_ms`; true when it exited. */
  readonly exitedWithin: (timeout_ms: number) => Effect.Effect<boolean>
  /** Sends `name` to this pid, only while it runs (a recycled pid is never signalled). */
  readonly signal: (name: NodeJS.Signals) => Effect.Effect<void>
  /** `kill -9` and a bounded wait for the exit; fails if it outlives the wait. */
  readonly kill9: Effect.Effect<void, ChildProcessError>
  /** SIGCONT (a paused process cannot handle SIGTERM), SIGTERM, then SIGKILL after 5 s. */
  readonly stop: Effect.Effect<void>
}

interface Output {
  text: string
  partialLine: string
  /** Every complete line printed is offered to these; a waiter returning true is dropped. */
  readonly lineWaiters: Set<(line: string) => boolean>
}

const keepOutput = (child: NodeChild, output: Output, kept_chars: number) => {
  const keep = (chunk: Buffer) => {
    const text = chunk.toString("utf8")
    output.text = (output.text + text).slice(-kept_chars)
    // stdout and stderr interleave by chunk; a line split across chunks of the two is rare and
    // costs a waiter only its timeout, never a false match.
    const lines = (output.partialLine + text).split("\n")
    output.partialLine = (lines.pop() ?? "").slice(-kept_chars)
    for (const line of lines) for (const waiter of output.lineWaiters) if (waiter(line)) output.lineWaiters.delete(waiter)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
}

const awaitLine = (label: string, output: Output, fragments: ReadonlyArray<string>, timeout_ms: number) =>
  Effect.callback<void, ChildProcessError>((resume) => {
    const wanted = fragments.map((f) => JSON.stringify(f)).join(" and ")
    const matches = (line: string) => fragments.every((fragment) => line.includes(fragment))
    if (output.text.split("\n").some(matches)) return resume(Effect.void)
    const waiter = (line: string) => {
      if (!matches(line)) return false
      clearTimeout(timer)
      resume(Effect.void)
      return true
    }
    const timer = setTimeout(() => {
      output.lineWaiters.delete(waiter)
      resume(Effect.fail(new ChildProcessError({
        message: `${label} printed no line with ${wanted} within ${timeout_ms} ms; output (tail):\n${output.text.slice(-quotedOutput_chars)}`
      })))
    }, timeout_ms)
    output.lineWaiters.add(waiter)
    return Effect.sync(() => {
      clearTimeout(timer)
      output.lineWaiters.delete(waiter)
    })
  })

/** Launches `node <script>` (not scoped: the caller stops it; prefer {@link startManagedProcess}). */
export const launchChild = (options: LaunchOptions): Child => {
  const process_ = spawn(process.execPath, [options.script], {
    cwd: repositoryRoot,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const output: Output = { text: "", partialLine: "", lineWaiters: new Set() }
  keepOutput(process_, output, options.outputKept_chars)
  let exit: ChildExit | undefined
  const exited = new Promise<void>((resolve) => process_.once("exit", (code, signal) => {
    exit = { code, signal }
    resolve()
  }))
  const running = () => process_.exitCode === null && process_.signalCode === null
  // The timer is cleared when the exit comes first: left pending, it kept the caller's process
  // alive for the rest of `timeout_ms` (a scenario's verdict, then ~55 s of nothing).
  const exitedWithin = (timeout_ms: number) =>
    Effect.promise(() => {
      if (!running()) return Promise.resolve(true)
      let timer: ReturnType<typeof setTimeout> | undefined
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeout_ms)
      })
      return Promise.race([exited.then(() => true), timedOut]).finally(() => clearTimeout(timer))
    })
  const signal = (name: NodeJS.Signals) =>
    Effect.sync(() => {
      if (running()) process_.kill(name)
    })
  return {
    label: options.label,
    pid: process_.pid ?? 0,
    output: () => output.text,
    running,
    exit: () => exit,
    awaitOutput: (fragments, timeout_ms) => awaitLine(options.label, output, fragments, timeout_ms),
    exitedWithin,
    signal,
    kill9: Effect.gen(function* () {
      yield* signal("SIGKILL")
      if (!(yield* exitedWithin(stopTimeout_ms))) {
        return yield* new ChildProcessError({ message: `${options.label} (pid ${process_.pid}) still alive after SIGKILL` })
      }
    }),
    stop: Effect.gen(function* () {
      yield* signal("SIGCONT")
      yield* signal("SIGTERM")
      if (yield* exitedWithin(stopTimeout_ms)) return
      yield* signal("SIGKILL")
      yield* exitedWithin(stopTimeout_ms)
    })
  }
}

/**
 * True when `url` answers 200 within the probe's timeout (any failure is "not yet"). The catch
 * covers the body too: a timeout that fires while the body is read rejects `arrayBuffer`, which
 * would otherwise escape as a defect.
 */
export const answersOk = (url: string) =>
  Effect.promise(() =>
    fetch(url, { signal: AbortSignal.timeout(probeTimeout_ms) })
      .then(async (response) => {
        await response.arrayBuffer()
        return response.status === 200
      })
      .catch(() => false)
  )

/** Polls `readyUrl` until 200, the process dies, or `timeout_ms` is spent (then fails with the output's tail). */
export const awaitReady = (child: Child, readyUrl: string, timeout_ms: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout_ms
    while (Date.now() < deadline) {
      if (!child.running()) {
        return yield* new ChildProcessError({ message: `${child.label} exited during start-up:\n${child.output().slice(-quotedOutput_chars)}` })
      }
      if (yield* answersOk(readyUrl)) return
      yield* Effect.sleep(probeInterval_ms)
    }
    return yield* new ChildProcessError({
      message: `${child.label} did not answer ${readyUrl} within ${timeout_ms} ms:\n${child.output().slice(-quotedOutput_chars)}`
    })
  })

/** Polls the output until it holds `line`, the process dies, or `timeout_ms` is spent (then fails with the output's tail). */
export const awaitReadyLine = (child: Child, line: string, timeout_ms: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout_ms
    while (Date.now() < deadline) {
      if (!child.running()) {
        return yield* new ChildProcessError({ message: `${child.label} exited during start-up:\n${child.output().slice(-quotedOutput_chars)}` })
      }
      if (child.output().includes(line)) return
      yield* Effect.sleep(probeInterval_ms)
    }
    return yield* new ChildProcessError({
      message: `${child.label} did not log ${JSON.stringify(line)} within ${timeout_ms} ms:\n${child.output().slice(-quotedOutput_chars)}`
    })
  })

export interface ManagedProcessOptions extends LaunchOptions {
  /** Ready when this answers 200 (`/health/live`, `/metrics`); or, for a process without HTTP, ... */
  readonly readyUrl?: string
  /** ... ready once its output holds this line fragment (e.g. "consumer subscribed"). One of the two. */
  readonly readyLine?: string
  /** Start-up (migrations, Redis, Kafka) within this, or the start fails with the output's tail. */
  readonly startTimeout_ms: number
}

/** A process that can be killed and started again on the same ports: each start is a new {@link Child}. */
export interface ManagedProcess {
  /** The pid of the process running now (changes on `restart`). */
  readonly pid: () => number
  /** The tail of stdout + stderr of the current process. */
  readonly output: () => string
  readonly running: () => boolean
  /** See {@link Child.awaitOutput}; on the process current when it runs. */
  readonly awaitOutput: (fragments: ReadonlyArray<string>, timeout_ms: number) => Effect.Effect<void, ChildProcessError>
  /** Resolves when the current process exits (a crash it caused itself included); true when it did. */
  readonly awaitExit: (timeout_ms: number) => Effect.Effect<boolean>
  /** `kill -9`: no shutdown hooks. Waits (bounded) for the exit. */
  readonly kill9: Effect.Effect<void, ChildProcessError>
  readonly pause: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
  /**
   * A new process with the same options (after `kill9` or a crash), ready when this succeeds.
   * `env` is merged over the first start's environment (e.g. to let the completer run).
   */
  readonly restart: (env?: Readonly<Record<string, string>>) => Effect.Effect<void, ChildProcessError>
}

const launchReady = (options: ManagedProcessOptions) =>
  Effect.gen(function* () {
    const child = launchChild(options)
    // onError, not tapError: an interrupted start (a test's timeout) stops the child too.
    const ready = options.readyLine !== undefined
      ? awaitReadyLine(child, options.readyLine, options.startTimeout_ms)
      : awaitReady(child, options.readyUrl ?? "", options.startTimeout_ms)
    yield* ready.pipe(Effect.onError(() => child.stop))
    return child
  })

/** Starts `node <script>` (scoped): ready when `readyUrl` answers; at scope end SIGTERM, then SIGKILL after 5 s. */
export const startManagedProcess = (options: ManagedProcessOptions) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      let current = yield* launchReady(options)
      const managed: ManagedProcess = {
        pid: () => current.pid,
        output: () => current.output(),
        running: () => current.running(),
        awaitOutput: (fragments, timeout_ms) => Effect.suspend(() => current.awaitOutput(fragments, timeout_ms)),
        awaitExit: (timeout_ms) => Effect.suspend(() => current.exitedWithin(timeout_ms)),
        kill9: Effect.suspend(() => current.kill9),
        pause: Effect.suspend(() => current.signal("SIGSTOP")),
        resume: Effect.suspend(() => current.signal("SIGCONT")),
        restart: (env = {}) =>
          Effect.gen(function* () {
            if (current.running()) return yield* new ChildProcessError({ message: `restart: ${options.label} is still running; kill it first` })
            current = yield* launchReady({ ...options, env: { ...options.env, ...env } })
          })
      }
      return { managed, current: () => current }
    }),
    ({ current }) => current().stop
  ).pipe(Effect.map(({ managed }) => managed))
