// Refunds and voids against the real server process, killed (`kill -9`) between the acquirer's
// work and our commit (issue 19): the acquirer performs the refund / the void and loses its
// answer, our side waits, the process dies. After the restart the client's retry (refund) or the
// completer (void) finishes the work from the key's recovery point: performed once at the
// acquirer, one reversal, the cap held meanwhile by the PENDING refund, ledger_verify() empty.
import { assert, layer } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { assertLedgerVerifies } from "@pay/settlement/test-support"
import { Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { type Answer, jsonOf, stringField } from "./support/Http.ts"
import { createMerchant, createPayment, newKey, paymentBody, type TestMerchant, TestServer, testServerLayer } from "./support/TestServer.ts"

const Live = testServerLayer({
  env: {
    ACQUIRER_FAULTS: "refund_answer_lost_first_call,void_answer_lost_first_call",
    // Our side would wait this long for the lost answer: the kill lands first.
    ACQUIRER_TIMEOUT_MS: "20000",
    IDEMPOTENCY_LOCK_TIMEOUT_MS: "2000",
    COMPLETER_INTERVAL_MS: "300",
    COMPLETER_ABANDONED_AFTER_MS: "600000"
  }
})

const describeAnswer = (answer: Answer) => `${answer.status} ${answer.text.slice(0, 300)}`

const postAs = (m: TestMerchant, path: string, key: string, json?: unknown) =>
  Effect.gen(function* () {
    const server = yield* TestServer
    return yield* server.request("POST", path, { apiKey: m.apiKey, idempotencyKey: key, ...(json === undefined ? {} : { json }) })
  })

/** A payment of 10,000 EUR minor units taken to `until` over the API (default fees: net 9,680). */
const paymentUpTo = (m: TestMerchant, until: "AUTHORIZED" | "SETTLED") =>
  Effect.gen(function* () {
    const created = yield* createPayment(m, newKey(), paymentBody({ amount: 10_000, currency: "EUR", payment_method: "pm_card_visa" }))
    assert.strictEqual(created.status, 201, describeAnswer(created))
    const id = stringField(created, "id")
    assert.strictEqual((yield* postAs(m, `/v1/payments/${id}/authorize`, newKey("auth"))).status, 200)
    if (until === "SETTLED") assert.strictEqual((yield* postAs(m, `/v1/payments/${id}/settle`, newKey("settle"))).status, 200)
    return id
  })

/** Retries while the dead run's lease lives (409 idempotency_key_in_use), bounded. */
const retryWhileInUse = (m: TestMerchant, path: string, key: string, json?: unknown) =>
  Effect.gen(function* () {
    for (let attempt = 0; attempt < 80; attempt++) {
      const answer = yield* postAs(m, path, key, json)
      if (!(answer.status === 409 && jsonOf(answer)["code"] === "idempotency_key_in_use")) return answer
      yield* Effect.sleep(250)
    }
    return yield* Effect.die(new Error(`${path} still in use after 80 retries`))
  })

const RefundFacts = Schema.Struct({
  statuses: Schema.Array(Schema.String),
  performed: Schema.Array(Schema.Number),
  postings: Schema.BigInt
})

const refundFacts = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(RefundFacts)(sql`
      SELECT ARRAY(SELECT status FROM refunds WHERE payment_id = ${paymentId} ORDER BY created_at) AS statuses,
             ARRAY(SELECT performed_count FROM acquirer_sim.operations WHERE payment_id = ${paymentId} AND operation = 'refund') AS performed,
             (SELECT count(*) FROM transactions WHERE reference LIKE ${`payment:${paymentId}:refund:%`}) AS postings`)
    return row
  })

layer(Live, { excludeTestServices: true, timeout: "120 seconds" })("refunds and voids: the server killed (kill -9) between the acquirer and the commit", (it) => {
  it.effect("a refund performed at the acquirer, answer lost, kill -9: PENDING holds the cap; after restart the same key finishes it (201 SUCCEEDED), refunded once, one reversal", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Refund crash")
      const id = yield* paymentUpTo(m, "SETTLED")
      const key = newKey("refund")
      const path = `/v1/payments/${id}/refunds`
      const inFlight = yield* Effect.forkChild(Effect.result(postAs(m, path, key, { amount: 6_000 })))
      // A barrier, not a guess: the server logs the lost answer once the acquirer has performed it.
      yield* server.process.awaitOutput(["acquirer simulator: answer lost", "\"operation\":\"refund\""], 20_000)
      yield* server.process.kill9
      assert.strictEqual((yield* Fiber.join(inFlight))._tag, "Failure", "the client of the killed process gets no answer")
      assert.deepStrictEqual(yield* refundFacts(id), { statuses: ["PENDING"], performed: [1], postings: 0n })

      yield* server.process.restart()
      // Meanwhile the PENDING refund counts: 6,000 + 4,001 > 10,000.
      const over = yield* retryWhileInUse(m, path, newKey("refund"), { amount: 4_001 })
      assert.strictEqual(over.status, 422, describeAnswer(over))
      const finished = yield* retryWhileInUse(m, path, key, { amount: 6_000 })
      assert.strictEqual(finished.status, 201, describeAnswer(finished))
      assert.strictEqual(jsonOf(finished)["status"], "SUCCEEDED")
      assert.deepStrictEqual(yield* refundFacts(id), { statuses: ["SUCCEEDED"], performed: [1], postings: 1n })
      yield* assertLedgerVerifies
    }))

  it.effect("a void performed at the acquirer, answer lost, kill -9, nobody retries: after restart the completer cancels it, voided once; the client's retry replays", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const sql = yield* SqlClient.SqlClient
      const m = yield* createMerchant("Void crash")
      const id = yield* paymentUpTo(m, "AUTHORIZED")
      const key = newKey("cancel")
      const path = `/v1/payments/${id}/cancel`
      const inFlight = yield* Effect.forkChild(Effect.result(postAs(m, path, key)))
      yield* server.process.awaitOutput(["acquirer simulator: answer lost", `"reference":"payment:${id}:void"`], 20_000)
      yield* server.process.kill9
      assert.strictEqual((yield* Fiber.join(inFlight))._tag, "Failure")

      yield* server.process.restart({ COMPLETER_ABANDONED_AFTER_MS: "500" })
      const statusOf = decodeRows(Schema.Struct({ status: Schema.String, performed: Schema.Array(Schema.Number) }))(sql`
        SELECT status, ARRAY(SELECT performed_count FROM acquirer_sim.operations WHERE reference = ${`payment:${id}:void`}) AS performed
        FROM payments WHERE id = ${id}`)
      let [row] = yield* statusOf
      for (let attempt = 0; attempt < 80 && row?.status !== "CANCELED"; attempt++) {
        yield* Effect.sleep(250)
        ;[row] = yield* statusOf
      }
      assert.deepStrictEqual(row, { status: "CANCELED", performed: [1] }, "canceled by the completer within 20 s, voided once")
      const retry = yield* retryWhileInUse(m, path, key)
      assert.strictEqual(retry.status, 200, describeAnswer(retry))
      assert.strictEqual(retry.headers.get("idempotent-replayed"), "true")
      assert.strictEqual(jsonOf(retry)["status"], "CANCELED")
    }))
})
