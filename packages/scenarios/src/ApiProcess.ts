import { freePort, type ManagedProcess, startManagedProcess } from "@pay/testkit/ChildProcess"
import { Effect } from "effect"
import type { ScenarioStack } from "./Stack.ts"

// The launch, output tail, signals and readiness probe live in `@pay/testkit/ChildProcess`.

const outputKept_chars = 128 * 1024
const startTimeout_ms = 45_000

/**
 * `node packages/server/src/main.ts`, the way an operator runs it, on the scenario's database and
 * prefixes. Only this child's pid is ever signalled (kill -9, SIGSTOP/SIGCONT, SIGTERM).
 */
export interface ApiProcess extends ManagedProcess {
  readonly name: string
  readonly baseUrl: string
  /** Where this process serves its Prometheus metrics. */
  readonly metricsUrl: string
}

/** What runs: the API server (`PORT`, ready on /health/live) or a standalone outbox publisher (`METRICS_PORT`, ready on /metrics). */
export type ProcessKind = "api" | "publisher"

const kinds = {
  api: { script: "packages/server/src/main.ts", portVariable: "PORT", readyPath: "/health/live" },
  publisher: { script: "packages/outbox/src/main.ts", portVariable: "METRICS_PORT", readyPath: "/metrics" }
} as const

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

/** Starts an API (or publisher) process (scoped: SIGCONT, SIGTERM, then SIGKILL, when the scope closes). */
export const startApi = (name: string, env: Readonly<Record<string, string>>, kind: ProcessKind = "api") =>
  Effect.gen(function* () {
    const port = yield* freePort
    const baseUrl = `http://127.0.0.1:${port}`
    // The server serves /metrics on a listener of its own (METRICS_PORT, default 9464): each
    // process gets a free one, or two instances (and other tests' servers) would collide.
    const metricsPort = kind === "api" ? yield* freePort : port
    const managed = yield* startManagedProcess({
      label: name,
      script: kinds[kind].script,
      env: { METRICS_PORT: String(metricsPort), ...env, [kinds[kind].portVariable]: String(port) },
      outputKept_chars,
      readyUrl: `${baseUrl}${kinds[kind].readyPath}`,
      startTimeout_ms
    })
    const api: ApiProcess = { ...managed, name, baseUrl, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` }
    return api
  })
