// The server process killed (`kill -9`) while an authorization waits for the acquirer, then
// restarted on the same port and database: the key resumes from its recovery point and the payment
// is authorized once at the acquirer, whether the client's retry or the completer finishes it.
import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { type Answer, jsonOf, stringField } from "./support/Http.ts"
import { createMerchant, createPayment, newKey, paymentBody, type TestMerchant, TestServer, testServerLayer } from "./support/TestServer.ts"

const Live = testServerLayer({
  env: {
    // The kill lands while our side still waits for the (lost) answer of pm_card_timeout.
    ACQUIRER_TIMEOUT_MS: "20000",
    // The dead run's lease expires soon after the kill; retries get 409 until then.
    IDEMPOTENCY_LOCK_TIMEOUT_MS: "2000",
    // No completer unless a test asks for it at restart: the first test proves the retry path.
    COMPLETER_INTERVAL_MS: "500",
    COMPLETER_ABANDONED_AFTER_MS: "600000"
  }
})

const describeAnswer = (answer: Answer) => `${answer.status} ${answer.text.slice(0, 300)}`

interface Facts {
  readonly performed: ReadonlyArray<number>
  readonly status: string | undefined
  readonly authorizations: number
  readonly authorizedEvents: number
  readonly key: { readonly recovery_point: string; readonly run_count: number; readonly response_status: number | null } | undefined
}

const FactsRow = Schema.Struct({
  performed: Schema.Array(Schema.Number),
  status: Schema.NullOr(Schema.String),
  authorizations: Schema.BigInt,
  authorized_events: Schema.BigInt,
  recovery_point: Schema.NullOr(Schema.String),
  run_count: Schema.NullOr(Schema.Number),
  response_status: Schema.NullOr(Schema.Number)
})

/**
 * What Postgres and the acquirer's own records say about the payment and its authorize key, read
 * in ONE statement (one snapshot): the completer commits the payment and the key together, and
 * reads in separate statements could see the finished key next to the payment as it was before.
 */
const facts = (m: TestMerchant, paymentId: string, key: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(FactsRow)(sql`
      SELECT
        ARRAY(SELECT performed_count FROM acquirer_sim.operations WHERE reference = ${`payment:${paymentId}:authorization`}) AS performed,
        (SELECT status FROM payments WHERE id = ${paymentId}) AS status,
        (SELECT count(*) FROM payment_status_history WHERE payment_id = ${paymentId} AND to_status = 'AUTHORIZED') AS authorizations,
        (SELECT count(*) FROM outbox_events WHERE aggregate_id = ${paymentId} AND event_type = 'payment_authorized') AS authorized_events,
        k.recovery_point, k.run_count, k.response_status
      FROM (SELECT 1) AS one
      LEFT JOIN idempotency_keys k ON k.merchant_id = ${m.merchantId} AND k.idempotency_key = ${key}`)
    if (row === undefined) return assert.fail("the facts query returned no row")
    const result: Facts = {
      performed: row.performed,
      status: row.status ?? undefined,
      authorizations: Number(row.authorizations),
      authorizedEvents: Number(row.authorized_events),
      key: row.recovery_point === null || row.run_count === null
        ? undefined
        : { recovery_point: row.recovery_point, run_count: row.run_count, response_status: row.response_status }
    }
    return result
  })

/**
 * Sends an authorization of a `pm_card_timeout` payment and kills the server once the acquirer has
 * performed it (its row exists) and our side is waiting for the answer that never comes.
 */
const killDuringAuthorization = (m: TestMerchant, requestId?: string) =>
  Effect.gen(function* () {
    const server = yield* TestServer
    const sql = yield* SqlClient.SqlClient
    const created = yield* createPayment(m, newKey(), paymentBody({ payment_method: "pm_card_timeout" }))
    assert.strictEqual(created.status, 201, describeAnswer(created))
    const paymentId = stringField(created, "id")
    const key = newKey("auth")
    const inFlight = yield* Effect.forkChild(
      Effect.result(server.request("POST", `/v1/payments/${paymentId}/authorize`, {
        apiKey: m.apiKey,
        idempotencyKey: key,
        ...(requestId === undefined ? {} : { headers: { "X-Request-Id": requestId, traceparent: `00-${clientTraceId}-00f067aa0ba902b7-01` } })
      }))
    )
    // A barrier, not a guess: the server logs the lost answer once the acquirer has performed it.
    yield* server.process.awaitOutput(["acquirer simulator: answer lost", `"reference":"payment:${paymentId}:authorization"`], 20_000)
    const rows = yield* sql`SELECT 1 FROM acquirer_sim.operations WHERE reference = ${`payment:${paymentId}:authorization`}`
    assert.strictEqual(rows.length, 1, "the acquirer performed the authorization")
    const [key_row] = yield* decodeRows(Schema.Struct({ recovery_point: Schema.String }))(sql`
      SELECT recovery_point FROM idempotency_keys WHERE merchant_id = ${m.merchantId} AND idempotency_key = ${key}`)
    assert.strictEqual(key_row?.recovery_point, "authorization_requested", "the intent was committed before the call")

    yield* server.process.kill9
    const lost = yield* Fiber.join(inFlight)
    assert.strictEqual(lost._tag, "Failure", "the client of the killed process gets no answer")
    return { paymentId, key }
  })

/** The trace the client's authorize request belongs to (sent in its `traceparent`). */
const clientTraceId = "4bf92f3577b34da6a3ce929d0e0e4736"

