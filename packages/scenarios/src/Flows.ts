import { Effect } from "effect"
import type { ApiProcess } from "./ApiProcess.ts"
import { currencySums, ledgerVerify, paymentFacts } from "./Evidence.ts"
import type { ScenarioMerchant } from "./Evidence.ts"
import { brief, field } from "./Http.ts"
import { newKey, paymentBody, type ScenarioContext } from "./Scenario.ts"

/** Creates and authorizes a payment over HTTP (each step checked); its id. */
export const authorizedPayment = (ctx: ScenarioContext, api: ApiProcess, m: ScenarioMerchant, amount_minor: number, currency = "USD") =>
  Effect.gen(function* () {
    const created = yield* ctx.post(api, m, "/v1/payments", newKey("create"), paymentBody(amount_minor, currency))
    yield* ctx.say.expect(created.status === 201, "payment created (201)", created.text)
    const id = field(created, "id")
    const authorized = yield* ctx.post(api, m, `/v1/payments/${id}/authorize`, newKey("authorize"))
    yield* ctx.say.expect(authorized.status === 200 && field(authorized, "status") === "AUTHORIZED", `payment ${id} authorized`, authorized.text)
    return id
  })

/** The closing audit every scenario ends with: `ledger_verify()` empty and every currency summing to zero. */
export const checkBooks = (ctx: ScenarioContext) =>
  Effect.gen(function* () {
    const problems = yield* ledgerVerify
    yield* ctx.say.evidence("SELECT * FROM ledger_verify()", problems.length === 0 ? "(no rows)" : problems)
    yield* ctx.say.expect(problems.length === 0, "ledger_verify() is empty", problems)
    const sums = yield* currencySums
    yield* ctx.say.evidence("debits - credits per currency", sums.length === 0 ? "(no entries)" : sums.map((s) => `${s.currency} ${s.debit_minus_credit_minor} over ${s.entries} entries`))
    yield* ctx.say.expect(sums.every((s) => s.debit_minus_credit_minor === "0"), "every currency sums to zero", sums)
  })

/**
 * A SETTLED payment moved money exactly once: one settlement row, one ledger posting, one capture
 * performed at the acquirer; a payment that is not SETTLED moved none.
 */
export const checkMovedOnce = (ctx: ScenarioContext, paymentId: string) =>
  Effect.gen(function* () {
    const facts = yield* paymentFacts(paymentId)
    yield* ctx.say.evidence(`payment ${paymentId}`, facts)
    if (facts === undefined) return yield* ctx.say.expect(false, `payment ${paymentId} exists`)
    const expected = facts.status === "SETTLED" ? 1 : 0
    yield* ctx.say.expect(
      facts.settlements === expected && facts.postings === expected && facts.captures_performed === expected,
      `${facts.status}: ${expected} settlement row, ${expected} ledger posting, ${expected} capture performed`,
      facts
    )
    return facts
  })

export const describe = (answers: ReadonlyArray<{ readonly status: number; readonly text: string; readonly replayed: boolean; readonly elapsed_ms: number }>) => {
  const tally = new Map<string, number>()
  for (const answer of answers) {
    const key = brief(answer).replace(/ pay_\w+$/, "")
    tally.set(key, (tally.get(key) ?? 0) + 1)
  }
  return [...tally.entries()].map(([k, n]) => `${n} × ${k}`).join(", ")
}
