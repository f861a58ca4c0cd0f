// Cancel before authorization: POST /v1/payments/{id}/cancel on a CREATED payment, over real HTTP
// on the in-process app. CREATED → CANCELED with payment_canceled, no acquirer call (nothing was
// reserved), no money. The danger is an authorization in flight: while an authorize's key is at
// `authorization_requested`, the cancel answers 409 authorization_in_progress (never stored), and
// the database refuses the same against raw SQL (migrations/0078).
import { assert, layer } from "@effect/vitest"
import { Acquirer, AcquirerSimulator, AcquirerUnavailable } from "@pay/acquirer"
import { decodeRows } from "@pay/infra"
import { acquirerOperation, assertBooksConsistent } from "@pay/settlement/test-support"
import { Duration, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { codeOf, describeAnswer, jsonOf, newKey, post, replayed, stringField, type TestMerchant } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const layerOptions = { excludeTestServices: true, timeout: "60 seconds" } as const

const cancel = (m: TestMerchant, paymentId: string, key: string) => post(m, `/v1/payments/${paymentId}/cancel`, key)
const authorize = (m: TestMerchant, paymentId: string, key: string) => post(m, `/v1/payments/${paymentId}/authorize`, key)

const createdPayment = (m: TestMerchant, amount: number) =>
  Effect.gen(function* () {
    const created = yield* post(m, "/v1/payments", newKey("create"), { json: { amount, currency: "EUR", payment_method: "pm_card_visa" } })
    assert.strictEqual(created.status, 201, describeAnswer(created))
    return stringField(created, "id")
  })

/** The payment as the database holds it, its canceled events and money, and what the acquirer approved for it. */
const trail = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({
      status: Schema.String,
      canceled_events: Schema.BigInt,
      transactions: Schema.BigInt,
      approved: Schema.Array(Schema.String)
    }))(sql`
      SELECT (SELECT status FROM payments WHERE id = ${paymentId}) AS status,
             (SELECT count(*) FROM outbox_events o WHERE o.aggregate_id = ${paymentId} AND o.event_type = 'payment_canceled') AS canceled_events,
             (SELECT count(*) FROM transactions t WHERE t.reference LIKE ${`payment:${paymentId}:%`}) AS transactions,
             ARRAY(SELECT operation FROM acquirer_sim.operations WHERE payment_id = ${paymentId} AND outcome = 'approved' ORDER BY operation) AS approved`)
    if (row === undefined) return assert.fail(`no payment ${paymentId}`)
    return row
  })

