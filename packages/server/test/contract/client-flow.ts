// An integrator's code, written against the client generated from /openapi.json (openapi-fetch
// over the openapi-typescript types in ./generated): create → authorize → settle → list → balance,
// then the error handling a client needs (a second settle, an unknown payment, a reused key). It is
// compiled by the project's strict typecheck (comparing `error.code` with a value the document does
// not declare would not compile) and run by the contract test against the real server.
import createClient from "openapi-fetch"
import type { components, paths } from "./generated/openapi.ts"

type Problem = components["schemas"][keyof components["schemas"] & `${string}ProblemEncoded`]

export interface FlowResult {
  readonly paymentId: string
  readonly statuses: ReadonlyArray<string>
  readonly listed: number
  readonly balance: ReadonlyArray<{ readonly currency: string; readonly amount: number }>
  /** The `code` of each expected refusal, read through the generated types. */
  readonly refusals: ReadonlyArray<Problem["code"]>
}

const fail = (step: string, error: unknown): never => {
  throw new Error(`${step}: ${JSON.stringify(error)}`)
}

export const runClientFlow = async (baseUrl: string, apiKey: string, keyPrefix: string): Promise<FlowResult> => {
  const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${apiKey}` } })
  const created = await client.POST("/v1/payments", {
    params: { header: { "Idempotency-Key": `${keyPrefix}-create` } },
    body: { amount: 1050, currency: "EUR", payment_method: "pm_card_visa", description: "contract flow", metadata: { order: "1" } }
  })
  if (created.data === undefined) return fail("create", created.error)
  const id = created.data.id
  const authorized = await client.POST("/v1/payments/{id}/authorize", {
    params: { path: { id }, header: { "Idempotency-Key": `${keyPrefix}-authorize` } }
  })
  if (authorized.data === undefined) return fail("authorize", authorized.error)
  const settled = await client.POST("/v1/payments/{id}/settle", {
    params: { path: { id }, header: { "Idempotency-Key": `${keyPrefix}-settle` } },
    body: {}
  })
  if (settled.data === undefined) return fail("settle", settled.error)
  const list = await client.GET("/v1/payments", { params: { query: { limit: 10 } } })
  if (list.data === undefined) return fail("list", list.error)
  const balance = await client.GET("/v1/balance")
  if (balance.data === undefined) return fail("balance", balance.error)

  const refusals: Array<Problem["code"]> = []
  const settleAgain = await client.POST("/v1/payments/{id}/settle", {
    params: { path: { id }, header: { "Idempotency-Key": `${keyPrefix}-settle-again` } },
    body: {}
  })
  // The generated error type is the union of the documented problems: `code` is an enum.
  if (settleAgain.error !== undefined && settleAgain.error.code === "invalid_transition") refusals.push(settleAgain.error.code)
  const unknown = await client.GET("/v1/payments/{id}", { params: { path: { id: "pay_0000000000000000000000zz" } } })
  if (unknown.error !== undefined && unknown.error.code === "payment_not_found") refusals.push(unknown.error.code)
  const reused = await client.POST("/v1/payments", {
    params: { header: { "Idempotency-Key": `${keyPrefix}-create` } },
    body: { amount: 2000, currency: "EUR", payment_method: "pm_card_visa" }
  })
  if (reused.error !== undefined && reused.error.code === "idempotency_key_reused") refusals.push(reused.error.code)

  return {
    paymentId: id,
    statuses: [created.data.status, authorized.data.status, settled.data.status],
    listed: list.data.data.length,
    balance: balance.data.available,
    refusals
  }
}
