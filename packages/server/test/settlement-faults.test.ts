// Settlement under injected faults, over real HTTP: the server's `appLayer` served in this process
// (so a Layer can be swapped: the acquirer, the settlement posting) on a fresh database, the run's
// Redis and Kafka. Every fault first does the real work, so what must roll back is real; every
// scenario ends with the books checked from PostgreSQL and the merchant's /v1/balance compared
// with Σ(gross − fee) computed here from the fee rule.
import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import type { MerchantId } from "@pay/domain"
import { Ledger } from "@pay/ledger"
import { AcquirerSimulator } from "@pay/acquirer"
import { Deferred, Effect, Fiber, Result, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { FeeSchedules } from "@pay/settlement"
import { createMerchant } from "./support/TestServer.ts"
import {
  Api,
  authorizedPayment,
  codeOf,
  describeAnswer,
  jsonOf,
  newKey,
  payableBalance,
  replayed,
  settle,
  settleUntilDecided,
  type TestMerchant
} from "./support/Api.ts"
import {
  acquirerOperation,
  assertBooksConsistent,
  assertLedgerVerifies,
  assertNotSettled,
  assertSettledOnce,
  defaultTerms,
  type ExpectedSettlement,
  expectedPayable,
  type FeeTerms
} from "@pay/settlement/test-support"
import { inProcessAppLayer, SettlementFaults } from "./support/InProcessApp.ts"

const layerOptions = { excludeTestServices: true, timeout: "60 seconds" } as const
const retryBounds = { attempts: 50, interval_ms: 100 } as const

/** A merchant and what the test expects it to have been paid, per payment. */
interface Books {
  readonly merchant: TestMerchant
  readonly settled: Array<ExpectedSettlement>
}

const openBooks = (name: string) => Effect.map(createMerchant(name), (merchant): Books => ({ merchant, settled: [] }))

const setFees = (merchantId: MerchantId, currency: string, terms: FeeTerms) =>
  Effect.gen(function* () {
    const fees = yield* FeeSchedules
    yield* fees.set(merchantId, currency, terms)
  })

/** After every scenario: the books agree with themselves and the merchant's balance is Σ(gross − fee). */
const assertBooks = (books: Books) =>
  Effect.gen(function* () {
    for (const expected of books.settled) yield* assertSettledOnce(expected)
    yield* assertBooksConsistent
    assert.deepStrictEqual(yield* payableBalance(books.merchant), expectedPayable(books.settled), "GET /v1/balance")
  })

const expectSettled = (answer: { readonly status: number; readonly text: string }, label: string) => {
  assert.strictEqual(answer.status, 200, `${label}: ${answer.status} ${answer.text.slice(0, 400)}`)
}

/**
 * A settle whose client hangs up on demand: `hangUp` aborts the request. The outcome is what the
 * client saw: an answer, or nothing (aborted).
 */
const settleWithHangUp = (m: TestMerchant, paymentId: string, key: string) =>
  Effect.gen(function* () {
    const api = yield* Api
    const controller = new AbortController()
    const request = Effect.tryPromise({
      try: async () => {
        const response = await fetch(`${api.baseUrl}/v1/payments/${paymentId}/settle`, {
          method: "POST",
          headers: { authorization: `Bearer ${m.apiKey}`, "idempotency-key": key },
          signal: AbortSignal.any([controller.signal, AbortSignal.timeout(15_000)])
        })
        return { status: response.status, text: await response.text() }
      },
      catch: (cause) => (cause instanceof Error ? cause.name : String(cause))
    })
    return { request, hangUp: Effect.sync(() => controller.abort()) }
  })

layer(inProcessAppLayer(), layerOptions)("settlement with fault Layers (in-process app over HTTP)", (it) => {
  it.effect("settle twice: the same key replays the exact bytes, a new key is a stored 409 invalid_transition; one posting, the balance moved once (USD, JPY, KWD)", () =>
    Effect.gen(function* () {
      const books = yield* openBooks("Twice")
      const jpy: FeeTerms = { fee_bps: 360, fee_fixed_minor: 0n }
      const kwd: FeeTerms = { fee_bps: 250, fee_fixed_minor: 100n }
      yield* setFees(books.merchant.merchantId, "JPY", jpy)
      yield* setFees(books.merchant.merchantId, "KWD", kwd)
      const cases = [
        { gross_minor: 1_050n, currency: "USD", terms: defaultTerms },
        { gross_minor: 1_234n, currency: "JPY", terms: jpy },
        { gross_minor: 125n, currency: "JPY", terms: jpy },
        { gross_minor: 12_345n, currency: "KWD", terms: kwd }
      ]
      for (const c of cases) {
        const id = yield* authorizedPayment(books.merchant, c.gross_minor, c.currency)
        const key = newKey("settle")
        const first = yield* settle(books.merchant, id, key)
        expectSettled(first, "first settle")
        assert.strictEqual(jsonOf(first)["status"], "SETTLED")
        assert.isFalse(replayed(first))
        const again = yield* settle(books.merchant, id, key)
        assert.strictEqual(again.status, 200)
        assert.isTrue(replayed(again), "the same key is a replay")
        assert.strictEqual(again.text, first.text, "byte for byte")
        const other = yield* settle(books.merchant, id, newKey("settle"))
        assert.strictEqual(other.status, 409, describeAnswer(other))
        assert.strictEqual(codeOf(other), "invalid_transition")
        assert.include(String(jsonOf(other)["detail"]), "SETTLED -> SETTLED")
        books.settled.push({ paymentId: id, ...c })
      }
      yield* assertBooks(books)
      // 10.50 USD at 2.90 % + 0.30: fee 0.60, net 9.90; ¥1,234 at 3.60 %: ¥44, net ¥1,190;
      // ¥125 at 3.60 %: 4.5 rounds half up to ¥5, net ¥120; 12.345 KWD at 2.50 % + 0.100:
      // 308.625 → 309 + 100 = 0.409, net 11.936.
      assert.deepStrictEqual(yield* payableBalance(books.merchant), [
        { currency: "JPY", amount: 1_190 + 120 },
        { currency: "KWD", amount: 11_936 },
        { currency: "USD", amount: 990 }
      ])
    }))

  it.effect("fee edges through the API: a fee capped at the gross leaves no merchant leg, a zero fee leaves no fee leg; both post and verify", () =>
    Effect.gen(function* () {
      const books = yield* openBooks("Edges")
      yield* setFees(books.merchant.merchantId, "EUR", { fee_bps: 0, fee_fixed_minor: 0n })
      // 0.20 USD at 2.90 % + 0.30: 0.01 + 0.30 > 0.20, capped: the whole amount is the fee.
      const tiny = yield* authorizedPayment(books.merchant, 20n, "USD")
      expectSettled(yield* settle(books.merchant, tiny, newKey("settle")), "tiny")
      books.settled.push({ paymentId: tiny, gross_minor: 20n, currency: "USD", terms: defaultTerms })
      const free = yield* authorizedPayment(books.merchant, 99_999_999_999n, "EUR")
      expectSettled(yield* settle(books.merchant, free, newKey("settle")), "fee-free maximum")
      books.settled.push({ paymentId: free, gross_minor: 99_999_999_999n, currency: "EUR", terms: { fee_bps: 0, fee_fixed_minor: 0n } })
      yield* assertBooks(books)
      assert.deepStrictEqual(yield* payableBalance(books.merchant), [
        { currency: "EUR", amount: 99_999_999_999 },
        { currency: "USD", amount: 0 }
      ])
    }))

  it.effect("the posting completes, then the ledger fails (SettlementUnavailable): 503, the status change rolls back with the posting; the same key then settles once", () =>
    Effect.gen(function* () {
      const faults = yield* SettlementFaults
      const books = yield* openBooks("Unavailable")
      const id = yield* authorizedPayment(books.merchant, 1_050n, "USD")
      const key = newKey("settle")
      yield* faults.arm({ _tag: "UnavailableAfterPosting" })
      const failed = yield* settle(books.merchant, id, key)
      assert.strictEqual(failed.status, 503, describeAnswer(failed))
      assert.strictEqual(codeOf(failed), "settlement_unavailable")
      assert.strictEqual(failed.headers.get("retry-after"), "1")
      yield* assertNotSettled(id)
      yield* assertBooks(books)

      const retried = yield* settleUntilDecided(books.merchant, id, key, retryBounds)
      expectSettled(retried.answer, "retry")
      assert.isFalse(replayed(retried.answer), "the retry executed (nothing had been stored)")
      books.settled.push({ paymentId: id, gross_minor: 1_050n, currency: "USD", terms: defaultTerms })
      yield* assertBooks(books)
      // Captured once at the acquirer although asked twice (same reference).
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 2 }])
    }))

  it.effect("a constraint hit inside the posting (its settlement row again: 23505) rolls back the status change too; the retry settles once", () =>
    Effect.gen(function* () {
      const faults = yield* SettlementFaults
      const books = yield* openBooks("Constraint")
      const id = yield* authorizedPayment(books.merchant, 4_999n, "GBP")
      const key = newKey("settle")
      const injectedBefore = yield* faults.injected
      yield* faults.arm({ _tag: "ConstraintHitAfterPosting" })
      const failed = yield* settle(books.merchant, id, key)
      assert.strictEqual(yield* faults.injected, injectedBefore + 1)
      assert.strictEqual(failed.status, 503, describeAnswer(failed))
      assert.strictEqual(codeOf(failed), "settlement_unavailable")
      assert.strictEqual(yield* faults.lastSqlState, "23505", "the primary key of payment_settlements refused the row")
      yield* assertNotSettled(id)
      yield* assertBooks(books)

      const retried = yield* settleUntilDecided(books.merchant, id, key, retryBounds)
      expectSettled(retried.answer, "retry")
      books.settled.push({ paymentId: id, gross_minor: 4_999n, currency: "GBP", terms: defaultTerms })
      yield* assertBooks(books)
    }))

  it.effect("the database refuses the real posting's last write (lock timeout on payment_settlements): 503 settlement_unavailable, nothing committed; the retry settles once", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const books = yield* openBooks("Lock timeout")
      const id = yield* authorizedPayment(books.merchant, 6_100n, "USD")
      const key = newKey("settle")
      // This session blocks inserts into payment_settlements (only) for longer than the settle
      // transaction's lock timeout (5 s, set by the payment repository).
      const locked = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function* () {
        yield* sql`LOCK TABLE payment_settlements IN SHARE MODE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(release).pipe(Effect.timeout(15_000))
      })))
      yield* Deferred.await(locked).pipe(Effect.timeout(10_000))
      const failed = yield* settle(books.merchant, id, key, { timeout_ms: 15_000 })
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      assert.strictEqual(failed.status, 503, describeAnswer(failed))
      assert.strictEqual(codeOf(failed), "settlement_unavailable")
      yield* assertNotSettled(id)
      yield* assertBooks(books)

      const retried = yield* settleUntilDecided(books.merchant, id, key, retryBounds)
      expectSettled(retried.answer, "retry")
      books.settled.push({ paymentId: id, gross_minor: 6_100n, currency: "USD", terms: defaultTerms })
      yield* assertBooks(books)
    }))

  it.effect("the acquirer captured, then the COMMIT fails (deferred check at commit): 500 invariant_violation, nothing committed; the retry captures again (performed once) and settles once", () =>
    Effect.gen(function* () {
      const faults = yield* SettlementFaults
      const sql = yield* SqlClient.SqlClient
      const books = yield* openBooks("Commit fails")
      const id = yield* authorizedPayment(books.merchant, 25_000n, "USD")
      const key = newKey("settle")
      yield* faults.arm({ _tag: "CommitFails" })
      const failed = yield* settle(books.merchant, id, key)
      // The ledger's deferred guard (LG001) refused what the code let through: a bug, not an
      // outage, so a 500 that says so (docs/api.md "Database failures"); nothing was stored.
      assert.strictEqual(failed.status, 500, describeAnswer(failed))
      assert.strictEqual(codeOf(failed), "invariant_violation")
      // The capture happened at the acquirer; nothing of ours did, the dangling posting included.
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 1 }])
      yield* assertNotSettled(id)
      const [dangling] = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*) AS n FROM transactions WHERE reference LIKE 'fault:%'`)
      assert.strictEqual(dangling?.n, 0n)
      // The key kept its recovery point: the retry resumes after the capture request.
      const [keyRow] = yield* decodeRows(Schema.Struct({ recovery_point: Schema.String, finished: Schema.Boolean }))(sql`
        SELECT recovery_point, finished_at IS NOT NULL AS finished FROM idempotency_keys
        WHERE merchant_id = ${books.merchant.merchantId} AND idempotency_key = ${key}`)
      assert.deepStrictEqual(keyRow, { recovery_point: "capture_requested", finished: false })
      yield* assertBooks(books)

      const retried = yield* settleUntilDecided(books.merchant, id, key, retryBounds)
      expectSettled(retried.answer, "retry")
      books.settled.push({ paymentId: id, gross_minor: 25_000n, currency: "USD", terms: defaultTerms })
      yield* assertBooks(books)
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 2 }])
    }))

  it.effect("the client hangs up before the COMMIT: the request is interrupted and the transaction rolls back; the retry settles once", () =>
    Effect.gen(function* () {
      const faults = yield* SettlementFaults
      const books = yield* openBooks("Hang-up before commit")
      const id = yield* authorizedPayment(books.merchant, 777n, "USD")
      const key = newKey("settle")
      const reached = yield* Deferred.make<void>()
      yield* faults.arm({ _tag: "HoldBeforeCommit", reached })
      const call = yield* settleWithHangUp(books.merchant, id, key)
      const pending = yield* Effect.forkChild(Effect.result(call.request))
      yield* Deferred.await(reached).pipe(Effect.timeout(10_000))
      // The posting is done inside the open transaction; nobody else sees it.
      yield* assertNotSettled(id)
      yield* call.hangUp
      const seen = yield* Fiber.join(pending)
      assert.isTrue(Result.isFailure(seen) && seen.failure === "AbortError", `the client got no answer: ${JSON.stringify(seen)}`)

      const retried = yield* settleUntilDecided(books.merchant, id, key, retryBounds)
      expectSettled(retried.answer, "retry")
      assert.isFalse(replayed(retried.answer), "nothing had been stored: the retry executed")
      books.settled.push({ paymentId: id, gross_minor: 777n, currency: "USD", terms: defaultTerms })
      yield* assertBooks(books)
    }))

  it.effect("the COMMIT succeeds and the response is lost (the client hangs up after the commit): the retry is a replay; one posting", () =>
    Effect.gen(function* () {
      const faults = yield* SettlementFaults
      const books = yield* openBooks("Response lost")
      const id = yield* authorizedPayment(books.merchant, 3_333n, "USD")
      const key = newKey("settle")
      const reached = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      yield* faults.arm({ _tag: "HoldAfterCommit", reached, release })
      const call = yield* settleWithHangUp(books.merchant, id, key)
      const pending = yield* Effect.forkChild(Effect.result(call.request))
      yield* Deferred.await(reached).pipe(Effect.timeout(10_000))
      // Committed: visible to everyone, before any response left the server.
      books.settled.push({ paymentId: id, gross_minor: 3_333n, currency: "USD", terms: defaultTerms })
      yield* assertSettledOnce(books.settled[0] ?? assert.fail("no expectation"))
      yield* call.hangUp
      const seen = yield* Fiber.join(pending)
      assert.isTrue(Result.isFailure(seen) && seen.failure === "AbortError", `the client got no answer: ${JSON.stringify(seen)}`)
      yield* Deferred.succeed(release, undefined)

      const retried = yield* settleUntilDecided(books.merchant, id, key, retryBounds)
      expectSettled(retried.answer, "retry")
      assert.isTrue(replayed(retried.answer), "the stored response is replayed")
      assert.strictEqual(jsonOf(retried.answer)["status"], "SETTLED")
      yield* assertBooks(books)
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 1 }])
    }))
})

