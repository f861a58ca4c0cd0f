// Webhook endpoints over the real server process: the API (idempotent POSTs, secrets shown at
// creation and rotation only, merchant scoping, problems), and the whole path from a settle to a
// signed webhook at a real receiver, verified with the standardwebhooks package.
import { assert, layer } from "@effect/vitest"
import { makeSecretBox } from "@pay/webhooks"
import { enqueueFromOutbox, eventually, startReceiver } from "@pay/webhooks/test-support"
import { decodeRows } from "@pay/infra"
import { fingerprintRequest } from "@pay/idempotency"
import { shortId, testRun } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomBytes } from "node:crypto"
import { Webhook } from "standardwebhooks"
import { makeContract } from "./contract/Contract.ts"
import { type Answer, call, jsonOf, stringField } from "./support/Http.ts"
import { freePort } from "./support/ServerProcess.ts"
import { createMerchant, createPayment, newKey, type TestMerchant, TestServer, testServerLayer } from "./support/TestServer.ts"

const metricsPort = await Effect.runPromise(freePort)
const secretsKey = randomBytes(32)
const Live = testServerLayer({
  env: {
    WEBHOOK_ALLOW_LOOPBACK_HTTP: "true",
    WEBHOOK_POLL_INTERVAL_MS: "50",
    WEBHOOK_RETRY_SCHEDULE_MS: "0,0,0",
    WEBHOOK_TIMEOUT_MS: "2000",
    // Signing secrets sealed at rest (SecretSealing.ts): the whole flow below runs with them sealed.
    WEBHOOK_SECRETS_KEY: secretsKey.toString("base64"),
    METRICS_PORT: String(metricsPort),
    // The webhooks consumer (and the settlement one) run in this server, on topics of its own
    // (under the run's prefix, removed with it): other servers' events never reach this database.
    CONSUMERS_ENABLED: "true",
    KAFKA_TOPIC_PREFIX: `${testRun().kafkaTopicPrefix}${shortId()}.`
  }
})

const request = (m: TestMerchant, method: string, path: string, options: { readonly json?: unknown; readonly key?: string } = {}) =>
  Effect.gen(function* () {
    const server = yield* TestServer
    return yield* server.request(method, path, {
      apiKey: m.apiKey,
      ...(method === "POST" ? { idempotencyKey: options.key ?? newKey("wh") } : {}),
      ...(options.json === undefined ? {} : { json: options.json })
    })
  })

const describe = (answer: Answer) => `${answer.status} ${answer.text.slice(0, 300)}`

