// Issue 11, "after the acquirer acted, a slow lock turns into a final wrong answer": a second,
// real database session holds the payment's row (`FOR UPDATE`, then `pg_sleep(8)`) while a settle
// or an authorize runs. A settle: the acquirer answers, then the transition waits on the row past
// its 5 s lock bound. That must be an unknown outcome (503 `payment_locked`, nothing stored, the
// key keeps its recovery point), never a stored 409; the retry with the same key then finishes the
// work exactly once: the acquirer performed once, one posting, the balance moved once. An
// authorize reads the row FOR SHARE before the issuer is asked (it excludes a cancel before
// authorization, docs/payments.md): the same 503 at the same bound, with nothing asked or written.
import { assert, layer } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import {
  acquirerOperation,
  assertBooksConsistent,
  assertNotSettled,
  assertSettledOnce,
  defaultTerms,
  expectedPayable
} from "@pay/settlement/test-support"
import { Deferred, Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql"
import {
  type Answer,
  authorizedPayment,
  codeOf,
  describeAnswer,
  jsonOf,
  newKey,
  payableBalance,
  post,
  replayed,
  settle,
  settleUntilDecided,
  stringField,
  type TestMerchant
} from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const layerOptions = { excludeTestServices: true, timeout: "120 seconds" } as const
const retryBounds = { attempts: 100, interval_ms: 100 } as const
/** How long the other session holds the row: longer than the repository's 5 s lock bound. */
const holdSeconds = 8

/**
 * Another session takes the payment's row lock and keeps it `holdSeconds` (in SQL: `pg_sleep`),
 * as an operator's psql would. Returns once the lock is held; join the fiber to wait for the end.
 */
const holdPaymentRow = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const locked = yield* Deferred.make<void>()
    const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function* () {
      yield* sql`SELECT 1 FROM payments WHERE id = ${paymentId} FOR UPDATE`
      yield* Deferred.succeed(locked, undefined)
      yield* sql`SELECT pg_sleep(${holdSeconds})`
    })))
    yield* Deferred.await(locked).pipe(Effect.timeout(10_000))
    return holder
  })

const keyState = (m: TestMerchant, key: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ recovery_point: Schema.String, finished: Schema.Boolean, response_status: Schema.NullOr(Schema.Number) }))(sql`
      SELECT recovery_point, finished_at IS NOT NULL AS finished, response_status FROM idempotency_keys
      WHERE merchant_id = ${m.merchantId} AND idempotency_key = ${key}`)
    return row
  })

const assertUnknownOutcome = (answer: Answer) => {
  assert.strictEqual(answer.status, 503, describeAnswer(answer))
  assert.strictEqual(codeOf(answer), "payment_locked")
  assert.strictEqual(answer.headers.get("retry-after"), "1")
  assert.isFalse(replayed(answer))
}

layer(inProcessAppLayer(), layerOptions)("a slow row lock after the acquirer acted (issue 11)", (it) => {
  it.effect("settle: captured, then the row is held 8 s by another session: 503 payment_locked (not stored); the same key then settles once, captured once", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Slow lock settle")
      const id = yield* authorizedPayment(m, 2_500n, "USD")
      const key = newKey("settle")
      const holder = yield* holdPaymentRow(id)
      const failed = yield* settle(m, id, key, { timeout_ms: 30_000 })
      yield* Fiber.join(holder)
      assertUnknownOutcome(failed)
      // The capture stands at the acquirer; nothing of ours moved, and the key kept its recovery point.
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 1 }])
      yield* assertNotSettled(id)
      assert.deepStrictEqual(yield* keyState(m, key), { recovery_point: "capture_requested", finished: false, response_status: null })

      const retried = yield* settleUntilDecided(m, id, key, retryBounds)
      assert.strictEqual(retried.answer.status, 200, describeAnswer(retried.answer))
      assert.isFalse(replayed(retried.answer), "the retry executed: nothing had been stored")
      assert.strictEqual(jsonOf(retried.answer)["status"], "SETTLED")
      const settled = { paymentId: id, gross_minor: 2_500n, currency: "USD", terms: defaultTerms }
      yield* assertSettledOnce(settled)
      yield* assertBooksConsistent
      assert.deepStrictEqual(yield* payableBalance(m), expectedPayable([settled]), "the balance moved once")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 2 }])
      const again = yield* settle(m, id, key)
      assert.isTrue(replayed(again))
      assert.strictEqual(again.text, retried.answer.text)
    }))

  it.effect("authorize: the row is held 8 s by another session before the issuer is asked: 503 payment_locked after the lock bound, nothing asked or stored; the same key then authorizes once", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Slow lock authorize")
      const created = yield* post(m, "/v1/payments", newKey("create"), {
        json: { amount: 4_200, currency: "EUR", payment_method: "pm_card_visa" }
      })
      assert.strictEqual(created.status, 201, describeAnswer(created))
      const id = stringField(created, "id")
      const key = newKey("authorize")
      const path = `/v1/payments/${id}/authorize`
      const holder = yield* holdPaymentRow(id)
      const started_ms = Date.now()
      const failed = yield* post(m, path, key, { timeout_ms: 30_000 })
      const waited_ms = Date.now() - started_ms
      assertUnknownOutcome(failed)
      // The authorize's gate reads the row FOR SHARE (it excludes a cancel before authorization):
      // it waits at most the 5 s bound, before anything is written or asked.
      assert.isBelow(waited_ms, holdSeconds * 1_000, "answered at the lock bound, not when the holder let go")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:authorization`), [], "the issuer was not asked")
      assert.isUndefined(yield* keyState(m, key), "no key was written")
      yield* Fiber.join(holder)

      const retried = yield* post(m, path, key)
      assert.strictEqual(retried.status, 200, describeAnswer(retried))
      assert.isFalse(replayed(retried))
      assert.strictEqual(jsonOf(retried)["status"], "AUTHORIZED")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:authorization`), [{ performed_count: 1, request_count: 1 }])
      const sql = yield* SqlClient.SqlClient
      const [trail] = yield* decodeRows(Schema.Struct({ history: Schema.BigInt, events: Schema.BigInt }))(sql`
        SELECT (SELECT count(*) FROM payment_status_history WHERE payment_id = ${id} AND to_status = 'AUTHORIZED') AS history,
               (SELECT count(*) FROM outbox_events WHERE aggregate_id = ${id} AND event_type = 'payment_authorized') AS events`)
      assert.deepStrictEqual(trail, { history: 1n, events: 1n }, "authorized once")
    }))
})
