// Void (issue 19): POST /v1/payments/{id}/cancel over real HTTP, on the in-process app (a fresh
// database; the acquirer swappable for a faulty one). AUTHORIZED → CANCELED, terminal; the
// acquirer releases the authorization under our reference `payment:<id>:void`, performed once;
// event payment_canceled; no money moves (no ledger transaction, ledger_verify() empty).
import { assert, layer } from "@effect/vitest"
import { AcquirerSimulator } from "@pay/acquirer"
import { decodeRows } from "@pay/infra"
import { acquirerOperation, assertBooksConsistent } from "@pay/settlement/test-support"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { authorizedPayment, codeOf, describeAnswer, jsonOf, newKey, post, replayed, settle, type TestMerchant } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const layerOptions = { excludeTestServices: true, timeout: "60 seconds" } as const

const cancel = (m: TestMerchant, paymentId: string, key: string) => post(m, `/v1/payments/${paymentId}/cancel`, key)

/** What the database holds about the payment's money and events: nothing moved, one payment_canceled. */
const paymentTrail = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ transactions: Schema.BigInt, canceled_events: Schema.BigInt, status: Schema.String }))(sql`
      SELECT (SELECT count(*) FROM transactions t WHERE t.reference LIKE ${`payment:${paymentId}:%`}) AS transactions,
             (SELECT count(*) FROM outbox_events o WHERE o.aggregate_id = ${paymentId} AND o.event_type = 'payment_canceled') AS canceled_events,
             (SELECT status FROM payments WHERE id = ${paymentId}) AS status`)
    return row
  })

const approvedAtAcquirer = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* decodeRows(Schema.Struct({ operation: Schema.String }))(sql`
      SELECT operation FROM acquirer_sim.operations
      WHERE payment_id = ${paymentId} AND outcome = 'approved' AND operation <> 'authorize'`)
    return rows.map((row) => row.operation)
  })

layer(inProcessAppLayer(), layerOptions)("void: POST /v1/payments/{id}/cancel (in-process app over HTTP)", (it) => {
  it.effect("cancel an AUTHORIZED payment: CANCELED, replayed by its key, refused again and refused to settle; void performed once, no money moved", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Void")
      const id = yield* authorizedPayment(merchant, 2_500n, "EUR")
      const key = newKey("cancel")
      const first = yield* cancel(merchant, id, key)
      assert.strictEqual(first.status, 200, describeAnswer(first))
      assert.strictEqual(jsonOf(first)["status"], "CANCELED")
      const again = yield* cancel(merchant, id, key)
      assert.isTrue(replayed(again))
      assert.strictEqual(again.text, first.text, "byte for byte")
      const other = yield* cancel(merchant, id, newKey("cancel"))
      assert.strictEqual(other.status, 409, describeAnswer(other))
      assert.strictEqual(codeOf(other), "invalid_transition")
      const settled = yield* settle(merchant, id, newKey("settle"))
      assert.strictEqual(settled.status, 409, describeAnswer(settled))
      assert.include(String(jsonOf(settled)["detail"]), "CANCELED -> SETTLED")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:void`), [{ performed_count: 1, request_count: 1 }])
      assert.deepStrictEqual(yield* paymentTrail(id), { transactions: 0n, canceled_events: 1n, status: "CANCELED" })
      yield* assertBooksConsistent
    }))

  it.effect("cancel a SETTLED payment is a stored 409 invalid_transition; the acquirer is not asked (a CREATED one: cancel-before-authorization.test.ts)", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Void refused")
      const settledId = yield* authorizedPayment(merchant, 800n, "EUR")
      assert.strictEqual((yield* settle(merchant, settledId, newKey("settle"))).status, 200)
      const key = newKey("cancel")
      const late = yield* cancel(merchant, settledId, key)
      assert.strictEqual(late.status, 409, describeAnswer(late))
      assert.include(String(jsonOf(late)["detail"]), "SETTLED -> CANCELED")
      assert.isTrue(replayed(yield* cancel(merchant, settledId, key)), "a decided refusal is stored with its key")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${settledId}:void`), [])
    }))

  it.effect("settle and cancel race on one authorization (8 rounds): exactly one wins at our side AND at the acquirer", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Void race")
      for (let round = 0; round < 8; round++) {
        const id = yield* authorizedPayment(merchant, 1_000n + BigInt(round), "EUR")
        const [settled, canceled] = yield* Effect.all([settle(merchant, id, newKey("settle")), cancel(merchant, id, newKey("cancel"))], {
          concurrency: 2
        })
        const statuses = [settled.status, canceled.status].sort()
        assert.deepStrictEqual(statuses, [200, 409], `${describeAnswer(settled)} / ${describeAnswer(canceled)}`)
        const winner = settled.status === 200 ? "SETTLED" : "CANCELED"
        const trail = yield* paymentTrail(id)
        assert.strictEqual(trail?.status, winner)
        assert.deepStrictEqual(yield* approvedAtAcquirer(id), [winner === "SETTLED" ? "capture" : "void"])
      }
      yield* assertBooksConsistent
    }))

  it.effect("raw SQL: CANCELED is terminal, and reaching it needs its payment_canceled event", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchant = yield* createMerchant("Void raw")
      const id = yield* authorizedPayment(merchant, 900n, "EUR")
      const wrongEvent = sql.withTransaction(Effect.gen(function* () {
        yield* sql`UPDATE payments SET status = 'CANCELED', version = version + 1, updated_at = updated_at WHERE id = ${id}`
        yield* sql`
          INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
          SELECT id, version, 'AUTHORIZED', 'CANCELED', 'psql', 'raw', now() FROM payments WHERE id = ${id}`
        yield* sql`
          INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
          SELECT gen_random_uuid(), 'payment', id, 'payment_failed', jsonb_build_object('version', version) FROM payments WHERE id = ${id}`
      }))
      const refused = yield* Effect.flip(wrongEvent)
      assert.match(refused.message + String(refused.reason.cause), /without its outbox event payment_canceled/)
      assert.strictEqual((yield* paymentTrail(id))?.status, "AUTHORIZED")
      assert.strictEqual((yield* cancel(merchant, id, newKey("cancel"))).status, 200)
      const revive = yield* Effect.flip(sql`UPDATE payments SET status = 'AUTHORIZED', version = version + 1 WHERE id = ${id}`)
      assert.match(String(revive.reason.cause), /CANCELED \(terminal\)/)
    }))
})

