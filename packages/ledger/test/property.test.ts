import { assert, layer } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { SqlClient } from "effect/sql"
import fc from "fast-check"
import { Ledger } from "../src/Ledger.ts"
import { amount_minor_max, type Leg, limits, type PostingRequest } from "../src/Model.ts"
import {
  account,
  assertLedgerHealthy,
  countRows,
  LedgerTestLayer,
  layerOptions,
  negativeNoNegativeAccounts,
  trialBalance
} from "./support.ts"

// Properties: random batches of valid and invalid postings, checked against a model of the ledger
// kept in memory: each account's balance, and what each reference holds. For every posting whose
// outcome the model can decide (a fresh reference: posted, or refused because it is invalid, names
// an unknown account, would take a no-negative account below zero or overflow a balance) the
// ledger must answer exactly that; a recorded reference posted again with the same legs is a
// replay. After every scenario each account's balance equals the model's, updated only from what
// the ledger reported as posted, and ledger_verify() finds nothing. Currencies with 0, 2 and 3
// decimals; amounts up to the largest bigint; descriptions empty, of the maximum length and one over.

const accounts = [
  account("prop:cash:USD", "asset", "USD", true),
  account("prop:merchant:USD", "liability", "USD", false),
  account("prop:fees:USD", "revenue", "USD", false),
  account("prop:cash:EUR", "asset", "EUR", true),
  account("prop:merchant:EUR", "liability", "EUR", false),
  account("prop:cash:JPY", "asset", "JPY", true),
  account("prop:merchant:JPY", "liability", "JPY", false),
  account("prop:cash:KWD", "asset", "KWD", true),
  account("prop:merchant:KWD", "liability", "KWD", false)
]
const currencies = ["USD", "EUR", "JPY", "KWD"] as const
const codesIn = (currency: string) => accounts.filter((a) => a.currency === currency).map((a) => a.code)
const accountByCode = new Map(accounts.map((a) => [a.code, a]))

/** Any leg: known or unknown account, right or wrong or malformed currency, any amount. */
const anyLeg: fc.Arbitrary<Leg> = fc.record({
  account: fc.constantFrom(...accounts.map((a) => a.code), "prop:ghost:USD"),
  currency: fc.constantFrom(...currencies, "usd"),
  amount_minor: fc.oneof(
    fc.bigInt({ min: -3n, max: 0n }),
    fc.bigInt({ min: 1n, max: 500n }),
    fc.constantFrom(amount_minor_max, amount_minor_max + 1n)
  )
})

const description = fc.oneof(
  { arbitrary: fc.constant("balanced"), weight: 8 },
  { arbitrary: fc.constantFrom("", "d".repeat(limits.descriptionLength_max), "d".repeat(limits.descriptionLength_max + 1)), weight: 1 }
)

const debitAmounts: fc.Arbitrary<ReadonlyArray<bigint>> = fc.oneof(
  { arbitrary: fc.array(fc.bigInt({ min: 1n, max: 300n }), { minLength: 1, maxLength: 3 }), weight: 6 },
  // The largest amount that still balances (one leg each side), and a pair whose sum cannot.
  { arbitrary: fc.constantFrom<ReadonlyArray<bigint>>([amount_minor_max], [amount_minor_max, 1n]), weight: 1 }
)

/** A balanced posting in one currency on that currency's accounts (valid unless its description is not). */
const balancedPosting = (reference: string): fc.Arbitrary<PostingRequest> =>
  fc.constantFrom(...currencies).chain((currency) =>
    fc.record({
      amounts: debitAmounts,
      debitAccounts: fc.array(fc.constantFrom(...codesIn(currency)), { minLength: 3, maxLength: 3 }),
      creditAccount: fc.constantFrom(...codesIn(currency)),
      description
    }).map(({ amounts, debitAccounts, creditAccount, description }) => ({
      reference,
      description,
      debits: amounts.map((amount_minor, i) => ({ account: debitAccounts[i] ?? creditAccount, amount_minor, currency })),
      credits: [{ account: creditAccount, amount_minor: amounts.reduce((a, b) => a + b, 0n), currency }]
    }))
  )

const anyPosting = (reference: string): fc.Arbitrary<PostingRequest> =>
  fc.record({
    debits: fc.array(anyLeg, { maxLength: 3 }),
    credits: fc.array(anyLeg, { maxLength: 3 }),
    description
  }).map(({ debits, credits, description }) => ({ reference, description, debits, credits }))