layer(Live, { excludeTestServices: true, timeout: "90 seconds" })("webhook endpoints API (real server process)", (it) => {
  it.effect("create shows the secret once (a replay repeats the same bytes); reads never show it; refusals are problems; another merchant sees 404", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Webhooks A")
      const other = yield* createMerchant("Webhooks B")
      const key = newKey("create")
      const body = { url: "https://merchant.example/hooks", event_types: ["payment_settled"], description: "prod" }
      const created = yield* request(m, "POST", "/v1/webhook_endpoints", { json: body, key })
      assert.strictEqual(created.status, 201, describe(created))
      assert.match(stringField(created, "secret"), /^whsec_[A-Za-z0-9+/]{43}=$/)
      const replay = yield* request(m, "POST", "/v1/webhook_endpoints", { json: body, key })
      assert.strictEqual(replay.text, created.text)
      assert.strictEqual(replay.headers.get("idempotent-replayed"), "true")
      assert.strictEqual(created.headers.get("location"), `/v1/webhook_endpoints/${stringField(created, "id")}`)
      assert.strictEqual(replay.headers.get("location"), created.headers.get("location"))
      // The answer kept for replays holds the secret sealed, as the endpoint's row does; only the
      // client's copy is opened.
      const sql = yield* SqlClient.SqlClient
      const kept = yield* decodeRows(Schema.Struct({ response_body: Schema.String }))(
        sql`SELECT response_body FROM idempotency_keys WHERE merchant_id = ${m.merchantId} AND idempotency_key = ${key}`
      )
      assert.strictEqual(kept.length, 1)
      assert.notInclude(kept[0]?.response_body, stringField(created, "secret").slice(6))
      assert.include(kept[0]?.response_body, `"secret":"sealed:v1:${makeSecretBox(secretsKey).keyId}:`)
      const id = stringField(created, "id")
      const read = yield* request(m, "GET", `/v1/webhook_endpoints/${id}`)
      assert.strictEqual(read.status, 200)
      assert.notProperty(jsonOf(read), "secret")
      const list = yield* request(m, "GET", "/v1/webhook_endpoints")
      assert.strictEqual((jsonOf(list)["data"] as ReadonlyArray<unknown>).length, 1)
      assert.notInclude(list.text, "whsec_")

      const unsafe = yield* request(m, "POST", "/v1/webhook_endpoints", { json: { url: "https://169.254.169.254/", event_types: ["*"] } })
      assert.deepStrictEqual([unsafe.status, jsonOf(unsafe)["code"], jsonOf(unsafe)["field"]], [400, "invalid_request", "url"])
      const badType = yield* request(m, "POST", "/v1/webhook_endpoints", { json: { url: "https://merchant.example/", event_types: ["payment_refunded"] } })
      assert.deepStrictEqual([badType.status, jsonOf(badType)["code"]], [400, "invalid_request"])
      const theirs = yield* request(other, "GET", `/v1/webhook_endpoints/${id}`)
      assert.deepStrictEqual([theirs.status, jsonOf(theirs)["code"]], [404, "webhook_endpoint_not_found"])
      const disableTheirs = yield* request(other, "POST", `/v1/webhook_endpoints/${id}/disable`)
      assert.deepStrictEqual([disableTheirs.status, jsonOf(disableTheirs)["code"]], [404, "webhook_endpoint_not_found"])

      const badStatus = yield* request(m, "GET", `/v1/webhook_endpoints/${id}/deliveries?status=lost`)
      assert.deepStrictEqual([badStatus.status, jsonOf(badStatus)["code"], jsonOf(badStatus)["field"]], [400, "invalid_request", "status"])
      const badLimit = yield* request(m, "GET", `/v1/webhook_endpoints/${id}/deliveries?limit=0`)
      assert.deepStrictEqual([badLimit.status, jsonOf(badLimit)["field"]], [400, "limit"])
      // limit is decimal digits, as on /v1/payments and in the document's pattern: these were read as 5 or 10.
      for (const limit of ["0x5", "1e1", "%2B5", "%205", "5.0"]) {
        for (const path of ["/v1/webhook_endpoints", `/v1/webhook_endpoints/${id}/deliveries`]) {
          const refused = yield* request(m, "GET", `${path}?limit=${limit}`)
          assert.deepStrictEqual([refused.status, jsonOf(refused)["code"], jsonOf(refused)["field"]], [400, "invalid_request", "limit"], `${path}?limit=${limit}`)
        }
      }
      const noDelivery = yield* request(m, "POST", `/v1/webhook_endpoints/${id}/deliveries/00000000-0000-4000-8000-000000000000/redeliver`)
      assert.deepStrictEqual([noDelivery.status, jsonOf(noDelivery)["code"]], [404, "webhook_delivery_not_found"])

      // Paging: the cursor is one of the merchant's endpoints (a deleted one too), else 400 as on /v1/payments.
      const second = yield* request(m, "POST", "/v1/webhook_endpoints", { json: { url: "https://merchant.example/two", event_types: ["*"] } })
      const third = yield* request(m, "POST", "/v1/webhook_endpoints", { json: { url: "https://merchant.example/three", event_types: ["*"] } })
      const theirsCreated = yield* request(other, "POST", "/v1/webhook_endpoints", { json: { url: "https://merchant.example/b", event_types: ["*"] } })
      const page = (cursor: string) => request(m, "GET", `/v1/webhook_endpoints?limit=1&starting_after=${cursor}`)
      const afterFirst = yield* page(id)
      assert.deepStrictEqual([(jsonOf(afterFirst)["data"] as ReadonlyArray<{ id: string }>).map((e) => e.id), jsonOf(afterFirst)["has_more"]], [[stringField(second, "id")], true])
      const removedSecond = yield* request(m, "DELETE", `/v1/webhook_endpoints/${stringField(second, "id")}`)
      assert.strictEqual(removedSecond.status, 200)
      const afterDeleted = yield* page(stringField(second, "id"))
      assert.deepStrictEqual((jsonOf(afterDeleted)["data"] as ReadonlyArray<{ id: string }>).map((e) => e.id), [stringField(third, "id")], "a deleted endpoint is still a cursor")
      for (const cursor of [stringField(theirsCreated, "id"), `we_${"0".repeat(24)}`, "garbage", "%00"]) {
        const refused = yield* page(cursor)
        assert.deepStrictEqual([refused.status, jsonOf(refused)["code"], jsonOf(refused)["field"]], [400, "invalid_cursor", "starting_after"], cursor)
      }

      const updated = yield* request(m, "POST", `/v1/webhook_endpoints/${id}`, { json: { event_types: ["*"] } })
      assert.deepStrictEqual(jsonOf(updated)["event_types"], ["*"])
      const disabled = yield* request(m, "POST", `/v1/webhook_endpoints/${id}/disable`)
      assert.deepStrictEqual([jsonOf(disabled)["status"], jsonOf(disabled)["disabled_reason"]], ["disabled", "merchant"])
      const rotated = yield* request(m, "POST", `/v1/webhook_endpoints/${id}/rotate_secret`, { json: { expires_in_ms: 0 } })
      assert.notStrictEqual(stringField(rotated, "secret"), stringField(created, "secret"))
      const deleted = yield* request(m, "DELETE", `/v1/webhook_endpoints/${id}`)
      assert.strictEqual(deleted.status, 200)
      assert.deepStrictEqual([jsonOf(deleted)["id"], jsonOf(deleted)["deleted"]], [id, true])
      const gone = yield* request(m, "GET", `/v1/webhook_endpoints/${id}`)
      assert.strictEqual(gone.status, 404)
    }))

  it.effect("create → authorize → settle: through the outbox, Kafka and the webhooks consumer, three signed webhooks in order at the receiver; deliveries and attempts listed; a redelivery resends the same id", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ({ status: 200 }))
      const m = yield* createMerchant("Webhooks E2E")
      const created = yield* request(m, "POST", "/v1/webhook_endpoints", { json: { url: receiver.url, event_types: ["*"] } })
      assert.strictEqual(created.status, 201, describe(created))
      const endpointId = stringField(created, "id")
      const secret = stringField(created, "secret")
      const sql = yield* SqlClient.SqlClient
      const stored = yield* decodeRows(Schema.Struct({ secret: Schema.String }))(sql`SELECT secret FROM webhook_endpoint_secrets WHERE endpoint_id = ${endpointId}`)
      assert.deepStrictEqual(stored.map((row) => row.secret.startsWith(`sealed:v1:${makeSecretBox(secretsKey).keyId}:`)), [true], "stored sealed, under the configured key")
      const payment = yield* createPayment(m, newKey("pay"))
      const paymentId = stringField(payment, "id")
      assert.strictEqual((yield* request(m, "POST", `/v1/payments/${paymentId}/authorize`)).status, 200)
      assert.strictEqual((yield* request(m, "POST", `/v1/payments/${paymentId}/settle`)).status, 200)

      // outbox → Kafka → the server's webhooks consumer (queues in its record transaction) → the sender.
      yield* eventually("three webhooks", () => receiver.received.length >= 3, 60_000)
      const types = receiver.received.map((r) => {
        const verified = new Webhook(secret).verify(r.body, { "webhook-id": r.id, "webhook-timestamp": r.timestamp, "webhook-signature": r.signature })
        return (verified as { readonly type: string }).type
      })
      assert.deepStrictEqual(types, ["payment_created", "payment_authorized", "payment_settled"])

      // The receiver answered; the sender records each outcome right after (poll the API for it).
      type Row = { readonly id: string; readonly status: string; readonly event_id: string }
      let rows: ReadonlyArray<Row> = []
      for (let poll = 0; poll < 100; poll++) {
        const deliveries = yield* request(m, "GET", `/v1/webhook_endpoints/${endpointId}/deliveries`)
        rows = jsonOf(deliveries)["data"] as ReadonlyArray<Row>
        if (rows.length === 3 && rows.every((row) => row.status === "delivered")) break
        yield* Effect.sleep("100 millis")
      }
      assert.deepStrictEqual(rows.map((row) => row.status), ["delivered", "delivered", "delivered"])
      const settled = rows.find((row) => row.event_id === receiver.received[2]?.id)
      if (settled === undefined) return assert.fail("the settled event's delivery is listed")
      // Paging, newest first: each page starts after the cursor, which must be one of this endpoint's deliveries.
      const pages: Array<string> = []
      for (let cursor: string | undefined, page = 0; page < 4; page++) {
        const answer = yield* request(m, "GET", `/v1/webhook_endpoints/${endpointId}/deliveries?limit=1${cursor === undefined ? "" : `&starting_after=${cursor}`}`)
        const data = jsonOf(answer)["data"] as ReadonlyArray<Row>
        pages.push(...data.map((row) => row.id))
        if (jsonOf(answer)["has_more"] !== true) break
        cursor = data[0]?.id
      }
      assert.deepStrictEqual(pages, rows.map((row) => row.id), "limit=1 pages walk the same list")
      for (const cursor of [crypto.randomUUID(), "not-a-uuid", "%00"]) {
        const refused = yield* request(m, "GET", `/v1/webhook_endpoints/${endpointId}/deliveries?starting_after=${cursor}`)
        assert.deepStrictEqual([refused.status, jsonOf(refused)["code"], jsonOf(refused)["field"]], [400, "invalid_cursor", "starting_after"], cursor)
      }
      const detail = yield* request(m, "GET", `/v1/webhook_endpoints/${endpointId}/deliveries/${settled.id}`)
      const attempts = jsonOf(detail)["attempts"] as ReadonlyArray<{ readonly outcome: string; readonly response_status: number }>
      assert.deepStrictEqual(attempts.map((a) => [a.outcome, a.response_status]), [["delivered", 200]])

      const again = yield* request(m, "POST", `/v1/webhook_endpoints/${endpointId}/deliveries/${settled.id}/redeliver`)
      assert.strictEqual(again.status, 200, describe(again))
      yield* eventually("the redelivery", () => receiver.received.length === 4, 30_000)
      assert.strictEqual(receiver.received[3]?.id, settled.event_id, "a redelivery carries the same webhook-id")
      assert.strictEqual(receiver.received[3]?.body, receiver.received[2]?.body)
      assert.strictEqual(yield* enqueueFromOutbox, 0, "feeding the same events again creates nothing")

      // A refund's deliveries name it (a payment may have several refunds); a payment's own, none.
      const refund = yield* request(m, "POST", `/v1/payments/${paymentId}/refunds`, { json: { amount: 100 } })
      assert.strictEqual(refund.status, 201, describe(refund))
      const refundId = stringField(refund, "id")
      type Listed = { readonly event_type: string; readonly refund_id: string | null; readonly payment_id: string }
      let listed: ReadonlyArray<Listed> = []
      for (let poll = 0; poll < 150 && listed.length < 5; poll++) {
        listed = jsonOf(yield* request(m, "GET", `/v1/webhook_endpoints/${endpointId}/deliveries`))["data"] as ReadonlyArray<Listed>
        if (listed.length < 5) yield* Effect.sleep("100 millis")
      }
      assert.deepStrictEqual(
        listed.map((row) => [row.event_type, row.refund_id, row.payment_id]).sort(),
        [
          ["payment_authorized", null, paymentId],
          ["payment_created", null, paymentId],
          ["payment_settled", null, paymentId],
          ["refund_created", refundId, paymentId],
          ["refund_succeeded", refundId, paymentId]
        ]
      )
      const metrics = yield* call(`http://127.0.0.1:${metricsPort}`, "GET", "/metrics")
      for (const name of ["webhook_attempts_total", "webhook_attempt_duration_seconds", "webhook_oldest_pending_age_seconds"]) assert.include(metrics.text, name)

      // Every body the receiver got is what /openapi.json's `webhooks` says for its type (a client
      // generated from the document types them; the document had no webhooks: outside review).
      yield* eventually("the refund's two webhooks", () => receiver.received.length >= 6, 30_000)
      const document = jsonOf(yield* (yield* TestServer).request("GET", "/openapi.json"))
      const contract = makeContract(document)
      for (const received of receiver.received) {
        const body: unknown = JSON.parse(received.body)
        if (typeof body !== "object" || body === null) return assert.fail(`not an object: ${received.body}`)
        const type = "type" in body ? String(body.type) : ""
        const schema = `webhooks/${type}/post/requestBody/content/application~1json/schema`
        assert.isUndefined(contract.validate(schema, body), `${type}: ${received.body}`)
        assert.isDefined(contract.validate(schema, { ...body, extra: 1 }), `${type}: the schema is closed`)
      }
    })))

  it.effect("a webhook POST whose server died mid-request is finished by the completer; the client's retry gets its answer, secret included", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Webhooks completer")
      const sql = yield* SqlClient.SqlClient
      const key = newKey("abandoned")
      const body = { url: "https://merchant.example/completer", event_types: ["*"] }
      // What a server that died inside the create's transaction leaves: the key, its stored
      // operation, nothing done (recovery point `started`), its lease gone long ago.
      const operation = { _tag: "webhook_endpoint_create", ...body }
      const requestFingerprint = fingerprintRequest({ method: "POST", path: "/v1/webhook_endpoints", body })
      yield* sql`
        INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint,
                                      request_body, operation, created_at, last_run_at)
        VALUES (gen_random_uuid(), ${m.merchantId}, ${key}, 'POST', '/v1/webhook_endpoints', ${requestFingerprint},
                ${JSON.stringify(body)}::jsonb, ${JSON.stringify(operation)}::jsonb,
                clock_timestamp() - interval '1 hour', clock_timestamp() - interval '1 hour')`
      const finished = decodeRows(Schema.Struct({ finished: Schema.Boolean }))
      let done = false
      for (let poll = 0; poll < 150 && !done; poll++) {
        const [row] = yield* finished(sql`SELECT finished_at IS NOT NULL AS finished FROM idempotency_keys WHERE merchant_id = ${m.merchantId} AND idempotency_key = ${key}`)
        done = row?.finished === true
        if (!done) yield* Effect.sleep("200 millis")
      }
      assert.isTrue(done, "the completer finished the key")
      const retry = yield* request(m, "POST", "/v1/webhook_endpoints", { json: body, key })
      assert.strictEqual(retry.status, 201, describe(retry))
      assert.strictEqual(retry.headers.get("idempotent-replayed"), "true")
      assert.match(stringField(retry, "secret"), /^whsec_/)
      const list = yield* request(m, "GET", "/v1/webhook_endpoints")
      assert.deepStrictEqual((jsonOf(list)["data"] as ReadonlyArray<{ readonly id: string }>).map((e) => e.id), [stringField(retry, "id")])
    }))
})
