// The idempotent payments API over real HTTP: the server process (`node packages/server/src/main.ts`)
// on a fresh database, the run's Redis and Kafka. What each test asserts is read back from Postgres.
import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import { generatePaymentId } from "@pay/domain"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { type Answer, jsonOf, stringField } from "./support/Http.ts"
import {
  createMerchant,
  createPayment,
  newKey,
  paymentBody,
  paymentCount,
  type TestMerchant,
  TestServer,
  testServerLayer,
  writtenRows
} from "./support/TestServer.ts"

// The simulated acquirer takes 100 ms per call, so concurrent authorizations really overlap.
const Live = testServerLayer({ env: { ACQUIRER_LATENCY_MS: "100" } })

const post = (m: TestMerchant, path: string, key: string) =>
  Effect.gen(function* () {
    const server = yield* TestServer
    return yield* server.request("POST", path, { apiKey: m.apiKey, idempotencyKey: key })
  })

const get = (m: TestMerchant, path: string) =>
  Effect.gen(function* () {
    const server = yield* TestServer
    return yield* server.request("GET", path, { apiKey: m.apiKey })
  })

const replayed = (answer: Answer) => answer.headers.get("idempotent-replayed") === "true"

const describeAnswer = (answer: Answer) => `${answer.status} ${answer.text.slice(0, 300)}`

const acquirerOperation = (reference: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* decodeRows(Schema.Struct({ performed_count: Schema.Number, request_count: Schema.Number }))(sql`
      SELECT performed_count, request_count FROM acquirer_sim.operations WHERE reference = ${reference}`)
  })