// References from a pool smaller than the number of postings generated, so that runs meet earlier references: replays and conflicts.
const posting = fc.integer({ min: 0, max: 119 }).chain((n) =>
  fc.oneof({ arbitrary: balancedPosting(`prop-${n}`), weight: 3 }, { arbitrary: anyPosting(`prop-${n}`), weight: 1 })
)

const scenario = fc.record({
  postings: fc.uniqueArray(posting, { minLength: 1, maxLength: 5, selector: (p) => p.reference }),
  asBatch: fc.boolean(),
  // Re-post one posting recorded earlier (by position in the list of recorded postings).
  replay: fc.option(fc.nat())
})

// The model ------------------------------------------------------------------------------------

const bigint_min = -amount_minor_max - 1n
const legsInOrder = (p: PostingRequest) => [
  ...p.debits.map((leg) => ({ ...leg, side: "debit" as const })),
  ...p.credits.map((leg) => ({ ...leg, side: "credit" as const }))
]

/** Valid on its own: text, leg count, known accounts in their currency, amounts, balanced per currency. */
const validAlone = (p: PostingRequest): boolean => {
  const legs = legsInOrder(p)
  if (p.description.length < 1 || p.description.length > limits.descriptionLength_max || legs.length < 2) return false
  const totals = new Map<string, bigint>()
  for (const leg of legs) {
    if (accountByCode.get(leg.account)?.currency !== leg.currency) return false
    if (leg.amount_minor < 1n || leg.amount_minor > amount_minor_max) return false
    totals.set(leg.currency, (totals.get(leg.currency) ?? 0n) + (leg.side === "debit" ? leg.amount_minor : -leg.amount_minor))
  }
  return [...totals.values()].every((total) => total === 0n)
}

type Balances = ReadonlyMap<string, bigint>

/** The balances after the postings, leg by leg in order, or undefined when a leg is refused (funds, overflow). */
const applied = (balances: Balances, postings: ReadonlyArray<PostingRequest>, legByLeg: boolean): Balances | undefined => {
  const next = new Map(balances)
  const ok = () => [...next].every(([code, balance]) => {
    const spec = accountByCode.get(code)
    return balance <= amount_minor_max && balance >= bigint_min && (spec?.allowNegative === true || balance >= 0n)
  })
  for (const p of postings) {
    for (const leg of legsInOrder(p)) {
      const spec = accountByCode.get(leg.account)
      if (spec === undefined) return undefined
      const grows = (leg.side === "debit") === (spec.type === "asset" || spec.type === "expense")
      next.set(leg.account, (next.get(leg.account) ?? 0n) + (grows ? leg.amount_minor : -leg.amount_minor))
      if (legByLeg && !ok()) return undefined
    }
  }
  return ok() ? next : undefined
}

type Expected = "posted" | "refused" | "undecided"

/**
 * What the ledger must answer for postings whose references are all fresh: refused when one is
 * invalid; else posted exactly when every order the database might apply them in (request order or
 * reference order, the whole posting at once or leg by leg) keeps every balance in bounds, refused
 * when none does, and undecided when the orders disagree.
 */
const expectedForFresh = (balances: Balances, postings: ReadonlyArray<PostingRequest>): Expected => {
  if (!postings.every(validAlone)) return "refused"
  const byReference = [...postings].sort((a, b) => (a.reference < b.reference ? -1 : a.reference > b.reference ? 1 : 0))
  const outcomes = [postings, byReference].flatMap((order) => [true, false].map((legByLeg) => applied(balances, order, legByLeg) !== undefined))
  return outcomes.every(Boolean) ? "posted" : outcomes.some(Boolean) ? "undecided" : "refused"
}

const sameLegsInOrder = (a: PostingRequest, b: PostingRequest) =>
  JSON.stringify(legsInOrder(a), (_k, v) => (typeof v === "bigint" ? v.toString() : v)) ===
    JSON.stringify(legsInOrder(b), (_k, v) => (typeof v === "bigint" ? v.toString() : v))

