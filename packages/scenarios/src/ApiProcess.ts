import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"
import type { ScenarioStack } from "./Stack.ts"

const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url))
const outputKept_chars = 128 * 1024
const startTimeout_ms = 45_000
const stopTimeout_ms = 5_000
const probeTimeout_ms = 1_000

export class ApiProcessError extends Schema.TaggedError<ApiProcessError>()("ApiProcessError", { message: Schema.String }) {}

/**
 * `node packages/server/src/main.ts`, the way an operator runs it, on the scenario's database and
 * prefixes. Only this child's pid is ever signalled (kill -9, SIGSTOP/SIGCONT, SIGTERM).
 */
export interface ApiProcess {
  readonly name: string
  readonly baseUrl: string
  /** Where this process serves its Prometheus metrics. */
  readonly metricsUrl: string
  readonly pid: () => number
  readonly output: () => string
  readonly running: () => boolean
  /** Waits (bounded) for a line of output containing every fragment. */
  readonly awaitOutput: (fragments: ReadonlyArray<string>, timeout_ms: number) => Effect.Effect<void, ApiProcessError>
  readonly kill9: Effect.Effect<void, ApiProcessError>
  readonly pause: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
  /** A new process on the same port (after kill9), ready when this succeeds. */
  readonly restart: (env?: Readonly<Record<string, string>>) => Effect.Effect<void, ApiProcessError>
  /** Resolves when the current process exits (a crash it caused itself included). */
  readonly awaitExit: (timeout_ms: number) => Effect.Effect<boolean>
}

export const freePort = Effect.callback<number, ApiProcessError>((resume) => {
  const probe = createServer()
  probe.once("error", (error) => resume(Effect.fail(new ApiProcessError({ message: `no free port: ${error.message}` }))))
  probe.listen(0, "127.0.0.1", () => {
    const address = probe.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    probe.close(() => resume(port > 0 ? Effect.succeed(port) : Effect.fail(new ApiProcessError({ message: "no port assigned" }))))
  })
})

interface Running {
  readonly child: ChildProcess
  readonly exited: Promise<void>
  output: string
}

const isRunning = (running: Running) => running.child.exitCode === null && running.child.signalCode === null

/**
 * What runs: the API server (`PORT`, ready on /health/live), a standalone outbox publisher
 * (`METRICS_PORT`, ready on /metrics), the consumers (ready once a group subscription logged
 * "consumer subscribed") or the webhook sender (ready once it logged "webhook sender started").
 */
export type ProcessKind = "api" | "publisher" | "consumers" | "webhooks"

type Readiness = { readonly path: string } | { readonly line: string }

const kinds: Record<ProcessKind, { readonly script: string; readonly portVariable: string; readonly ready: Readiness }> = {
  api: { script: "packages/server/src/main.ts", portVariable: "PORT", ready: { path: "/health/live" } },
  publisher: { script: "packages/outbox/src/main.ts", portVariable: "METRICS_PORT", ready: { path: "/metrics" } },
  consumers: { script: "packages/consumers/src/main.ts", portVariable: "METRICS_PORT", ready: { line: "consumer subscribed" } },
  webhooks: { script: "packages/webhooks/src/main.ts", portVariable: "METRICS_PORT", ready: { line: "webhook sender started" } }
}