// The simulator's own fault: the capture is performed, its answer lost (our side times out).
const lostCaptureAnswer = AcquirerSimulator.layerFaulty({ failCaptureAfterPerforming: "first_call" }, { timeout_ms: 300, latency_ms: 5 })

layer(inProcessAppLayer({ acquirer: lostCaptureAnswer }), layerOptions)("settlement when the acquirer's answer is lost (in-process app over HTTP)", (it) => {
  it.effect("capture performed, answer lost (503 acquirer_timeout); the retry captures again and the COMMIT fails; the next retry settles: one posting, captured once", () =>
    Effect.gen(function* () {
      const faults = yield* SettlementFaults
      const books = yield* openBooks("Lost answer")
      const id = yield* authorizedPayment(books.merchant, 10_050n, "USD")
      const key = newKey("settle")

      const timedOut = yield* settle(books.merchant, id, key)
      assert.strictEqual(timedOut.status, 503, describeAnswer(timedOut))
      assert.strictEqual(codeOf(timedOut), "acquirer_timeout")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 1 }])
      yield* assertNotSettled(id)
      yield* assertBooks(books)

      yield* faults.arm({ _tag: "CommitFails" })
      const commitFailed = yield* settleUntilDecided(books.merchant, id, key, retryBounds)
      assert.strictEqual(commitFailed.answer.status, 500, describeAnswer(commitFailed.answer))
      assert.strictEqual(codeOf(commitFailed.answer), "invariant_violation")
      yield* assertNotSettled(id)
      yield* assertBooks(books)

      const settled = yield* settleUntilDecided(books.merchant, id, key, retryBounds)
      expectSettled(settled.answer, "third attempt")
      books.settled.push({ paymentId: id, gross_minor: 10_050n, currency: "USD", terms: defaultTerms })
      yield* assertBooks(books)
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 3 }])
      const again = yield* settle(books.merchant, id, key)
      assert.isTrue(replayed(again))
      assert.strictEqual(again.text, settled.answer.text)
    }))
})