/** Retries while the dead run's lease lives (409), at most `attempts` times, 250 ms apart. */
const retryWhileInUse = (m: TestMerchant, paymentId: string, key: string, attempts = 60) =>
  Effect.gen(function* () {
    const server = yield* TestServer
    const inUse: Array<Answer> = []
    for (let attempt = 0; attempt < attempts; attempt++) {
      const answer = yield* server.request("POST", `/v1/payments/${paymentId}/authorize`, { apiKey: m.apiKey, idempotencyKey: key })
      if (answer.status !== 409) return { answer, inUse }
      assert.strictEqual(jsonOf(answer)["code"], "idempotency_key_in_use", describeAnswer(answer))
      inUse.push(answer)
      yield* Effect.sleep(250)
    }
    return yield* Effect.die(new Error(`still 409 after ${attempts} retries`))
  })

layer(Live, { excludeTestServices: true, timeout: "90 seconds" })("payments API over HTTP: the server killed (kill -9) mid-authorization", (it) => {
  it.effect("kill -9 while the acquirer's answer is awaited, restart: the retry with the same key answers 200 AUTHORIZED; performed once at the acquirer", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Crash retry")
      const { paymentId, key } = yield* killDuringAuthorization(m)
      const dead = yield* facts(m, paymentId, key)
      assert.strictEqual(dead.status, "CREATED", "nothing of the authorization was committed to the payment")
      assert.isNull(dead.key?.response_status ?? null)

      yield* server.process.restart()
      const { answer } = yield* retryWhileInUse(m, paymentId, key)
      assert.strictEqual(answer.status, 200, describeAnswer(answer))
      assert.isNull(answer.headers.get("idempotent-replayed"), "the retry did the rest of the work; it is not a replay")
      assert.strictEqual(jsonOf(answer)["status"], "AUTHORIZED")

      const after = yield* facts(m, paymentId, key)
      assert.deepStrictEqual(after.performed, [1], "authorized at most once at the acquirer")
      assert.strictEqual(after.status, "AUTHORIZED")
      assert.strictEqual(after.authorizations, 1)
      assert.strictEqual(after.authorizedEvents, 1)
      assert.deepStrictEqual(after.key, { recovery_point: "finished", run_count: 2, response_status: 200 })

      // From now on the key replays the stored answer.
      const replay = yield* retryWhileInUse(m, paymentId, key)
      assert.strictEqual(replay.answer.headers.get("idempotent-replayed"), "true")
      assert.strictEqual(replay.answer.text, answer.text)
    }))

  it.effect("kill -9 mid-authorization and nobody retries: after the restart the completer finishes it, under the client's X-Request-Id (history, event, log line); the client's later retry replays", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const sql = yield* SqlClient.SqlClient
      const m = yield* createMerchant("Crash completer")
      const requestId = `order-7731-auth-${newKey("rid")}`
      const { paymentId, key } = yield* killDuringAuthorization(m, requestId)

      yield* server.process.restart({ COMPLETER_ABANDONED_AFTER_MS: "500" })
      let finished = yield* facts(m, paymentId, key)
      for (let attempt = 0; attempt < 60 && finished.key?.recovery_point !== "finished"; attempt++) {
        yield* Effect.sleep(250)
        finished = yield* facts(m, paymentId, key)
      }
      assert.deepStrictEqual(finished.key, { recovery_point: "finished", run_count: 2, response_status: 200 }, "finished by the completer within 15 s")
      assert.deepStrictEqual(finished.performed, [1])
      assert.strictEqual(finished.status, "AUTHORIZED")
      assert.strictEqual(finished.authorizations, 1)
      // The completer's run carries the client's correlation id, kept with the key (0118): it was a
      // new one, so the merchant's X-Request-Id did not find the end of its own request.
      const Carried = Schema.Struct({ history: Schema.NullOr(Schema.String), event: Schema.NullOr(Schema.String), history_trace: Schema.NullOr(Schema.String), event_trace: Schema.NullOr(Schema.String) })
      const [carried] = yield* decodeRows(Carried)(sql`
        SELECT (SELECT correlation_id FROM payment_status_history WHERE payment_id = ${paymentId} AND to_status = 'AUTHORIZED') AS history,
               (SELECT headers ->> 'correlation_id' FROM outbox_events WHERE aggregate_id = ${paymentId} AND event_type = 'payment_authorized') AS event,
               (SELECT split_part(traceparent, '-', 2) FROM payment_status_history WHERE payment_id = ${paymentId} AND to_status = 'AUTHORIZED') AS history_trace,
               (SELECT split_part(headers ->> 'traceparent', '-', 2) FROM outbox_events WHERE aggregate_id = ${paymentId} AND event_type = 'payment_authorized') AS event_trace`)
      // And the client's trace (0121): the trace id of the request's traceparent, on the row and the event.
      assert.deepStrictEqual(carried, { history: requestId, event: requestId, history_trace: clientTraceId, event_trace: clientTraceId })
      const finishedLine = server.process.output().split("\n").find((line) => line.includes("completer finished an abandoned key") && line.includes(paymentId)) ?? ""
      assert.include(finishedLine, `"correlation_id":"${requestId}"`)

      const retry = yield* server.request("POST", `/v1/payments/${paymentId}/authorize`, { apiKey: m.apiKey, idempotencyKey: key })
      assert.strictEqual(retry.status, 200, describeAnswer(retry))
      assert.strictEqual(retry.headers.get("idempotent-replayed"), "true")
      assert.strictEqual(jsonOf(retry)["status"], "AUTHORIZED")
    }))
})
