import { assert } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { type Answer, call, type HttpCallError, jsonOf, type RequestOptions, stringField } from "./Http.ts"
import { type TestMerchant, TestServer } from "./TestServer.ts"

export { type Answer, jsonOf, stringField, type TestMerchant }

/**
 * The payments API as the settlement tests call it: over real HTTP, either to the app served
 * in-process (fault Layers swapped in) or to the real server process.
 */
export class Api extends Context.Service<Api, {
  readonly baseUrl: string
  readonly request: (method: string, path: string, options?: RequestOptions) => Effect.Effect<Answer, HttpCallError>
}>()("server-test/Api") {
  static readonly at = (baseUrl: string) => Api.of({ baseUrl, request: (method, path, options) => call(baseUrl, method, path, options) })

  /** The real server process of `testServerLayer` (packages/server/test/support). */
  static readonly fromTestServer = Layer.effect(
    Api,
    Effect.gen(function* () {
      const server = yield* TestServer
      return Api.of({ baseUrl: server.process.baseUrl, request: server.request })
    })
  )
}

export const newKey = (label: string): string => `${label}-${crypto.randomUUID()}`

export const describeAnswer = (answer: Answer) => `${answer.status} ${answer.text.slice(0, 400)}`

export const replayed = (answer: Answer) => answer.headers.get("idempotent-replayed") === "true"

export const codeOf = (answer: Answer) => jsonOf(answer)["code"]

export const post = (m: TestMerchant, path: string, key: string, options: RequestOptions = {}) =>
  Effect.gen(function* () {
    const api = yield* Api
    return yield* api.request("POST", path, { apiKey: m.apiKey, idempotencyKey: key, ...options })
  })

export const get = (m: TestMerchant, path: string) =>
  Effect.gen(function* () {
    const api = yield* Api
    return yield* api.request("GET", path, { apiKey: m.apiKey })
  })

export const settle = (m: TestMerchant, paymentId: string, key: string, options: RequestOptions = {}) =>
  post(m, `/v1/payments/${paymentId}/settle`, key, options)

/** Creates and authorizes a payment over the API; its id. */
export const authorizedPayment = (m: TestMerchant, amount_minor: bigint, currency: string) =>
  Effect.gen(function* () {
    const created = yield* post(m, "/v1/payments", newKey("create"), {
      json: { amount: Number(amount_minor), currency, payment_method: "pm_card_visa" }
    })
    assert.strictEqual(created.status, 201, describeAnswer(created))
    const id = stringField(created, "id")
    const authorized = yield* post(m, `/v1/payments/${id}/authorize`, newKey("authorize"))
    assert.strictEqual(authorized.status, 200, describeAnswer(authorized))
    assert.strictEqual(jsonOf(authorized)["status"], "AUTHORIZED")
    return id
  })

export const paymentStatus = (m: TestMerchant, paymentId: string) =>
  Effect.gen(function* () {
    const answer = yield* get(m, `/v1/payments/${paymentId}`)
    assert.strictEqual(answer.status, 200, describeAnswer(answer))
    return stringField(answer, "status")
  })

/** `GET /v1/balance` → `available`, as `[{ currency, amount }]`. */
export const payableBalance = (m: TestMerchant) =>
  Effect.gen(function* () {
    const answer = yield* get(m, "/v1/balance")
    assert.strictEqual(answer.status, 200, describeAnswer(answer))
    return jsonOf(answer)["available"]
  })

/**
 * A client retrying with the same key until it gets an answer that is not "in progress": a 409
 * `idempotency_key_in_use` (an earlier run still holds, or held until it died, the lease) means
 * "later". Bounded: `attempts` × `interval_ms`.
 */
export const settleUntilDecided = (
  m: TestMerchant,
  paymentId: string,
  key: string,
  bounds: { readonly attempts: number; readonly interval_ms: number }
) =>
  Effect.gen(function* () {
    const inUse: Array<number> = []
    for (let attempt = 1; attempt <= bounds.attempts; attempt++) {
      const answer = yield* settle(m, paymentId, key)
      if (!(answer.status === 409 && codeOf(answer) === "idempotency_key_in_use")) return { answer, inUseAnswers: inUse.length }
      inUse.push(attempt)
      yield* Effect.sleep(bounds.interval_ms)
    }
    return assert.fail(`settle ${paymentId} with key ${key} still in use after ${bounds.attempts} attempts`)
  })
