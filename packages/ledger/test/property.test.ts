import { assert, layer } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { SqlClient } from "effect/sql"
import fc from "fast-check"
import { Ledger } from "../src/Ledger.ts"
import { amount_minor_max, type Leg, type PostingRequest } from "../src/Model.ts"
import {
  account,
  assertLedgerHealthy,
  countRows,
  LedgerTestLayer,
  layerOptions,
  negativeNoNegativeAccounts,
  trialBalance
} from "./support.ts"

// Properties: random batches of valid and invalid postings never leave ledger_verify() with a
// row, never take a no-negative account below zero, never fail with anything but a typed
// refusal, and write exactly the postings they report as new.

const accounts = [
  account("prop:cash:USD", "asset", "USD", true),
  account("prop:merchant:USD", "liability", "USD", false),
  account("prop:fees:USD", "revenue", "USD", false),
  account("prop:cash:EUR", "asset", "EUR", true),
  account("prop:merchant:EUR", "liability", "EUR", false)
]
const codesIn = (currency: string) => accounts.filter((a) => a.currency === currency).map((a) => a.code)

/** Any leg: known or unknown account, right or wrong or malformed currency, any amount. */
const anyLeg: fc.Arbitrary<Leg> = fc.record({
  account: fc.constantFrom(...accounts.map((a) => a.code), "prop:ghost:USD"),
  currency: fc.constantFrom("USD", "EUR", "usd"),
  amount_minor: fc.oneof(
    fc.bigInt({ min: -3n, max: 0n }),
    fc.bigInt({ min: 1n, max: 500n }),
    fc.constantFrom(amount_minor_max, amount_minor_max + 1n)
  )
})

/** A posting that passes validation: balanced, in one currency, on that currency's accounts. */
const balancedPosting = (reference: string): fc.Arbitrary<PostingRequest> =>
  fc.constantFrom("USD", "EUR").chain((currency) =>
    fc.record({
      amounts: fc.array(fc.bigInt({ min: 1n, max: 300n }), { minLength: 1, maxLength: 3 }),
      debitAccounts: fc.array(fc.constantFrom(...codesIn(currency)), { minLength: 3, maxLength: 3 }),
      creditAccount: fc.constantFrom(...codesIn(currency))
    }).map(({ amounts, debitAccounts, creditAccount }) => ({
      reference,
      description: "balanced",
      debits: amounts.map((amount_minor, i) => ({ account: debitAccounts[i] ?? creditAccount, amount_minor, currency })),
      credits: [{ account: creditAccount, amount_minor: amounts.reduce((a, b) => a + b, 0n), currency }]
    }))
  )

const anyPosting = (reference: string): fc.Arbitrary<PostingRequest> =>
  fc.record({
    debits: fc.array(anyLeg, { maxLength: 3 }),
    credits: fc.array(anyLeg, { maxLength: 3 })
  }).map(({ debits, credits }) => ({ reference, description: "anything", debits, credits }))

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

layer(LedgerTestLayer, layerOptions)("Ledger properties", (it) => {
  it.effect("random batches of valid and invalid postings never leave a discrepancy", () =>
    Effect.gen(function* () {
      const ledger = yield* Ledger
      for (const spec of accounts) yield* ledger.ensureAccount(spec)
      const context = yield* Effect.context<Ledger | SqlClient.SqlClient>()
      let newPostings = 0
      let replays = 0
      let refusals = 0

      const recorded: Array<PostingRequest> = []

      const check = ({ postings, asBatch, replay }: {
        postings: ReadonlyArray<PostingRequest>
        asBatch: boolean
        replay: number | null
      }) =>
        Effect.gen(function* () {
          const earlier = replay === null ? undefined : recorded[replay % Math.max(recorded.length, 1)]
          if (earlier !== undefined) {
            // A recorded posting, posted again: always a replay, never a second write.
            const again = yield* ledger.postTransaction(earlier)
            assert.isTrue(again.replayed)
            replays += 1
          }
          const before = yield* countRows("transactions")
          const attempts = asBatch ? [postings] : postings.map((p) => [p])
          let written = 0
          for (const attempt of attempts) {
            const exit = yield* Effect.exit(
              attempt.length === 1 && attempt[0] !== undefined && !asBatch
                ? Effect.map(ledger.postTransaction(attempt[0]), (result) => [result])
                : ledger.postTransactions(attempt)
            )
            if (Exit.isSuccess(exit)) {
              written += exit.value.filter((result) => !result.replayed).length
              replays += exit.value.filter((result) => result.replayed).length
              exit.value.forEach((result, i) => {
                const request = attempt[i]
                if (!result.replayed && request !== undefined) recorded.push(request)
              })
            } else {
              // Only typed refusals: no defect, no "unavailable" (which would hide a deadlock).
              const error = Exit.findErrorOption(exit)
              assert.isTrue(error._tag === "Some", `not a typed failure: ${Cause.pretty(exit.cause)}`)
              if (error._tag === "Some") assert.notStrictEqual(error.value._tag, "LedgerUnavailable")
              refusals += 1
            }
          }
          newPostings += written
          assert.strictEqual(yield* countRows("transactions"), before + written)
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
      // The generators really exercise both paths.
      assert.isAbove(newPostings, 0)
      assert.isAbove(replays, 0)
      assert.isAbove(refusals, 0)
    }), { timeout: 60_000 })
})