layer(LedgerTestLayer, layerOptions)("Ledger properties", (it) => {
  it.effect("random batches (USD, EUR, JPY, KWD; up to the largest amount) answer exactly what a model of the ledger predicts, and leave its balances", () =>
    Effect.gen(function* () {
      const ledger = yield* Ledger
      for (const spec of accounts) yield* ledger.ensureAccount(spec)
      const context = yield* Effect.context<Ledger | SqlClient.SqlClient>()
      const counts = { posted: 0, replays: 0, refusals: 0, decided: 0 }
      let balances: Balances = new Map(accounts.map((a) => [a.code, 0n]))
      const recorded = new Map<string, PostingRequest>()
      const recordedInOrder: Array<PostingRequest> = []

      const attempt = (postings: ReadonlyArray<PostingRequest>, asBatch: boolean) =>
        Effect.gen(function* () {
          const fresh = postings.every((p) => !recorded.has(p.reference))
          const expected: Expected = fresh ? expectedForFresh(balances, postings) : "undecided"
          const exit = yield* Effect.exit(
            postings.length === 1 && postings[0] !== undefined && !asBatch
              ? Effect.map(ledger.postTransaction(postings[0]), (result) => [result])
              : ledger.postTransactions(postings)
          )
          const what = JSON.stringify(postings, (_k, v) => (typeof v === "bigint" ? v.toString() : v)).slice(0, 2_000)
          if (expected !== "undecided") {
            counts.decided += 1
            assert.strictEqual(Exit.isSuccess(exit) ? "posted" : "refused", expected, `the model expected ${expected}: ${what}\n${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""}`)
          }
          if (Exit.isFailure(exit)) {
            // Only typed refusals: no defect, no "unavailable" (which would hide a deadlock).
            const error = Exit.findErrorOption(exit)
            assert.isTrue(error._tag === "Some", `not a typed failure: ${Cause.pretty(exit.cause)}`)
            if (error._tag === "Some") assert.notStrictEqual(error.value._tag, "LedgerUnavailable")
            counts.refusals += 1
            return 0
          }
          const newlyPosted = postings.filter((_, i) => exit.value[i]?.replayed === false)
          for (const [i, result] of exit.value.entries()) {
            const request = postings[i]
            if (request === undefined) continue
            const earlier = recorded.get(request.reference)
            // A replay is only ever of the same legs; a new posting only of a fresh reference.
            if (result.replayed) assert.isTrue(earlier !== undefined && sameLegsInOrder(earlier, request), `replayed without the same legs: ${what}`)
            else assert.isUndefined(earlier, `posted again under a recorded reference: ${what}`)
          }
          // What the ledger reported posted must have been valid and within bounds, in some order.
          assert.isTrue(newlyPosted.every(validAlone), `posted an invalid posting: ${what}`)
          const after = applied(balances, newlyPosted, false)
          assert.isDefined(after, `posted what no order allows: ${what}`)
          if (after !== undefined) balances = after
          for (const request of newlyPosted) {
            recorded.set(request.reference, request)
            recordedInOrder.push(request)
          }
          counts.replays += exit.value.length - newlyPosted.length
          counts.posted += newlyPosted.length
          return newlyPosted.length
        })

      const check = ({ postings, asBatch, replay }: { postings: ReadonlyArray<PostingRequest>; asBatch: boolean; replay: number | null }) =>
        Effect.gen(function* () {
          const earlier = replay === null ? undefined : recordedInOrder[replay % Math.max(recordedInOrder.length, 1)]
          if (earlier !== undefined) {
            // A recorded posting, posted again: always a replay, never a second write.
            const again = yield* ledger.postTransaction(earlier)
            assert.isTrue(again.replayed)
            counts.replays += 1
          }
          const before = yield* countRows("transactions")
          let written = 0
          for (const group of asBatch ? [postings] : postings.map((p) => [p])) written += yield* attempt(group, asBatch)
          assert.strictEqual(yield* countRows("transactions"), before + written)
          // Every balance is the model's: nothing written that was not reported, nothing lost.
          const stored = yield* Effect.forEach(accounts, (a) => Effect.map(ledger.balance(a.code), (b) => [a.code, b.balance_minor] as const))
          assert.deepStrictEqual(new Map(stored), new Map(balances))
          assert.deepStrictEqual(yield* negativeNoNegativeAccounts, [])
          assert.isTrue((yield* trialBalance).every(([, total]) => total === "0"))
          yield* assertLedgerHealthy
        })

      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(scenario, (generated) => Effect.runPromise(check(generated).pipe(Effect.provide(context)))),
          { numRuns: 50 }
        )
      )
      yield* Effect.logInfo("ledger property: outcomes", counts)
      // The generators really exercise every path, and the model decided most outcomes.
      assert.isAbove(counts.posted, 0)
      assert.isAbove(counts.replays, 0)
      assert.isAbove(counts.refusals, 0)
      assert.isAbove(counts.decided, counts.posted / 2)
    }), { timeout: 60_000 })
})
