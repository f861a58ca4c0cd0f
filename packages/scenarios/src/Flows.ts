import { Effect } from "effect"
import type { ApiProcess } from "./ApiProcess.ts"
import { currencySums, ledgerVerify, paymentFacts } from "./Evidence.ts"
import type { ScenarioMerchant } from "./Evidence.ts"
import { type Answer, brief, field } from "./Http.ts"
import { ScenarioFailed } from "./Narrator.ts"
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
 * performed at the acquirer. A payment that is not SETTLED moved none in our books; the bank may
 * already have performed its capture (at most one: the capture comes before our transaction, under
 * a stable reference), which the same key or the completer turns into the one settlement.
 */
export const checkMovedOnce = (ctx: ScenarioContext, paymentId: string) =>
  Effect.gen(function* () {
    const facts = yield* paymentFacts(paymentId)
    yield* ctx.say.evidence(`payment ${paymentId}`, facts)
    if (facts === undefined) return yield* ctx.say.expect(false, `payment ${paymentId} exists`)
    if (facts.status === "SETTLED") {
      yield* ctx.say.expect(facts.settlements === 1 && facts.postings === 1 && facts.captures_performed === 1, "SETTLED: 1 settlement row, 1 ledger posting, 1 capture performed", facts)
    } else {
      yield* ctx.say.expect(facts.settlements === 0 && facts.postings === 0 && facts.captures_performed <= 1,
        `${facts.status}: no settlement row, no ledger posting (captures performed at the bank: ${facts.captures_performed}, at most 1)`, facts)
    }
    return facts
  })

export const describe = (answers: ReadonlyArray<Answer>) => {
  const tally = new Map<string, number>()
  for (const answer of answers) {
    const key = brief(answer).replace(/ pay_\w+$/, "")
    tally.set(key, (tally.get(key) ?? 0) + 1)
  }
  return [...tally.entries()].map(([k, n]) => `${n} × ${k}`).join(", ")
}

/**
 * A client that keeps its Idempotency-Key: repeats the call while the answer is "not decided yet"
 * (a socket error, 409 idempotency_key_in_use, any 503) and returns the first decided answer,
 * with what it met on the way. Bounded: `attempts` × `interval_ms`.
 */
export const retryUntilDecided = (
  ctx: ScenarioContext,
  api: ApiProcess,
  m: ScenarioMerchant,
  path: string,
  key: string,
  json?: unknown,
  bounds: { readonly attempts: number; readonly interval_ms: number } = { attempts: 120, interval_ms: 250 }
) =>
  Effect.gen(function* () {
    const undecided: Array<string> = []
    for (let attempt = 1; attempt <= bounds.attempts; attempt++) {
      const result = yield* Effect.result(ctx.post(api, m, path, key, json))
      if (result._tag === "Success") {
        const answer = result.success
        const pending = answer.status === 503 || (answer.status === 409 && field(answer, "code") === "idempotency_key_in_use")
        if (!pending) return { answer, undecided }
        undecided.push(`${answer.status} ${field(answer, "code")}`)
      } else {
        undecided.push("no answer (connection failed)")
      }
      yield* Effect.sleep(bounds.interval_ms)
    }
    return yield* new ScenarioFailed({ reason: `${path} with key ${key} not decided within ${bounds.attempts} attempts: ${undecided.slice(-5).join(", ")}` })
  })

export const tally = (items: ReadonlyArray<string>) => {
  const counts = new Map<string, number>()
  for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1)
  return [...counts.entries()].map(([k, n]) => `${n} × ${k}`).join(", ") || "(none)"
}