// Its own database: the scenario leaves a posting squatting on a settlement reference.
layer(inProcessAppLayer(), layerOptions)("settlement when the ledger refuses what the code did not expect (in-process app over HTTP)", (it) => {
  it.effect("the settlement reference already holds other legs: a defect (500, never stored), the status change rolls back; a retry meets the same refusal", () =>
    Effect.gen(function* () {
      const ledger = yield* Ledger
      const books = yield* openBooks("Squatted")
      const id = yield* authorizedPayment(books.merchant, 1_050n, "USD")
      const a = yield* ledger.ensureAccount({ code: "test:squatter:a", type: "asset", currency: "USD", allowNegative: true })
      const b = yield* ledger.ensureAccount({ code: "test:squatter:b", type: "liability", currency: "USD", allowNegative: true })
      // The database reserves settlement references for settlement postings (trigger
      // transactions_settlement_has_row, migrations/0011_settlement_tie.sql): only the owner, with
      // DDL on this test's own database, can squat one, which is the defect this test is about.
      const sql = yield* SqlClient.SqlClient
      yield* sql`ALTER TABLE transactions DISABLE TRIGGER transactions_settlement_has_row`
      yield* ledger.postTransaction({
        reference: `payment:${id}:settlement`,
        description: "someone else's posting under the settlement reference",
        debits: [{ account: a.code, amount_minor: 5n, currency: "USD" }],
        credits: [{ account: b.code, amount_minor: 5n, currency: "USD" }]
      })
      yield* sql`ALTER TABLE transactions ENABLE TRIGGER transactions_settlement_has_row`
      const key = newKey("settle")
      for (let attempt = 1; attempt <= 2; attempt++) {
        const answer = yield* settleUntilDecided(books.merchant, id, key, retryBounds)
        assert.strictEqual(answer.answer.status, 500, describeAnswer(answer.answer))
        assert.isFalse(replayed(answer.answer), "a defect is never stored")
        yield* assertNotSettledExceptSquatter(id)
      }
      yield* assertLedgerVerifies
      assert.deepStrictEqual(yield* payableBalance(books.merchant), [], "no money moved for the merchant")
    }))
})

/** Still AUTHORIZED, no settlement row, no SETTLED history or event; the only posting under the reference is the squatter's. */
const assertNotSettledExceptSquatter = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ status: Schema.String, transactions: Schema.BigInt, settlements: Schema.BigInt, events: Schema.BigInt }))(sql`
      SELECT p.status,
             (SELECT count(*) FROM transactions WHERE reference = ${`payment:${paymentId}:settlement`}) AS transactions,
             (SELECT count(*) FROM payment_settlements WHERE payment_id = ${paymentId}) AS settlements,
             (SELECT count(*) FROM outbox_events WHERE aggregate_id = ${paymentId} AND event_type = 'payment_settled') AS events
      FROM payments p WHERE p.id = ${paymentId}`)
    assert.deepStrictEqual(row, { status: "AUTHORIZED", transactions: 1n, settlements: 0n, events: 0n })
  })