layer(
  inProcessAppLayer({ acquirer: AcquirerSimulator.layerFaulty({ failVoidAfterPerforming: "first_call" }, { timeout_ms: 300 }) }),
  layerOptions
)("void with a lost acquirer answer", (it) => {
  it.effect("the void is performed but its answer is lost: 503 acquirer_timeout, AUTHORIZED; the same key then cancels, the void performed once", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Void lost answer")
      const id = yield* authorizedPayment(merchant, 3_000n, "EUR")
      const key = newKey("cancel")
      const lost = yield* cancel(merchant, id, key)
      assert.strictEqual(lost.status, 503, describeAnswer(lost))
      assert.strictEqual(codeOf(lost), "acquirer_timeout")
      assert.strictEqual((yield* paymentTrail(id))?.status, "AUTHORIZED")
      const retried = yield* cancel(merchant, id, key)
      assert.strictEqual(retried.status, 200, describeAnswer(retried))
      assert.strictEqual(jsonOf(retried)["status"], "CANCELED")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:void`), [{ performed_count: 1, request_count: 2 }])
      assert.deepStrictEqual(yield* paymentTrail(id), { transactions: 0n, canceled_events: 1n, status: "CANCELED" })
    }))
})

layer(
  inProcessAppLayer({ acquirer: AcquirerSimulator.layerFaulty({ failCaptureAfterPerforming: "first_call" }, { timeout_ms: 300 }) }),
  layerOptions
)("a key retried after its 503, when another key finished the same capture meanwhile", (it) => {
  it.effect("settle A: 503 (the capture performed, its answer lost); settle B, same amount: 200; A's retry answers 200 SETTLED, as its 503 promised (not a 409 SETTLED -> SETTLED); captured once, one posting", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Finished by another key")
      const id = yield* authorizedPayment(merchant, 4_000n, "EUR")
      const keyA = newKey("settle-a")
      const lost = yield* settle(merchant, id, keyA)
      assert.strictEqual(lost.status, 503, describeAnswer(lost))
      assert.strictEqual(codeOf(lost), "acquirer_timeout")
      const other = yield* settle(merchant, id, newKey("settle-b"))
      assert.strictEqual(other.status, 200, describeAnswer(other))
      const retried = yield* settle(merchant, id, keyA)
      assert.strictEqual(retried.status, 200, describeAnswer(retried))
      assert.isFalse(replayed(retried), "the key's own run finished it")
      assert.strictEqual(jsonOf(retried)["status"], "SETTLED")
      assert.strictEqual(jsonOf(retried)["captured_amount"], 4_000)
      assert.isTrue(replayed(yield* settle(merchant, id, keyA)), "stored: the key replays it")
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 3 }])
      assert.deepStrictEqual(yield* paymentTrail(id), { transactions: 1n, canceled_events: 0n, status: "SETTLED" }, "one posting")
      // A fresh key after the payment is settled is still refused: it asked nothing of the acquirer.
      const fresh = yield* settle(merchant, id, newKey("settle-c"))
      assert.strictEqual(fresh.status, 409, describeAnswer(fresh))
      yield* assertBooksConsistent
    }))
})

/**
 * The loser of a race at the acquirer, in rounds: both requests read the payment AUTHORIZED and
 * ask the (100 ms) acquirer, which approves one capture or void per authorization and declines
 * the other `authorization_captured` / `authorization_voided`. The loser's stored 409
 * invalid_transition names that cause; it never says the transition from AUTHORIZED is not allowed
 * (it is: the status read before the race allowed it). A loser that came in after the winner
 * committed is refused by the status it read (e.g. SETTLED -> SETTLED), which is true too.
 */
const raceRounds = 4

const raceLoss = (m: TestMerchant, contenders: (id: string) => ReadonlyArray<{ readonly path: string; readonly key: string; readonly json?: unknown }>) =>
  Effect.gen(function* () {
    const id = yield* authorizedPayment(m, 2_000n, "EUR")
    const requests = contenders(id)
    const answers = yield* Effect.all(
      requests.map((request) => post(m, request.path, request.key, request.json === undefined ? {} : { json: request.json })),
      { concurrency: "unbounded" }
    )
    assert.deepStrictEqual(answers.map((a) => a.status).sort(), [200, 409], answers.map(describeAnswer).join(" / "))
    const loserIndex = answers.findIndex((a) => a.status === 409)
    const loser = answers[loserIndex]
    const loserRequest = requests[loserIndex]
    if (loser === undefined || loserRequest === undefined) return assert.fail("no loser")
    assert.strictEqual(codeOf(loser), "invalid_transition", describeAnswer(loser))
    const detail = String(jsonOf(loser)["detail"])
    assert.notInclude(detail, "AUTHORIZED ->", "the status read before the race allowed the transition")
    // The loser's key replays the same words.
    const again = yield* post(m, loserRequest.path, loserRequest.key, loserRequest.json === undefined ? {} : { json: loserRequest.json })
    assert.isTrue(replayed(again))
    assert.strictEqual(again.text, loser.text)
    return { id, detail, loserPath: loserRequest.path }
  })

layer(inProcessAppLayer({ acquirer: AcquirerSimulator.layerWith({ latency_ms: 100 }) }), layerOptions)("the loser of a race at the acquirer hears why (100 ms acquirer)", (it) => {
  it.effect("two settles of different amounts: the loser's 409 invalid_transition says the authorization was already captured by another request", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Capture race detail")
      const details: Array<string> = []
      for (let round = 0; round < raceRounds; round++) {
        const { id, detail } = yield* raceLoss(merchant, (id) => [
          { path: `/v1/payments/${id}/settle`, key: newKey("settle"), json: { amount: 700 } },
          { path: `/v1/payments/${id}/settle`, key: newKey("settle"), json: { amount: 900 } }
        ])
        const atAcquirer = `payment ${id} cannot settle: the acquirer refused the capture (authorization_captured), the authorization was already captured by another request`
        assert.oneOf(detail, [atAcquirer, `payment ${id} cannot settle: SETTLED -> SETTLED is not an allowed transition`])
        details.push(detail === atAcquirer ? "acquirer" : "late")
      }
      assert.include(details, "acquirer", `the requests raced at the acquirer at least once: ${details.join(", ")}`)
      yield* assertBooksConsistent
    }))

  it.effect("settle against cancel: the loser's 409 says the authorization was already captured, or already voided, by another request", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Void race detail")
      const details: Array<string> = []
      for (let round = 0; round < raceRounds; round++) {
        const { id, detail, loserPath } = yield* raceLoss(merchant, (id) => [
          { path: `/v1/payments/${id}/settle`, key: newKey("settle") },
          { path: `/v1/payments/${id}/cancel`, key: newKey("cancel") }
        ])
        const atAcquirer = loserPath.endsWith("/cancel")
          ? `payment ${id} cannot cancel: the acquirer refused the void (authorization_captured), the authorization was already captured by another request`
          : `payment ${id} cannot settle: the acquirer refused the capture (authorization_voided), the authorization was already voided (canceled by another request, or released at its expiry)`
        const late = loserPath.endsWith("/cancel")
          ? `payment ${id} cannot cancel: SETTLED -> CANCELED is not an allowed transition`
          : `payment ${id} cannot settle: CANCELED -> SETTLED is not an allowed transition`
        assert.oneOf(detail, [atAcquirer, late])
        details.push(detail === atAcquirer ? "acquirer" : "late")
      }
      assert.include(details, "acquirer", `the requests raced at the acquirer at least once: ${details.join(", ")}`)
      yield* assertBooksConsistent
    }))
})
