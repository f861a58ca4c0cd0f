// Bad input over real HTTP: every refusal is a 4xx RFC 9457 problem with a stable `code` (and the
// offending `field` where there is one), and writes nothing: no payment, no outbox row, no key.
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { type Answer, call, jsonOf } from "./support/Http.ts"
import { rawRequest } from "./support/RawHttp.ts"
import { createMerchant, createPayment, newKey, paymentBody, type TestMerchant, TestServer, testServerLayer, writtenRows } from "./support/TestServer.ts"

const Live = testServerLayer()

const describeAnswer = (answer: Answer) => `${answer.status} ${answer.contentType} ${answer.text.slice(0, 300)}`

interface Refusal {
  readonly status: number
  readonly code: string
  /** `undefined`: the problem names no field (the body as a whole, the credentials). */
  readonly field: string | undefined
}

const assertProblem = (answer: Answer, expected: Refusal, label: string) => {
  assert.strictEqual(answer.status, expected.status, `${label}: ${describeAnswer(answer)}`)
  assert.strictEqual(answer.contentType, "application/problem+json", label)
  const body = jsonOf(answer)
  assert.strictEqual(body["code"], expected.code, `${label}: ${answer.text}`)
  assert.strictEqual(body["field"], expected.field, `${label}: ${answer.text}`)
  assert.strictEqual(body["status"], expected.status, label)
  assert.strictEqual(body["type"], `/docs/problems/${expected.code}`, label)
  assert.isString(body["title"], label)
  assert.isString(body["detail"], label)
}

/** Runs requests that must be refused, then checks that none of them wrote anything. */
const refusedWithoutWrites = (
  m: TestMerchant,
  cases: ReadonlyArray<{ readonly label: string; readonly send: Effect.Effect<Answer, unknown, TestServer>; readonly expected: Refusal }>
) =>
  Effect.gen(function* () {
    const before = yield* writtenRows(m.merchantId)
    for (const c of cases) assertProblem(yield* c.send, c.expected, c.label)
    assert.deepStrictEqual(yield* writtenRows(m.merchantId), before, "a refused request wrote nothing")
  })

const invalid = (field: string | undefined): Refusal => ({ status: 400, code: "invalid_request", field })

/** A body of `bytes` bytes sent without Content-Length (chunked), so only the read limit can stop it. */
const chunkedBody = (bytes: number) => {
  const payload = new TextEncoder().encode(JSON.stringify(paymentBody({ description: "x".repeat(bytes) })))
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (let offset = 0; offset < payload.length; offset += 16 * 1024) controller.enqueue(payload.slice(offset, offset + 16 * 1024))
      controller.close()
    }
  })
}