const launch = (kind: ProcessKind, env: Readonly<Record<string, string>>): Running => {
  const child = spawn(process.execPath, [kinds[kind].script], {
    cwd: repositoryRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const running: Running = { child, exited: new Promise<void>((resolve) => child.once("exit", () => resolve())), output: "" }
  const keep = (chunk: Buffer) => {
    running.output = (running.output + chunk.toString("utf8")).slice(-outputKept_chars)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  return running
}

const exitedWithin = (running: Running, timeout_ms: number) =>
  Effect.promise(() =>
    isRunning(running)
      ? Promise.race([running.exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeout_ms))])
      : Promise.resolve(true)
  )

const signal = (running: Running, name: NodeJS.Signals) =>
  Effect.sync(() => {
    if (isRunning(running)) running.child.kill(name)
  })

const live = (url: string) =>
  Effect.promise(() =>
    fetch(url, { signal: AbortSignal.timeout(probeTimeout_ms) }).then(
      async (response) => {
        await response.arrayBuffer()
        return response.status === 200
      },
      () => false
    )
  )

const isReady = (running: Running, baseUrl: string, ready: Readiness) =>
  "path" in ready ? live(`${baseUrl}${ready.path}`) : Effect.sync(() => running.output.includes(ready.line))

const waitUntilLive = (running: Running, baseUrl: string, ready: Readiness) =>
  Effect.gen(function* () {
    const deadline = Date.now() + startTimeout_ms
    while (Date.now() < deadline) {
      if (!isRunning(running)) return yield* new ApiProcessError({ message: `the process exited during start-up:\n${running.output.slice(-3_000)}` })
      if (yield* isReady(running, baseUrl, ready)) return
      yield* Effect.sleep(100)
    }
    return yield* new ApiProcessError({ message: `the process was not ready (${JSON.stringify(ready)}) within ${startTimeout_ms} ms:\n${running.output.slice(-3_000)}` })
  })

const stop = (running: Running) =>
  Effect.gen(function* () {
    yield* signal(running, "SIGCONT")
    yield* signal(running, "SIGTERM")
    if (yield* exitedWithin(running, stopTimeout_ms)) return
    yield* signal(running, "SIGKILL")
    yield* exitedWithin(running, stopTimeout_ms)
  })

const awaitOutput = (current: () => Running, fragments: ReadonlyArray<string>, timeout_ms: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout_ms
    const matches = (line: string) => fragments.every((fragment) => line.includes(fragment))
    while (Date.now() < deadline) {
      if (current().output.split("\n").some(matches)) return
      yield* Effect.sleep(25)
    }
    return yield* new ApiProcessError({ message: `no output line with ${fragments.join(" and ")} within ${timeout_ms} ms` })
  })

/** The server's environment for this scenario: its database (app role; the owner migrates), prefixes, brokers. */
export const apiEnvironment = (stack: ScenarioStack, overrides: Readonly<Record<string, string>> = {}): Record<string, string> => ({
  DATABASE_URL: stack.appUrl,
  MIGRATION_DATABASE_URL: stack.ownerUrl,
  DATABASE_POOL_SIZE: "8",
  REDIS_URL: stack.redisUrl,
  REDIS_KEY_PREFIX: stack.redisKeyPrefix,
  KAFKA_BROKERS: stack.kafkaBrokers,
  KAFKA_TOPIC_PREFIX: stack.topicPrefix,
  ...overrides
})

/** Starts an API (or publisher) process (scoped: SIGTERM, then SIGKILL, when the scope closes). */
export const startApi = (name: string, env: Readonly<Record<string, string>>, kind: ProcessKind = "api") =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const port = yield* freePort
      const baseUrl = `http://127.0.0.1:${port}`
      // The server serves /metrics on a listener of its own (METRICS_PORT, default 9464): each
      // process gets a free one, or two instances (and other tests' servers) would collide.
      const metricsPort = kind === "api" ? yield* freePort : port
      const firstEnv = { METRICS_PORT: String(metricsPort), ...env, [kinds[kind].portVariable]: String(port) }
      let current = launch(kind, firstEnv)
      yield* waitUntilLive(current, baseUrl, kinds[kind].ready).pipe(Effect.tapError(() => stop(current)))
      const api: ApiProcess = {
        name,
        baseUrl,
        metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
        pid: () => current.child.pid ?? 0,
        output: () => current.output,
        running: () => isRunning(current),
        awaitOutput: (fragments, timeout_ms) => awaitOutput(() => current, fragments, timeout_ms),
        awaitExit: (timeout_ms) => Effect.suspend(() => exitedWithin(current, timeout_ms)),
        kill9: Effect.gen(function* () {
          yield* signal(current, "SIGKILL")
          if (!(yield* exitedWithin(current, stopTimeout_ms))) return yield* new ApiProcessError({ message: `pid ${api.pid()} alive after SIGKILL` })
        }),
        pause: Effect.suspend(() => signal(current, "SIGSTOP")),
        resume: Effect.suspend(() => signal(current, "SIGCONT")),
        restart: (extra = {}) =>
          Effect.gen(function* () {
            if (isRunning(current)) return yield* new ApiProcessError({ message: "restart: still running; kill it first" })
            current = launch(kind, { ...firstEnv, ...extra })
            yield* waitUntilLive(current, baseUrl, kinds[kind].ready).pipe(Effect.tapError(() => stop(current)))
          })
      }
      return { api, current: () => current }
    }),
    ({ current }) => stop(current())
  ).pipe(Effect.map(({ api }) => api))