/** A raw cancel, as psql could type it: the status, its history row and its event, in one transaction. */
const rawCancel = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.withTransaction(Effect.gen(function* () {
      yield* sql`UPDATE payments SET status = 'CANCELED', version = version + 1 WHERE id = ${paymentId}`
      yield* sql`
        INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
        SELECT id, version, 'CREATED', 'CANCELED', 'psql', 'raw', now() FROM payments WHERE id = ${paymentId}`
      yield* sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
        SELECT gen_random_uuid(), 'payment', id, 'payment_canceled', jsonb_build_object('version', version) FROM payments WHERE id = ${paymentId}`
    }))
  })

/**
 * A raw authorize key for the payment at `point` (`authorization_requested`: a crash right after the
 * gate); its id.
 */
const rawAuthorizationKey = (merchantId: string, paymentId: string, point = "authorization_requested") =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ id: Schema.String }))(sql`
      INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, recovery_point, recovery_data)
      VALUES (gen_random_uuid(), ${merchantId}, ${newKey("raw")}, 'POST', ${`/v1/payments/${paymentId}/authorize`}, ${"0".repeat(64)},
              ${point}, ${JSON.stringify({ payment_id: paymentId })}::jsonb)
      RETURNING id`)
    return row?.id ?? assert.fail("no key inserted")
  })

layer(inProcessAppLayer(), layerOptions)("cancel before authorization (in-process app over HTTP)", (it) => {
  it.effect("cancel a CREATED payment: 200 CANCELED, replayed by its key; the acquirer is not asked, no money moves; an authorize after it is a 409", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Cancel early")
      const id = yield* createdPayment(merchant, 700)
      const key = newKey("cancel")
      const first = yield* cancel(merchant, id, key)
      assert.strictEqual(first.status, 200, describeAnswer(first))
      assert.strictEqual(jsonOf(first)["status"], "CANCELED")
      assert.isNull(jsonOf(first)["authorization_expires_at"])
      const again = yield* cancel(merchant, id, key)
      assert.isTrue(replayed(again))
      assert.strictEqual(again.text, first.text, "byte for byte")
      const late = yield* authorize(merchant, id, newKey("authorize"))
      assert.strictEqual(late.status, 409, describeAnswer(late))
      assert.strictEqual(codeOf(late), "invalid_transition")
      assert.include(String(jsonOf(late)["detail"]), "CANCELED -> AUTHORIZED")
      const twice = yield* cancel(merchant, id, newKey("cancel"))
      assert.strictEqual(codeOf(twice), "invalid_transition", describeAnswer(twice))
      assert.deepStrictEqual(yield* trail(id), { status: "CANCELED", canceled_events: 1n, transactions: 0n, approved: [] })
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:authorization`), [], "the issuer was never asked")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:void`), [])
    }))

  it.effect("authorize and cancel race on a CREATED payment (8 rounds): never a CANCELED payment holding an approved, unvoided authorization", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Cancel race")
      const seen = new Set<string>()
      for (let round = 0; round < 8; round++) {
        const id = yield* createdPayment(merchant, 1_000 + round)
        // Staggered, so that each side sometimes starts first: together, the authorize a little
        // later, the cancel a little later (the outcomes are logged; each is checked as it comes).
        const stagger = [{ authorize_ms: 0, cancel_ms: 0 }, { authorize_ms: 5, cancel_ms: 0 }, { authorize_ms: 0, cancel_ms: 15 }][round % 3]
        const [authorized, canceled] = yield* Effect.all([
          Effect.delay(authorize(merchant, id, newKey("authorize")), Duration.millis(stagger?.authorize_ms ?? 0)),
          Effect.delay(cancel(merchant, id, newKey("cancel")), Duration.millis(stagger?.cancel_ms ?? 0))
        ], { concurrency: 2 })
        const answers = `${describeAnswer(authorized)} / ${describeAnswer(canceled)}`
        const after = yield* trail(id)
        if (canceled.status === 200) {
          // The cancel won outright (authorize: 409, never asked), or came after the authorization (voided it).
          assert.strictEqual(after.status, "CANCELED", answers)
          assert.deepStrictEqual(after.approved, authorized.status === 200 ? ["authorize", "void"] : [], answers)
          if (authorized.status !== 200) assert.strictEqual(codeOf(authorized), "invalid_transition", answers)
          seen.add(authorized.status === 200 ? "authorized, then voided" : "canceled first")
        } else {
          // The authorization was in flight: nothing done, nothing pending; the payment stays AUTHORIZED.
          assert.strictEqual(canceled.status, 409, answers)
          assert.strictEqual(codeOf(canceled), "authorization_in_progress", answers)
          assert.strictEqual(authorized.status, 200, answers)
          assert.deepStrictEqual(after, { status: "AUTHORIZED", canceled_events: 0n, transactions: 0n, approved: ["authorize"] }, answers)
          seen.add("authorization in flight")
        }
      }
      yield* Effect.logInfo("authorize/cancel race outcomes").pipe(Effect.annotateLogs({ seen: [...seen].join("; ") }))
      yield* assertBooksConsistent
    }))

  it.effect("raw SQL: no CREATED -> CANCELED while an authorization is in flight, and no authorization requested for a payment that is not CREATED", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Cancel raw")
      const inFlight = yield* createdPayment(merchant, 300)
      yield* rawAuthorizationKey(merchant.merchantId, inFlight)
      const refused = yield* Effect.flip(rawCancel(inFlight))
      assert.match(String(refused.reason.cause), /cannot be canceled while its authorization is in flight/)
      assert.strictEqual((yield* trail(inFlight)).status, "CREATED")
      const answer = yield* cancel(merchant, inFlight, newKey("cancel"))
      assert.strictEqual(codeOf(answer), "authorization_in_progress", describeAnswer(answer))

      const canceled = yield* createdPayment(merchant, 400)
      yield* rawCancel(canceled)
      assert.strictEqual((yield* trail(canceled)).status, "CANCELED", "with nothing in flight, the raw cancel is a legal transition")
      const late = yield* Effect.flip(rawAuthorizationKey(merchant.merchantId, canceled))
      assert.match(String(late.reason.cause), /cannot request the authorization of payment .*: it is not CREATED/)
      const started = yield* rawAuthorizationKey(merchant.merchantId, canceled, "started")
      const sql = yield* SqlClient.SqlClient
      const advanced = yield* Effect.flip(sql`UPDATE idempotency_keys SET recovery_point = 'authorization_requested' WHERE id = ${started}`)
      assert.match(String(advanced.reason.cause), /it is not CREATED/, "advancing a key to the point is refused too")
    }))
  it.effect("raw SQL: an authorization in flight cannot be hidden from the cancel (key deleted, re-pointed, moved back, finished by hand), and a cancel before authorization needs READ COMMITTED", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchant = yield* createMerchant("Cancel raw guards")
      const id = yield* createdPayment(merchant, 500)
      const other = yield* createdPayment(merchant, 600)
      const key = yield* rawAuthorizationKey(merchant.merchantId, id)
      const refusedWith = (statement: Effect.Effect<unknown, SqlError, SqlClient.SqlClient>, pattern: RegExp) =>
        Effect.flip(statement).pipe(Effect.map((error) => assert.match(String(error.reason.cause), pattern)))
      yield* refusedWith(sql`DELETE FROM idempotency_keys WHERE id = ${key}`, /cannot be deleted: its authorization of payment .* is in flight/)
      yield* refusedWith(
        sql`UPDATE idempotency_keys SET recovery_data = ${JSON.stringify({ payment_id: other })}::jsonb WHERE id = ${key}`,
        /its payment cannot change/
      )
      yield* refusedWith(sql`UPDATE idempotency_keys SET recovery_point = 'started' WHERE id = ${key}`, /can only be finished, not moved back to started/)
      const finishByHand = sql.withTransaction(sql`
        UPDATE idempotency_keys SET recovery_point = 'finished', response_status = 200, response_body = '{}',
               response_content_type = 'application/json', finished_at = clock_timestamp()
        WHERE id = ${key}`)
      yield* refusedWith(finishByHand, /finished its authorization of payment .* without deciding it/)
      const refusedCancel = yield* Effect.flip(rawCancel(id))
      assert.match(String(refusedCancel.reason.cause), /while its authorization is in flight/, "the key is still there, in flight")

      // Nothing in flight for `other`; a cancel in a REPEATABLE READ transaction is still refused:
      // its check would read the keys in a snapshot older than a key committed meanwhile.
      const repeatable = sql.withTransaction(Effect.gen(function* () {
        yield* sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`
        yield* rawCancel(other)
      }))
      yield* refusedWith(repeatable, /only at READ COMMITTED \(not repeatable read\)/)
      assert.deepStrictEqual([(yield* trail(id)).status, (yield* trail(other)).status], ["CREATED", "CREATED"])
    }))
})