layer(Live, { excludeTestServices: true, timeout: "60 seconds" })("payments API over HTTP: validation, auth, docs, health (real server process)", (it) => {
  it.effect("bad bodies: 400/413/415 problems naming the field, nothing written", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Validation")
      const send = (body: unknown) => createPayment(m, newKey(), body)
      const raw = (rawBody: string, contentType?: string) => createPayment(m, newKey(), undefined, { rawBody, contentType })
      yield* refusedWithoutWrites(m, [
        { label: "malformed JSON", send: raw(`{"amount":1050,`), expected: { status: 400, code: "malformed_json", field: undefined } },
        { label: "not an object", send: raw(`[1,2]`), expected: invalid(undefined) },
        { label: "amount as a string", send: send(paymentBody({ amount: "1050" })), expected: invalid("amount") },
        { label: "currency as a number", send: send(paymentBody({ currency: 840 })), expected: invalid("currency") },
        { label: "payment_method as a number", send: send(paymentBody({ payment_method: 4242 })), expected: invalid("payment_method") },
        { label: "a card number as payment_method", send: send(paymentBody({ payment_method: "pm_4242424242424242" })), expected: invalid("payment_method") },
        { label: "a card number grouped by _", send: send(paymentBody({ payment_method: "pm_4242_4242_4242_4242" })), expected: invalid("payment_method") },
        { label: "12 digits in twos", send: send(paymentBody({ payment_method: "pm_42_42_42_42_42_42" })), expected: invalid("payment_method") },
        { label: "metadata value not a string", send: send(paymentBody({ metadata: { order: 7 } })), expected: invalid("metadata.order") },
        { label: "amount missing", send: send({ currency: "USD", payment_method: "pm_card_visa" }), expected: invalid("amount") },
        { label: "amount 0", send: send(paymentBody({ amount: 0 })), expected: invalid("amount") },
        { label: "amount negative", send: send(paymentBody({ amount: -1050 })), expected: invalid("amount") },
        { label: "amount 10.5", send: send(paymentBody({ amount: 10.5 })), expected: invalid("amount") },
        { label: "amount above 99999999999", send: send(paymentBody({ amount: 100_000_000_000 })), expected: invalid("amount") },
        { label: "amount far above 2^53", send: raw(`{"amount":123456789012345678901234567890,"currency":"USD","payment_method":"pm_card_visa"}`), expected: invalid("amount") },
        { label: "unknown currency", send: send(paymentBody({ currency: "XXY" })), expected: invalid("currency") },
        { label: "lowercase currency", send: send(paymentBody({ currency: "usd" })), expected: invalid("currency") },
        { label: "unknown field", send: send(paymentBody({ amount_minor: 1050 })), expected: invalid("amount_minor") },
        { label: "form-encoded body", send: raw("amount=1050", "application/x-www-form-urlencoded"), expected: { status: 415, code: "unsupported_media_type", field: undefined } },
        {
          // A plain body labelled gzip was read as plain and created a payment.
          label: "a body with a content coding",
          send: createPayment(m, newKey(), paymentBody(), { headers: { "content-encoding": "gzip" } }),
          expected: { status: 415, code: "unsupported_media_type", field: undefined }
        },

        {
          label: "body over 64 KiB (Content-Length)",
          send: send(paymentBody({ description: "x".repeat(64 * 1024) })),
          expected: { status: 413, code: "body_too_large", field: undefined }
        },
        {
          label: "body over 64 KiB (chunked, no Content-Length)",
          send: Effect.gen(function* () {
            const server = yield* TestServer
            return yield* call(server.process.baseUrl, "POST", "/v1/payments", {
              apiKey: m.apiKey,
              idempotencyKey: newKey(),
              contentType: "application/json",
              stream: chunkedBody(70 * 1024)
            })
          }),
          expected: { status: 413, code: "body_too_large", field: undefined }
        }
      ])
      // Node decodes only chunked and passed any other transfer coding through: a plain body sent
      // as `gzip, chunked` created a payment. Refused, nothing written.
      const before = yield* writtenRows(m.merchantId)
      const server = yield* TestServer
      const body = JSON.stringify(paymentBody())
      const coded = yield* rawRequest(server.process.port, [[
        "POST /v1/payments HTTP/1.1", "Host: 127.0.0.1", `Authorization: Bearer ${m.apiKey}`, `Idempotency-Key: ${newKey()}`,
        "Content-Type: application/json", "Transfer-Encoding: gzip, chunked", "", ""
      ].join("\r\n"), `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`])
      assert.strictEqual(coded.status, 400, coded.body)
      assert.include(coded.body, '"field":"Transfer-Encoding"')
      // The framings Node's parser refuses itself: the same words, naming the header (they said "a
      // character HTTP does not allow", or named no field).
      const framings: ReadonlyArray<readonly [string, ReadonlyArray<string>, string, string]> = [
        ["Transfer-Encoding: gzip", ["Transfer-Encoding: gzip"], "Transfer-Encoding", "only chunked is supported"],
        ["Transfer-Encoding with Content-Length", ["Transfer-Encoding: chunked", `Content-Length: ${Buffer.byteLength(body)}`], "Content-Length", "not allowed with Transfer-Encoding"],
        ["Content-Length with Transfer-Encoding", [`Content-Length: ${Buffer.byteLength(body)}`, "Transfer-Encoding: chunked"], "Content-Length", "not allowed with Transfer-Encoding"],
        ["Transfer-Encoding chunked twice", ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], "Transfer-Encoding", "only chunked is supported, given once"],
        ["Content-Length too large", ["Content-Length: 99999999999999999999999"], "Content-Length", "too large"],
        ["Content-Length twice", [`Content-Length: ${Buffer.byteLength(body)}`, `Content-Length: ${Buffer.byteLength(body)}`], "Content-Length", "given more than once"],
        // RFC 9112 §3.2: a second Host is a 400 (it was answered as if the first were the only one).
        ["Host twice", [`Content-Length: ${Buffer.byteLength(body)}`, "Host: elsewhere.example"], "Host", "given more than once"],
        ["Content-Length not digits", ["Content-Length: 2x"], "Content-Length", "must be decimal digits"]
      ]
      // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400 too (it was served).
      const hostless = yield* rawRequest(server.process.port, [[
        "POST /v1/payments HTTP/1.1", `Authorization: Bearer ${m.apiKey}`, `Idempotency-Key: ${newKey()}`,
        "Content-Type: application/json", `Content-Length: ${Buffer.byteLength(body)}`, "", ""
      ].join("\r\n"), body])
      assert.strictEqual(hostless.status, 400, hostless.body)
      assert.include(hostless.body, '"field":"Host"')
      assert.include(hostless.body, "required in an HTTP/1.1 request")
      // No header at all: the same.
      const bare = yield* rawRequest(server.process.port, ["GET /health/live HTTP/1.1\r\n\r\n"])
      assert.strictEqual(bare.status, 400, bare.body)
      assert.include(bare.body, '"field":"Host"')
      for (const [label, headers, field, words] of framings) {
        const answer = yield* rawRequest(server.process.port, [[
          "POST /v1/payments HTTP/1.1", "Host: 127.0.0.1", `Authorization: Bearer ${m.apiKey}`, `Idempotency-Key: ${newKey()}`,
          "Content-Type: application/json", ...headers, "", ""
        ].join("\r\n"), body])
        assert.strictEqual(answer.status, 400, `${label}: ${answer.body}`)
        assert.include(answer.body, `"field":"${field}"`, label)
        assert.include(answer.body, words, label)
      }
      // A header with a character HTTP forbids (DEL), refused by the parser: the header named as the
      // edge names a second copy, each word capitalized, whatever the request wrote (outside
      // contract fuzz: `authorization` here, `Authorization` there).
      for (const [line, field] of [["x-request-id: a\x7fb", "X-Request-Id"], ["AUTHORIZATION: Bearer a\x7fb", "Authorization"], ["Authorization: Bearer x", "Authorization"]] as const) {
        const second = field === "Authorization" && !line.includes("\x7f")
        const answer = yield* rawRequest(server.process.port, [[
          "POST /v1/payments HTTP/1.1", "Host: 127.0.0.1", `Authorization: Bearer ${m.apiKey}`, `Idempotency-Key: ${newKey()}`,
          "Content-Type: application/json", `Content-Length: ${Buffer.byteLength(body)}`, line, "", ""
        ].join("\r\n"), body])
        assert.strictEqual(answer.status, 400, `${line}: ${answer.body}`)
        assert.include(answer.body, `"field":"${field}"`, `${line}${second ? " (a second copy)" : ""}`)
      }
      assert.deepStrictEqual(yield* writtenRows(m.merchantId), before)
      // The largest amount itself is accepted: the limit is inclusive.
      const largest = yield* send(paymentBody({ amount: 99_999_999_999 }))
      assert.strictEqual(largest.status, 201, describeAnswer(largest))
      // Digits a token may hold: 11 in all, grouped or not, are not a card number.
      for (const payment_method of ["pm_card_mastercard", "pm_tok_1234_5678_901", "pm_12345678901"]) {
        const token = yield* send(paymentBody({ payment_method }))
        assert.strictEqual(token.status, 201, `${payment_method}: ${describeAnswer(token)}`)
      }
      assert.strictEqual(jsonOf(largest)["amount"], 99_999_999_999)
    }))

  it.effect("webhook endpoints and bodies: NUL and lone surrogates, code-point lengths, URL rules, `since`, `null` bodies, event_id: 400 naming the field, nothing stored, the key free for the corrected request", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Webhook validation")
      const server = yield* TestServer
      const post = (path: string, json: unknown, key = newKey("wh")) =>
        server.request("POST", path, { apiKey: m.apiKey, idempotencyKey: key, json })
      const rawPost = (path: string, rawBody: string) =>
        server.request("POST", path, { apiKey: m.apiKey, idempotencyKey: newKey("wh"), rawBody, contentType: "application/json" })
      const endpoint = { url: "https://merchant.example/hooks", event_types: ["payment_settled"] }
      const created = yield* post("/v1/webhook_endpoints", endpoint)
      assert.strictEqual(created.status, 201, describeAnswer(created))
      const endpointPath = `/v1/webhook_endpoints/${String(jsonOf(created)["id"])}`
      const authorized = yield* createPayment(m, newKey())
      const paymentId = String(jsonOf(authorized)["id"])
      assert.strictEqual((yield* server.request("POST", `/v1/payments/${paymentId}/authorize`, { apiKey: m.apiKey, idempotencyKey: newKey() })).status, 200)

      yield* refusedWithoutWrites(m, [
        { label: "description with NUL", send: post("/v1/webhook_endpoints", { ...endpoint, description: "a\u0000b" }), expected: invalid("description") },
        { label: "description with a lone surrogate", send: rawPost("/v1/webhook_endpoints", `{"url":"https://merchant.example/h","event_types":["*"],"description":"a\\ud800b"}`), expected: invalid("description") },
        { label: "url with NUL", send: post("/v1/webhook_endpoints", { ...endpoint, url: "https://merchant.example/h\u0000" }), expected: invalid("url") },
        { label: "url with a lone surrogate", send: rawPost("/v1/webhook_endpoints", `{"url":"https://merchant.example/\\udfff","event_types":["*"]}`), expected: invalid("url") },
        { label: "update: description with NUL", send: post(endpointPath, { description: "x\u0000" }), expected: invalid("description") },
        { label: "update: url not https", send: post(endpointPath, { url: "ftp://merchant.example/" }), expected: invalid("url") },
        { label: "501 emoji", send: post("/v1/webhook_endpoints", { ...endpoint, description: "😀".repeat(501) }), expected: invalid("description") },
        { label: "recover since a bare number", send: post(`${endpointPath}/recover`, { since: "1" }), expected: invalid("since") },
        { label: "recover since a day that does not exist", send: post(`${endpointPath}/recover`, { since: "2020-02-30T00:00:00Z" }), expected: invalid("since") },
        { label: "recover since a date alone", send: post(`${endpointPath}/recover`, { since: "2020-01-01" }), expected: invalid("since") },
        { label: "recover since without an offset", send: post(`${endpointPath}/recover`, { since: "2020-01-01T00:00:00" }), expected: invalid("since") },
        { label: "disable with a member", send: post(`${endpointPath}/disable`, { x: 1 }), expected: invalid("x") },
        // An empty or dotted member name in brackets, as everywhere else (it was field "", detail ": …").
        { label: "disable with an empty member name", send: post(`${endpointPath}/disable`, { "": 1 }), expected: invalid('[""]') },
        { label: "cancel with a dotted member name", send: post(`/v1/payments/${paymentId}/cancel`, { "a.b": 1 }), expected: invalid('["a.b"]') },
        { label: "authorize with an empty member name", send: post(`/v1/payments/${paymentId}/authorize`, { "": 1 }), expected: invalid('[""]') },
        { label: "settle with a null body", send: rawPost(`/v1/payments/${paymentId}/settle`, "null"), expected: invalid(undefined) },
        { label: "refund with a null body", send: rawPost(`/v1/payments/${paymentId}/refunds`, "null"), expected: invalid(undefined) },
        { label: "rotate_secret with a null body", send: rawPost(`${endpointPath}/rotate_secret`, "null"), expected: invalid(undefined) },
        { label: "update with a null body", send: rawPost(endpointPath, "null"), expected: invalid(undefined) },
        {
          label: "deliveries with an event_id that is not one",
          send: server.request("GET", `${endpointPath}/deliveries?event_id=x`, { apiKey: m.apiKey }),
          expected: invalid("event_id")
        }
      ])

      // The URL rule refused before the key was taken: the corrected request may use the same key.
      const key = newKey("fix")
      const refused = yield* post("/v1/webhook_endpoints", { ...endpoint, url: "http://merchant.example/hooks" }, key)
      assert.strictEqual(refused.status, 400, describeAnswer(refused))
      const fixed = yield* post("/v1/webhook_endpoints", { ...endpoint, url: "https://merchant.example/fixed" }, key)
      assert.strictEqual(fixed.status, 201, describeAnswer(fixed))
      const recoverKey = newKey("recover")
      assert.strictEqual((yield* post(`${endpointPath}/recover`, { since: "yesterday" }, recoverKey)).status, 400)
      const recovered = yield* post(`${endpointPath}/recover`, { since: "2020-01-01T00:00:00.5+01:00" }, recoverKey)
      assert.strictEqual(recovered.status, 200, describeAnswer(recovered))

      // Characters are code points: 500 emoji are a description of 500 characters.
      const emoji = yield* post("/v1/webhook_endpoints", { ...endpoint, description: "😀".repeat(500) })
      assert.strictEqual(emoji.status, 201, describeAnswer(emoji))
    }))

  it.effect("Idempotency-Key: missing, empty, 256 characters, a control character → 400 naming the header; the quoted form is the same key", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Keys")
      const withKey = (key: string | undefined) => createPayment(m, "unused", paymentBody(), { idempotencyKey: key })
      const keyProblem = (code: string): Refusal => ({ status: 400, code, field: "Idempotency-Key" })
      yield* refusedWithoutWrites(m, [
        { label: "missing", send: withKey(undefined), expected: keyProblem("idempotency_key_missing") },
        { label: "empty", send: withKey(""), expected: keyProblem("idempotency_key_invalid") },
        { label: "spaces only", send: withKey("   "), expected: keyProblem("idempotency_key_invalid") },
        { label: "256 characters", send: withKey("k".repeat(256)), expected: keyProblem("idempotency_key_invalid") },
        { label: "a tab inside", send: withKey("abc\tdef"), expected: keyProblem("idempotency_key_invalid") },
        { label: "broken quoting", send: withKey(`"abc`), expected: keyProblem("idempotency_key_invalid") }
      ])
      // The longest key is accepted.
      assert.strictEqual((yield* withKey("k".repeat(255))).status, 201)

      // `"abc"` (structured-field string) and `abc` (token) are one key.
      const key = newKey("quoted")
      const quoted = yield* withKey(`"${key}"`)
      assert.strictEqual(quoted.status, 201, describeAnswer(quoted))
      assert.isNull(quoted.headers.get("idempotent-replayed"))
      const bare = yield* withKey(key)
      assert.strictEqual(bare.headers.get("idempotent-replayed"), "true")
      assert.strictEqual(bare.text, quoted.text)
      assert.strictEqual((yield* writtenRows(m.merchantId)).payments, 2)
    }))

  it.effect("no API key, a wrong one or HTTP Basic: 401 unauthorized, nothing written; GET list with limit 0/101/abc: 400 naming limit", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Auth")
      const server = yield* TestServer
      const unauthorized: Refusal = { status: 401, code: "unauthorized", field: undefined }
      const postWith = (headers: Record<string, string>) =>
        server.request("POST", "/v1/payments", { idempotencyKey: newKey(), json: paymentBody(), headers })
      yield* refusedWithoutWrites(m, [
        { label: "no Authorization", send: postWith({}), expected: unauthorized },
        { label: "unknown key", send: postWith({ authorization: "Bearer sk_test_00000000000000000000000000000000" }), expected: unauthorized },
        { label: "malformed key", send: postWith({ authorization: "Bearer not-a-key" }), expected: unauthorized },
        { label: "another scheme", send: postWith({ authorization: `Token ${m.apiKey}` }), expected: unauthorized },
        // docs/api.md: HTTP Basic (the key as user name, as some clients send it) answers 401 too.
        { label: "HTTP Basic with a valid key", send: postWith({ authorization: `Basic ${Buffer.from(`${m.apiKey}:`).toString("base64")}` }), expected: unauthorized },
        { label: "GET without a key", send: server.request("GET", "/v1/payments"), expected: unauthorized },
        { label: "limit=0", send: server.request("GET", "/v1/payments?limit=0", { apiKey: m.apiKey }), expected: invalid("limit") },
        { label: "limit=101", send: server.request("GET", "/v1/payments?limit=101", { apiKey: m.apiKey }), expected: invalid("limit") },
        { label: "limit=abc", send: server.request("GET", "/v1/payments?limit=abc", { apiKey: m.apiKey }), expected: invalid("limit") },
        {
          label: "starting_after not an id",
          send: server.request("GET", "/v1/payments?starting_after=nope", { apiKey: m.apiKey }),
          expected: { status: 400, code: "invalid_cursor", field: "starting_after" }
        }
      ])
      const page = yield* server.request("GET", "/v1/payments?limit=100", { apiKey: m.apiKey })
      assert.strictEqual(page.status, 200, describeAnswer(page))
      assert.deepStrictEqual(jsonOf(page), { object: "list", data: [], has_more: false })
    }))

  it.effect("/openapi.json lists every endpoint with its method; /docs answers an HTML page", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const openapi = yield* server.request("GET", "/openapi.json")
      assert.strictEqual(openapi.status, 200)
      const document = jsonOf(openapi)
      assert.strictEqual(document["openapi"], "3.1.0")
      const paths = document["paths"]
      assert.isTrue(typeof paths === "object" && paths !== null)
      const operations = Object.entries(paths ?? {}).flatMap(([path, item]) =>
        Object.keys(typeof item === "object" && item !== null ? item : {}).map((method) => `${method.toUpperCase()} ${path}`)
      )
      assert.deepStrictEqual(operations.sort(), [
        "GET /health/live",
        "GET /health/ready",
        "GET /v1/balance",
        "GET /v1/payments",
        "GET /v1/payments/{id}",
        "GET /v1/payments/{id}/refunds",
        "GET /v1/payments/{id}/refunds/{refund_id}",
        "POST /v1/payments",
        "POST /v1/payments/{id}/authorize",
        "POST /v1/payments/{id}/cancel",
        "POST /v1/payments/{id}/refunds",
        "POST /v1/payments/{id}/settle",
        "DELETE /v1/webhook_endpoints/{id}",
        "GET /v1/webhook_endpoints",
        "GET /v1/webhook_endpoints/{id}",
        "GET /v1/webhook_endpoints/{id}/deliveries",
        "GET /v1/webhook_endpoints/{id}/deliveries/{delivery_id}",
        "POST /v1/webhook_endpoints",
        "POST /v1/webhook_endpoints/{id}",
        "POST /v1/webhook_endpoints/{id}/deliveries/{delivery_id}/redeliver",
        "POST /v1/webhook_endpoints/{id}/disable",
        "POST /v1/webhook_endpoints/{id}/enable",
        "POST /v1/webhook_endpoints/{id}/recover",
        "POST /v1/webhook_endpoints/{id}/rotate_secret"
      ].sort())
      // Every POST documents its required header and the problems it answers.
      assert.include(openapi.text, "Idempotency-Key")
      assert.include(openapi.text, "application/problem+json")

      const docs = yield* server.request("GET", "/docs")
      assert.strictEqual(docs.status, 200)
      assert.match(docs.contentType, /^text\/html/)
      assert.match(docs.text, /<html/i)
    }))

  it.effect("/health/ready: 200 with postgres, redis and kafka up; /health/live: 200", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const live = yield* server.request("GET", "/health/live")
      assert.deepStrictEqual([live.status, jsonOf(live)], [200, { status: "ok" }])
      const ready = yield* server.request("GET", "/health/ready")
      assert.strictEqual(ready.status, 200, describeAnswer(ready))
      const body = jsonOf(ready)
      assert.strictEqual(body["status"], "ready")
      assert.deepStrictEqual(body["degraded"], [])
      const checks = Array.isArray(body["checks"]) ? body["checks"] : []
      // Only Postgres is required: the API serves without Redis (a cache) and Kafka (the outbox waits).
      assert.deepStrictEqual(
        checks.map((check: unknown) =>
          typeof check === "object" && check !== null && "name" in check && "status" in check && "required" in check
            ? `${String(check.name)}:${String(check.status)}:${check.required === true ? "required" : "optional"}`
            : "?").sort(),
        ["kafka:up:optional", "postgres:up:required", "redis:up:optional"]
      )
    }))
})
