import { Effect, type Scope } from "effect"
import type { SqlClient } from "effect/sql"
import { type ApiProcess, apiEnvironment, startApi } from "./ApiProcess.ts"
import { createMerchant, type ScenarioMerchant } from "./Evidence.ts"
import { type Answer, call, type CallOptions } from "./Http.ts"
import type { Narrator } from "./Narrator.ts"
import type { ScenarioStack } from "./Stack.ts"

/** What a scenario is given: its stack (own database and prefixes), a narrator, and helpers bound to both. */
export interface ScenarioContext {
  readonly stack: ScenarioStack
  readonly say: Narrator
  /** Starts the real API process on the scenario's database (scoped); `env` overrides its settings. */
  readonly startApi: (name: string, env?: Readonly<Record<string, string>>) => Effect.Effect<ApiProcess, unknown, Scope.Scope>
  /** Starts a standalone outbox publisher (`packages/outbox/src/main.ts`) on the scenario's database and topic. */
  readonly startPublisher: (name: string, env?: Readonly<Record<string, string>>) => Effect.Effect<ApiProcess, unknown, Scope.Scope>
  readonly merchant: (name: string) => Effect.Effect<ScenarioMerchant, unknown, SqlClient.SqlClient>
  readonly post: (api: ApiProcess, m: ScenarioMerchant, path: string, key: string, json?: unknown, timeout_ms?: number) => Effect.Effect<Answer, unknown>
  readonly get: (api: ApiProcess, m: ScenarioMerchant, path: string) => Effect.Effect<Answer, unknown>
}

export type ScenarioRequirements = Scope.Scope | SqlClient.SqlClient

export interface Scenario {
  readonly name: string
  /** One line for `--list`. */
  readonly summary: string
  /** Run by the test suite (packages/scenarios/test): a few seconds each, no throwaway broker, and passing. */
  readonly fast: boolean
  readonly run: (ctx: ScenarioContext) => Effect.Effect<void, unknown, ScenarioRequirements>
}

export const makeContext = (stack: ScenarioStack, say: Narrator): ScenarioContext => ({
  stack,
  say,
  startApi: (name, env = {}) =>
    Effect.gen(function* () {
      const api = yield* startApi(name, apiEnvironment(stack, env))
      yield* say.note(`API ${name} started: pid ${api.pid()}, ${api.baseUrl}, database ${stack.database}`)
      return api
    }),
  startPublisher: (name, env = {}) =>
    Effect.gen(function* () {
      const publisher = yield* startApi(name, apiEnvironment(stack, env), "publisher")
      yield* say.note(`publisher ${name} started: pid ${publisher.pid()}`)
      return publisher
    }),
  merchant: (name) => createMerchant(name),
  post: (api, m, path, key, json, timeout_ms) => {
    const options: CallOptions = { apiKey: m.apiKey, idempotencyKey: key, ...(json === undefined ? {} : { json }), ...(timeout_ms === undefined ? {} : { timeout_ms }) }
    return call(api.baseUrl, "POST", path, options)
  },
  get: (api, m, path) => call(api.baseUrl, "GET", path, { apiKey: m.apiKey })
})

export const newKey = (label: string): string => `${label}-${crypto.randomUUID()}`

export const paymentBody = (amount_minor: number, currency = "USD", payment_method = "pm_card_visa") => ({
  amount: amount_minor,
  currency,
  payment_method
})