/** Voids fail before reaching the simulator (nothing performed) while `voidDown.value`. */
const voidDown = { value: false }
const voidSwitchable = Layer.effect(
  Acquirer,
  Effect.gen(function* () {
    const real = yield* Acquirer
    return Acquirer.of({
      ...real,
      void: (request) =>
        Effect.suspend(() =>
          voidDown.value ? Effect.fail(new AcquirerUnavailable({ operation: "void", reference: request.reference, detail: "test: voids are down" })) : real.void(request)
        )
    })
  })
).pipe(Layer.provide(AcquirerSimulator.layerFaulty({ failAuthorizeAfterPerforming: "first_call" }, { timeout_ms: 300 })))

layer(inProcessAppLayer({ acquirer: voidSwitchable }), layerOptions)("cancel while the authorization's outcome is unknown", (it) => {
  it.effect("the authorization is performed, its answer lost (503): cancel is a stored 409 authorization_in_progress, nothing done or pending; the authorize's key finishes it, then a cancel with a new key voids it", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Cancel in flight")
      const id = yield* createdPayment(merchant, 2_000)
      const authorizeKey = newKey("authorize")
      const lost = yield* authorize(merchant, id, authorizeKey)
      assert.strictEqual(lost.status, 503, describeAnswer(lost))
      assert.strictEqual(codeOf(lost), "acquirer_timeout")
      const cancelKey = newKey("cancel")
      const refused = yield* cancel(merchant, id, cancelKey)
      assert.strictEqual(refused.status, 409, describeAnswer(refused))
      assert.strictEqual(codeOf(refused), "authorization_in_progress")
      assert.include(String(jsonOf(refused)["detail"]), "nothing is pending")
      assert.deepStrictEqual(yield* trail(id), { status: "CREATED", canceled_events: 0n, transactions: 0n, approved: ["authorize"] })
      const again = yield* cancel(merchant, id, cancelKey)
      assert.isTrue(replayed(again), "a decided answer, stored with its key")
      assert.strictEqual(again.text, refused.text)

      const finished = yield* authorize(merchant, id, authorizeKey)
      assert.strictEqual(finished.status, 200, describeAnswer(finished))
      assert.strictEqual(jsonOf(finished)["status"], "AUTHORIZED")
      const voided = yield* cancel(merchant, id, newKey("cancel"))
      assert.strictEqual(voided.status, 200, describeAnswer(voided))
      assert.strictEqual(jsonOf(voided)["status"], "CANCELED")
      assert.deepStrictEqual(yield* trail(id), { status: "CANCELED", canceled_events: 1n, transactions: 0n, approved: ["authorize", "void"] })
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:void`), [{ performed_count: 1, request_count: 1 }])
    }))

  it.effect("an authorize key resumed after its payment was authorized by another key and voided is answered 409 without asking the issuer again (no new hold behind a CANCELED payment)", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Resumed authorize after void")
      const id = yield* createdPayment(merchant, 1_500)
      const first = newKey("authorize")
      assert.strictEqual(codeOf(yield* authorize(merchant, id, first)), "acquirer_timeout")
      const second = yield* authorize(merchant, id, newKey("authorize"))
      assert.strictEqual(jsonOf(second)["status"], "AUTHORIZED", describeAnswer(second))
      assert.strictEqual((yield* cancel(merchant, id, newKey("cancel"))).status, 200)
      const asked = yield* acquirerOperation(`payment:${id}:authorization`)
      const late = yield* authorize(merchant, id, first)
      assert.strictEqual(late.status, 409, describeAnswer(late))
      assert.include(String(jsonOf(late)["detail"]), "CANCELED -> AUTHORIZED")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:authorization`), asked, "the issuer was not asked again")
      assert.isTrue(replayed(yield* authorize(merchant, id, first)), "stored with its key")
    }))

  it.effect("a cancel key resumed after its payment was settled is answered 409 without a void of the captured authorization", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Resumed cancel after settle")
      const id = yield* createdPayment(merchant, 1_800)
      const authorizeKey = newKey("authorize")
      yield* authorize(merchant, id, authorizeKey)
      assert.strictEqual(jsonOf(yield* authorize(merchant, id, authorizeKey))["status"], "AUTHORIZED")
      const cancelKey = newKey("cancel")
      voidDown.value = true
      const down = yield* cancel(merchant, id, cancelKey).pipe(Effect.ensuring(Effect.sync(() => { voidDown.value = false })))
      assert.strictEqual(codeOf(down), "acquirer_unavailable", describeAnswer(down))
      assert.strictEqual((yield* post(merchant, `/v1/payments/${id}/settle`, newKey("settle"))).status, 200)
      const late = yield* cancel(merchant, id, cancelKey)
      assert.strictEqual(late.status, 409, describeAnswer(late))
      assert.include(String(jsonOf(late)["detail"]), "SETTLED -> CANCELED")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:void`), [], "no void was sent for a captured authorization")
    }))
})

layer(
  inProcessAppLayer({
    acquirer: AcquirerSimulator.layerFaulty({ failAuthorizeAfterPerforming: "first_call" }, { timeout_ms: 300 }),
    env: { COMPLETER_INTERVAL_MS: "100", COMPLETER_ABANDONED_AFTER_MS: "1000" }
  }),
  layerOptions
)("cancel while the authorization's outcome is unknown, nobody retrying", (it) => {
  it.effect("the 409 authorization_in_progress leaves nothing pending: the completer finishes the authorization, the payment stays AUTHORIZED and the merchant's capture succeeds", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Cancel left alone")
      const id = yield* createdPayment(merchant, 2_100)
      const lost = yield* authorize(merchant, id, newKey("authorize"))
      assert.strictEqual(codeOf(lost), "acquirer_timeout", describeAnswer(lost))
      const refused = yield* cancel(merchant, id, newKey("cancel"))
      assert.strictEqual(codeOf(refused), "authorization_in_progress", describeAnswer(refused))
      // Bounded: the completer takes a key idle for 1 s, every 100 ms; 15 s is far beyond its run.
      const deadline = Date.now() + 15_000
      let after = yield* trail(id)
      while (after.status !== "AUTHORIZED" && Date.now() < deadline) {
        yield* Effect.sleep(Duration.millis(100))
        after = yield* trail(id)
      }
      assert.strictEqual(after.status, "AUTHORIZED", "the completer finished the authorization")
      // Several more completer rounds: nothing else happens to the payment.
      yield* Effect.sleep(Duration.millis(2_500))
      assert.deepStrictEqual(yield* trail(id), { status: "AUTHORIZED", canceled_events: 0n, transactions: 0n, approved: ["authorize"] })
      const captured = yield* post(merchant, `/v1/payments/${id}/settle`, newKey("settle"))
      assert.strictEqual(captured.status, 200, describeAnswer(captured))
    }))
})