layer(Live, { excludeTestServices: true, timeout: "60 seconds" })("payments API over HTTP: idempotency (real server process)", (it) => {
  it.effect("the same request twice: one payment; the second answer is the first one's exact bytes with Idempotent-Replayed: true", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Twice")
      const key = newKey()
      const first = yield* createPayment(m, key)
      assert.strictEqual(first.status, 201, describeAnswer(first))
      assert.isFalse(replayed(first))
      assert.strictEqual(first.contentType, "application/json")

      const second = yield* createPayment(m, key)
      assert.strictEqual(second.status, 201)
      assert.isTrue(replayed(second), "the replay is marked")
      assert.strictEqual(second.text, first.text, "byte-identical body")
      assert.strictEqual(second.contentType, first.contentType)

      // The same JSON with other key order and whitespace is the same request.
      const reordered = yield* createPayment(m, key, undefined, {
        rawBody: ` {\n  "payment_method": "pm_card_visa", "currency":"USD",\n "amount": 1050 } `
      })
      assert.strictEqual(reordered.status, 201)
      assert.isTrue(replayed(reordered))
      assert.strictEqual(reordered.text, first.text)

      assert.strictEqual(yield* paymentCount(m.merchantId), 1)
    }))

  it.effect("metadata keys come back in one order: the create's answer, its replay, a GET and the list agree (the jsonb column's order)", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Ordered")
      const metadata = { zeta: "1", a: "2", mm: "3", "é": "4", e: "5", "10": "6", b_long_key: "7" }
      const key = newKey()
      const created = yield* createPayment(m, key, paymentBody({ metadata }))
      assert.strictEqual(created.status, 201, describeAnswer(created))
      const keysOf = (answer: Answer) => {
        const stored = jsonOf(answer)["metadata"]
        return typeof stored === "object" && stored !== null ? Object.keys(stored) : []
      }
      const id = stringField(created, "id")
      const fetched = yield* get(m, `/v1/payments/${id}`)
      assert.deepStrictEqual(keysOf(created), keysOf(fetched))
      assert.deepStrictEqual(keysOf(created), ["10", "a", "e", "mm", "é", "zeta", "b_long_key"])
      assert.strictEqual((yield* createPayment(m, key, paymentBody({ metadata }))).text, created.text)
      const list = yield* get(m, "/v1/payments?limit=1")
      assert.include(list.text, JSON.stringify(jsonOf(fetched)["metadata"]))
    }))

  it.effect("a client that hangs up mid-settle: the server finishes the settle, and the retry with the same key gets its answer (not 409 for the lease's 30 s)", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Hangs up")
      for (let round = 0; round < 3; round++) {
        const id = stringField(yield* createPayment(m, newKey()), "id")
        assert.strictEqual((yield* post(m, `/v1/payments/${id}/authorize`, newKey("auth"))).status, 200)
        const key = newKey("settle")
        // The client gives up while the acquirer (100 ms) is being asked for the capture.
        const cut = yield* Effect.result(server.request("POST", `/v1/payments/${id}/settle`, { apiKey: m.apiKey, idempotencyKey: key, timeout_ms: 40 }))
        assert.strictEqual(cut._tag, "Failure", "the client hung up before the answer")
        yield* Effect.sleep("700 millis")
        const retry = yield* post(m, `/v1/payments/${id}/settle`, key)
        assert.strictEqual(retry.status, 200, describeAnswer(retry))
        assert.isTrue(replayed(retry), "the retry replays the answer the server finished")
        assert.strictEqual(jsonOf(retry)["status"], "SETTLED")
      }
    }))

  it.effect("a 201 says where the created resource is (Location), the same on a replay; GET there answers it", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Located")
      const key = newKey()
      const first = yield* createPayment(m, key)
      const id = stringField(first, "id")
      assert.strictEqual(first.headers.get("location"), `/v1/payments/${id}`)
      const again = yield* createPayment(m, key)
      assert.isTrue(replayed(again))
      assert.strictEqual(again.headers.get("location"), `/v1/payments/${id}`)
      const fetched = yield* get(m, `/v1/payments/${id}`)
      assert.strictEqual(fetched.status, 200)
      assert.strictEqual(stringField(fetched, "id"), id)

      // A 200 of a transition creates nothing: no Location.
      const authorized = yield* post(m, `/v1/payments/${id}/authorize`, newKey("auth"))
      assert.strictEqual(authorized.status, 200, describeAnswer(authorized))
      assert.isNull(authorized.headers.get("location"))
      const settled = yield* post(m, `/v1/payments/${id}/settle`, newKey("settle"))
      assert.strictEqual(settled.status, 200, describeAnswer(settled))

      const server = yield* TestServer
      const refund = yield* server.request("POST", `/v1/payments/${id}/refunds`, { apiKey: m.apiKey, idempotencyKey: newKey("refund"), json: { amount: 500 } })
      assert.strictEqual(refund.status, 201, describeAnswer(refund))
      const refundId = stringField(refund, "id")
      assert.strictEqual(refund.headers.get("location"), `/v1/payments/${id}/refunds/${refundId}`)
      assert.strictEqual((yield* get(m, `/v1/payments/${id}/refunds/${refundId}`)).status, 200)
    }))

  it.effect("create → authorize → settle: each POST replays; a second settle with a new key is 409 invalid_transition; a decline is stored and replayed", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Flow")
      const created = yield* createPayment(m, newKey())
      const id = stringField(created, "id")

      const authorizeKey = newKey("auth")
      const authorized = yield* post(m, `/v1/payments/${id}/authorize`, authorizeKey)
      assert.strictEqual(authorized.status, 200, describeAnswer(authorized))
      assert.strictEqual(jsonOf(authorized)["status"], "AUTHORIZED")
      const authorizedAgain = yield* post(m, `/v1/payments/${id}/authorize`, authorizeKey)
      assert.isTrue(replayed(authorizedAgain))
      assert.strictEqual(authorizedAgain.text, authorized.text)

      const settleKey = newKey("settle")
      const settled = yield* post(m, `/v1/payments/${id}/settle`, settleKey)
      assert.strictEqual(settled.status, 200, describeAnswer(settled))
      assert.strictEqual(jsonOf(settled)["status"], "SETTLED")
      const settledAgain = yield* post(m, `/v1/payments/${id}/settle`, settleKey)
      assert.isTrue(replayed(settledAgain))
      assert.strictEqual(settledAgain.text, settled.text)

      const secondSettle = yield* post(m, `/v1/payments/${id}/settle`, newKey("settle"))
      assert.strictEqual(secondSettle.status, 409, describeAnswer(secondSettle))
      assert.strictEqual(jsonOf(secondSettle)["code"], "invalid_transition")
      assert.strictEqual(secondSettle.contentType, "application/problem+json")

      // Authorized and captured once each at the acquirer, whatever was replayed.
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:authorization`), [{ performed_count: 1, request_count: 1 }])
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 1 }])

      // A decline is a decided outcome: stored, and the retry replays it.
      const declinedPayment = yield* createPayment(m, newKey(), paymentBody({ payment_method: "pm_card_declined" }))
      const declinedId = stringField(declinedPayment, "id")
      const declineKey = newKey("auth")
      const declined = yield* post(m, `/v1/payments/${declinedId}/authorize`, declineKey)
      assert.strictEqual(declined.status, 200, describeAnswer(declined))
      assert.strictEqual(jsonOf(declined)["status"], "FAILED")
      assert.strictEqual(jsonOf(declined)["failure_code"], "card_declined")
      const declinedAgain = yield* post(m, `/v1/payments/${declinedId}/authorize`, declineKey)
      assert.isTrue(replayed(declinedAgain))
      assert.strictEqual(declinedAgain.text, declined.text)
    }))

  it.effect("50 concurrent creates with one key: exactly one payment; every answer is that payment (201) or 409 idempotency_key_in_use", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Storm")
      const key = newKey()
      const answers = yield* Effect.forEach(Array.from({ length: 50 }), () => createPayment(m, key), { concurrency: "unbounded" })

      const created = answers.filter((a) => a.status === 201)
      const busy = answers.filter((a) => a.status === 409)
      assert.strictEqual(created.length + busy.length, 50, answers.filter((a) => a.status !== 201 && a.status !== 409).map(describeAnswer).join("\n"))
      for (const answer of busy) {
        assert.strictEqual(jsonOf(answer)["code"], "idempotency_key_in_use")
        assert.strictEqual(answer.contentType, "application/problem+json")
        assert.strictEqual(answer.headers.get("retry-after"), "1", "a 409 in use says when to retry")
      }
      const ids = new Set(created.map((a) => stringField(a, "id")))
      assert.strictEqual(ids.size, 1, `never two ids: ${[...ids].join(", ")}`)
      assert.strictEqual(created.filter((a) => !replayed(a)).length, 1, "one execution answered; the other 201s are replays")
      assert.strictEqual(new Set(created.map((a) => a.text)).size, 1, "every 201 carries the same bytes")

      const [row] = yield* (yield* SqlClient.SqlClient)<{ n: bigint }>`SELECT count(*) AS n FROM payments WHERE merchant_id = ${m.merchantId}`
      assert.strictEqual(Number(row?.n), 1)

      // Once it settled down, the key replays the one payment.
      const after = yield* createPayment(m, key)
      assert.isTrue(replayed(after))
      assert.strictEqual(stringField(after, "id"), [...ids][0])
    }))

  it.effect("50 concurrent authorizations with one key (100 ms acquirer): one acquirer operation; answers are the 200 replay or 409 with Retry-After: 1, and some 409s prove the overlap", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Authorize storm")
      const id = stringField(yield* createPayment(m, newKey()), "id")
      const key = newKey("auth")
      const answers = yield* Effect.forEach(Array.from({ length: 50 }), () => post(m, `/v1/payments/${id}/authorize`, key), {
        concurrency: "unbounded"
      })
      const ok = answers.filter((a) => a.status === 200)
      const busy = answers.filter((a) => a.status === 409)
      assert.strictEqual(ok.length + busy.length, 50, answers.filter((a) => a.status !== 200 && a.status !== 409).map(describeAnswer).join("\n"))
      assert.isAbove(busy.length, 0, "the requests overlapped the 100 ms acquirer call")
      for (const answer of busy) {
        assert.strictEqual(jsonOf(answer)["code"], "idempotency_key_in_use")
        // "Retry with the same key after a short wait" (docs/api.md): the wait, in seconds.
        assert.strictEqual(answer.headers.get("retry-after"), "1", describeAnswer(answer))
      }
      // Exactly one request executed (and answered it itself); every other 200 is its replay.
      assert.strictEqual(ok.filter((a) => !replayed(a)).length, 1, "exactly one execution answered without the replay header")
      for (const answer of ok) assert.strictEqual(jsonOf(answer)["status"], "AUTHORIZED")

      assert.deepStrictEqual(
        (yield* acquirerOperation(`payment:${id}:authorization`)).map((row) => row.performed_count),
        [1],
        "authorized once at the acquirer"
      )
      const final = yield* post(m, `/v1/payments/${id}/authorize`, key)
      assert.strictEqual(final.status, 200)
      assert.isTrue(replayed(final))
    }))

  it.effect("same key, different body (or path): 422 idempotency_key_reused and nothing written", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Reuse")
      const key = newKey()
      const first = yield* createPayment(m, key)
      assert.strictEqual(first.status, 201)
      const before = yield* writtenRows(m.merchantId)

      const otherAmount = yield* createPayment(m, key, paymentBody({ amount: 1051 }))
      assert.strictEqual(otherAmount.status, 422, describeAnswer(otherAmount))
      assert.strictEqual(otherAmount.contentType, "application/problem+json")
      assert.strictEqual(jsonOf(otherAmount)["code"], "idempotency_key_reused")
      assert.strictEqual(jsonOf(otherAmount)["field"], "Idempotency-Key")
      assert.isFalse(replayed(otherAmount))

      const extraField = yield* createPayment(m, key, paymentBody({ description: "now with a description" }))
      assert.strictEqual(extraField.status, 422)

      const otherPath = yield* post(m, `/v1/payments/${stringField(first, "id")}/authorize`, key)
      assert.strictEqual(otherPath.status, 422, describeAnswer(otherPath))
      assert.strictEqual(jsonOf(otherPath)["code"], "idempotency_key_reused")

      assert.deepStrictEqual(yield* writtenRows(m.merchantId), before)
      // The payment was not touched by the refused authorize.
      assert.strictEqual(jsonOf(yield* get(m, `/v1/payments/${stringField(first, "id")}`))["status"], "CREATED")
      // And the key still answers its own request.
      const replay = yield* createPayment(m, key)
      assert.isTrue(replayed(replay))
      assert.strictEqual(replay.text, first.text)
    }))

  it.effect("no body and `{}` are one request on every route: a refund and a webhook endpoint's action retried with the other form replay the first answer; a refund with a member is another request", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Empty bodies")
      // Two settled payments: a full refund of one fits the merchant's balance (the fee is kept).
      const ids: Array<string> = []
      for (let n = 0; n < 2; n++) {
        const id = stringField(yield* createPayment(m, newKey()), "id")
        for (const action of ["authorize", "settle"]) assert.strictEqual((yield* post(m, `/v1/payments/${id}/${action}`, newKey(action))).status, 200)
        ids.push(id)
      }
      const id = ids[0] ?? ""
      const send = (path: string, key: string, json: unknown) =>
        server.request("POST", path, { apiKey: m.apiKey, idempotencyKey: key, ...(json === undefined ? {} : { json }) })
      // A refund of what is left: `{}` first, then no body.
      const key = newKey("refund")
      const refund = yield* send(`/v1/payments/${id}/refunds`, key, {})
      assert.strictEqual(refund.status, 201, describeAnswer(refund))
      const retried = yield* send(`/v1/payments/${id}/refunds`, key, undefined)
      assert.strictEqual(retried.status, 201, describeAnswer(retried))
      assert.isTrue(replayed(retried))
      assert.strictEqual(retried.text, refund.text)
      const withMember = yield* send(`/v1/payments/${id}/refunds`, key, { amount: 1 })
      assert.strictEqual(withMember.status, 422, describeAnswer(withMember))
      assert.strictEqual(jsonOf(withMember)["code"], "idempotency_key_reused")

      const endpoint = yield* send("/v1/webhook_endpoints", newKey("endpoint"), { url: "https://hooks.example.com/in", event_types: ["*"] })
      assert.strictEqual(endpoint.status, 201, describeAnswer(endpoint))
      const endpointId = stringField(endpoint, "id")
      for (const [action, first, second] of [["disable", undefined, {}], ["enable", {}, undefined], ["rotate_secret", {}, undefined]] as const) {
        const actionKey = newKey(action)
        const one = yield* send(`/v1/webhook_endpoints/${endpointId}/${action}`, actionKey, first)
        assert.strictEqual(one.status, 200, `${action}: ${describeAnswer(one)}`)
        const two = yield* send(`/v1/webhook_endpoints/${endpointId}/${action}`, actionKey, second)
        assert.strictEqual(two.status, 200, `${action} retried: ${describeAnswer(two)}`)
        assert.isTrue(replayed(two), action)
        assert.strictEqual(two.text, one.text, action)
      }
    }))

  it.effect("cross-merchant: B gets 404 (the same body as for an unknown id) on A's payment for read, authorize and settle; A's key is B's own new key", () =>
    Effect.gen(function* () {
      const a = yield* createMerchant("Merchant A")
      const b = yield* createMerchant("Merchant B")
      const key = newKey("shared")
      const aPayment = yield* createPayment(a, key)
      const aId = stringField(aPayment, "id")
      const unknownId = yield* generatePaymentId
      const withoutId = (answer: Answer, id: string) => answer.text.replaceAll(id, "<id>")

      const cases = [
        { name: "read", foreign: get(b, `/v1/payments/${aId}`), unknown: get(b, `/v1/payments/${unknownId}`) },
        {
          name: "authorize",
          foreign: post(b, `/v1/payments/${aId}/authorize`, newKey("b-auth")),
          unknown: post(b, `/v1/payments/${unknownId}/authorize`, newKey("b-auth"))
        },
        {
          name: "settle",
          foreign: post(b, `/v1/payments/${aId}/settle`, newKey("b-settle")),
          unknown: post(b, `/v1/payments/${unknownId}/settle`, newKey("b-settle"))
        }
      ]
      for (const c of cases) {
        const foreign = yield* c.foreign
        const unknown = yield* c.unknown
        assert.strictEqual(foreign.status, 404, `${c.name}: ${describeAnswer(foreign)}`)
        assert.strictEqual(foreign.contentType, "application/problem+json")
        assert.strictEqual(jsonOf(foreign)["code"], "payment_not_found")
        assert.strictEqual(withoutId(foreign, aId), withoutId(unknown, unknownId), `${c.name}: indistinguishable from an unknown id`)
      }
      // A's payment is untouched and B's list does not show it.
      assert.strictEqual(jsonOf(yield* get(a, `/v1/payments/${aId}`))["status"], "CREATED")
      const bList = yield* get(b, "/v1/payments?limit=100")
      assert.notInclude(bList.text, aId)

      // B sends A's key with A's body: a new payment of B's, not a replay of A's.
      const bPayment = yield* createPayment(b, key)
      assert.strictEqual(bPayment.status, 201, describeAnswer(bPayment))
      assert.isFalse(replayed(bPayment))
      assert.notStrictEqual(stringField(bPayment, "id"), aId)
      assert.strictEqual(yield* paymentCount(a.merchantId), 1)
      assert.strictEqual(yield* paymentCount(b.merchantId), 1)
      // Each merchant's key replays its own payment.
      assert.strictEqual(stringField(yield* createPayment(a, key), "id"), aId)
      assert.strictEqual(stringField(yield* createPayment(b, key), "id"), stringField(bPayment, "id"))
    }))
})
