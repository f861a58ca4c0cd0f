// Hostile text over real HTTP (the real server process): input that passed validation used to
// reach PostgreSQL and come back as 503 database_unavailable with Retry-After (retry forever).
// Every text field is now checked for what PostgreSQL can store (no NUL, no lone surrogate),
// lengths count code points (as PostgreSQL and JSON Schema do), and metadata's stored size is
// checked before the database's CHECK: each case is a 400 naming the field, nothing written, and a
// property over the whole Unicode range (invalid UTF-16 included) never gets a 5xx.
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import { type Answer, jsonOf } from "./support/Http.ts"
import { rawRequest } from "./support/RawHttp.ts"
import { createMerchant, createPayment, newKey, paymentBody, TestServer, testServerLayer, writtenRows } from "./support/TestServer.ts"

const Live = testServerLayer()

const describeAnswer = (answer: Answer) => `${answer.status} ${answer.text.slice(0, 300)}`

const assertInvalid = (answer: Answer, field: string, label: string) => {
  assert.strictEqual(answer.status, 400, `${label}: ${describeAnswer(answer)}`)
  assert.strictEqual(jsonOf(answer)["code"], "invalid_request", label)
  assert.strictEqual(jsonOf(answer)["field"], field, label)
}

/** Strings over the whole UTF-16 range, lone surrogates and NUL included (fast-check's full-range units). */
const anyText = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit)), maxLength: 40 })
const anyCodePoints = fc.string({ unit: "binary", maxLength: 40 })

layer(Live, { excludeTestServices: true, timeout: "120 seconds" })("hostile text: 400 naming the field, never a 5xx (real server process)", (it) => {
  it.effect("NUL, a lone surrogate, metadata over its stored size: 400 naming the field, nothing written", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Hostile")
      const before = yield* writtenRows(m.merchantId)
      const send = (overrides: Readonly<Record<string, unknown>>) => createPayment(m, newKey(), paymentBody(overrides))
      assertInvalid(yield* send({ description: "a\u0000b" }), "description", "NUL in description")
      assertInvalid(yield* send({ description: "\ud800" }), "description", "lone high surrogate")
      assertInvalid(yield* send({ description: "x\udc00y" }), "description", "lone low surrogate")
      assertInvalid(yield* send({ metadata: { order: "a\u0000" } }), "metadata.order", "NUL in a metadata value")
      // A bad key is named with its reason, not "Expected no excess property" (metadata is free-form).
      // A key that would read as more than one member (empty, or with a dot) is named in brackets.
      const badKeys: ReadonlyArray<readonly [string, string, string]> = [
        // A key of the wrong length is named `metadata`, not echoed (outside contract fuzz: it was
        // `metadata.<the whole key>`, read as a value's problem, and `metadata[""]`).
        ["k".repeat(41), "must be 1 to 40 characters (a key of 41 characters)", "metadata"],
        ["\u{1F600}".repeat(41), "must be 1 to 40 characters (a key of 41 characters)", "metadata"],
        ["", "must be 1 to 40 characters (a key of 0 characters)", "metadata"],
        // A key that cannot be stored is not echoed (api.md): a lone surrogate in `field` was JSON
        // that strict parsers refuse (outside contract fuzzing), a NUL was written out.
        ["a\u0000", "must not contain NUL", "metadata"],
        ["order.id\u0000", "must not contain NUL", "metadata"],
        ["k\ud800", "must be well-formed Unicode", "metadata"],
        ["\udfffk", "must be well-formed Unicode", "metadata"]
      ]
      for (const [key, reason, field] of badKeys) {
        const answer = yield* send({ metadata: { [key]: "v" } })
        assertInvalid(answer, field, `metadata key ${JSON.stringify(key)}`)
        assert.include(String(jsonOf(answer)["detail"]), `metadata keys ${reason}`, `metadata key ${JSON.stringify(key)}`)
        // Well-formed Unicode, whatever was sent: no lone surrogate escape in the answer.
        assert.notMatch(answer.text, /\\ud[89a-f][0-9a-f]{2}/i, `metadata key ${JSON.stringify(key)}: ${answer.text}`)
        // The key itself is never echoed back, in `field` or `detail`.
        if (key.length > 0) assert.notInclude(answer.text, key, `metadata key ${JSON.stringify(key)}: ${answer.text}`)
      }
      // 11 values of 500 × U+0001 were 6 bytes each as stored (\u0001): over 32,768. A control
      // character other than tab and line breaks is refused for itself now (migration 0083), first.
      const controls = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, "\u0001".repeat(500)]))
      const controlAnswer = yield* send({ metadata: controls })
      assertInvalid(controlAnswer, "metadata.k0", "metadata of control characters")
      assert.include(String(jsonOf(controlAnswer)["detail"]), "must not contain control characters other than tab, line feed and carriage return (found U+0001)")
      // 20 values of 500 emoji: 500 characters each, 2,000 bytes each: over 32,768 as stored.
      const emoji = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, "😀".repeat(500)]))
      assertInvalid(yield* send({ metadata: emoji }), "metadata", "emoji metadata over its stored size")
      assertInvalid(yield* send({ description: "😀".repeat(501) }), "description", "501 emoji")
      assert.deepStrictEqual(yield* writtenRows(m.merchantId), before, "a refused request wrote nothing")
    }))

  it.effect("a path id not of its kind (NUL, a lone surrogate's bytes, garbage) on every route that takes one: 404, never 5xx, nothing written", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Hostile ids")
      const created = yield* createPayment(m, newKey())
      assert.strictEqual(created.status, 201, describeAnswer(created))
      const paymentId = String(jsonOf(created)["id"])
      const endpoint = yield* server.request("POST", "/v1/webhook_endpoints", {
        apiKey: m.apiKey, idempotencyKey: newKey(), json: { url: "https://example.com/hooks", event_types: ["*"] }
      })
      assert.strictEqual(endpoint.status, 201, describeAnswer(endpoint))
      const endpointId = String(jsonOf(endpoint)["id"])
      const before = yield* writtenRows(m.merchantId)
      // These reached PostgreSQL as text: a NUL was a 500 (22021) on the refund and endpoint routes.
      const hostile = ["%00", "a%00b", "%ED%A0%80", "%FF", "x"]
      const routes = (bad: string): ReadonlyArray<readonly [string, string, unknown?]> => [
        ["GET", `/v1/payments/${bad}/refunds`],
        ["GET", `/v1/payments/${bad}/refunds/re_${"0".repeat(24)}`],
        ["GET", `/v1/payments/${paymentId}/refunds/${bad}`],
        ["GET", `/v1/webhook_endpoints/${bad}`],
        ["DELETE", `/v1/webhook_endpoints/${bad}`],
        ["POST", `/v1/webhook_endpoints/${bad}`, { description: "d" }],
        ["POST", `/v1/webhook_endpoints/${bad}/disable`],
        ["POST", `/v1/webhook_endpoints/${bad}/enable`],
        ["POST", `/v1/webhook_endpoints/${bad}/rotate_secret`, {}],
        ["POST", `/v1/webhook_endpoints/${bad}/recover`, { since: "2026-12-01T00:00:00Z" }],
        ["GET", `/v1/webhook_endpoints/${bad}/deliveries`],
        ["GET", `/v1/webhook_endpoints/${endpointId}/deliveries/${bad}`],
        ["POST", `/v1/webhook_endpoints/${bad}/deliveries/${crypto.randomUUID()}/redeliver`],
        ["POST", `/v1/webhook_endpoints/${endpointId}/deliveries/${bad}/redeliver`]
      ]
      for (const bad of hostile) {
        for (const [method, path, body] of routes(bad)) {
          const answer = yield* server.request(method, path, { apiKey: m.apiKey, idempotencyKey: newKey(), ...(body === undefined ? {} : { json: body }) })
          assert.strictEqual(answer.status, 404, `${method} ${path}: ${describeAnswer(answer)}`)
          assert.match(String(jsonOf(answer)["code"]), /_not_found$/, `${method} ${path}`)
        }
        // A list's cursor that is no endpoint id names none: 400 invalid_cursor, as an unknown one is.
        const page = yield* server.request("GET", `/v1/webhook_endpoints?starting_after=${bad}`, { apiKey: m.apiKey })
        assert.strictEqual(page.status, 400, `starting_after=${bad}: ${describeAnswer(page)}`)
        assert.strictEqual(jsonOf(page)["code"], "invalid_cursor", `starting_after=${bad}`)
      }
      assert.deepStrictEqual(yield* writtenRows(m.merchantId), before, "no key taken, nothing written")
    }))

  it.effect("duplicate members and numbers beyond a double: 400 naming the member, nothing written", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Ambiguous JSON")
      const before = yield* writtenRows(m.merchantId)
      const raw = (rawBody: string) => createPayment(m, newKey(), undefined, { rawBody })
      const rest = `"currency":"USD","payment_method":"pm_card_visa"`
      assertInvalid(yield* raw(`{"amount":5,"amount":99999999999,${rest}}`), "amount", "amount twice")
      assertInvalid(yield* raw(`{"amount":5,"am\\u006funt":6,${rest}}`), "amount", "amount twice, once escaped")
      assertInvalid(yield* raw(`{"amount":5,${rest},"metadata":{"a":"1","a":"2"}}`), "metadata.a", "metadata key twice")
      assertInvalid(yield* raw(`{"amount":1E400,${rest}}`), "amount", "1E400")
      // An unknown member whose name holds a lone surrogate: named written out (\u{D800}), never as a
      // \ud800 escape strict JSON parsers refuse (outside diff review).
      const lone = yield* raw(`{"amount":5,${rest},"\\ud800x":1}`)
      assert.strictEqual(lone.status, 400, describeAnswer(lone))
      assert.notMatch(lone.text, /\\ud[89a-f][0-9a-f]{2}/i, lone.text)
      assert.include(String(jsonOf(lone)["field"]), "\\u{D800}x", lone.text)
      // Not duplicates: the same name in two objects, or as a value.
      const fine = yield* raw(`{"amount":5,${rest},"description":"amount","metadata":{"amount":"amount"}}`)
      assert.strictEqual(fine.status, 201, describeAnswer(fine))
      const after = yield* writtenRows(m.merchantId)
      assert.deepStrictEqual([after.payments, after.keys], [before.payments + 1, before.keys + 1], "only the last request wrote")
    }))

  it.effect("money is exact: an amount written with a fraction or an exponent is 400 naming it (never rounded), beyond 2^53 says the range; nothing written", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Exact money")
      const created = yield* createPayment(m, newKey())
      const id = String(jsonOf(created)["id"])
      const authorized = yield* server.request("POST", `/v1/payments/${id}/authorize`, { apiKey: m.apiKey, idempotencyKey: newKey("authorize") })
      assert.strictEqual(authorized.status, 200, describeAnswer(authorized))
      const before = yield* writtenRows(m.merchantId)
      const raw = (rawBody: string) => createPayment(m, newKey(), undefined, { rawBody })
      const rest = `"currency":"USD","payment_method":"pm_card_visa"`
      for (const amount of ["9999999999.99999999", "10.9999999999999999", "10.0", "1e3", "1E3", "-0.0"]) {
        const answer = yield* raw(`{"amount":${amount},${rest}}`)
        assertInvalid(answer, "amount", amount)
        assert.include(String(jsonOf(answer)["detail"]), "amount: must be an integer written without a fraction or an exponent", amount)
      }
      const settled = yield* server.request("POST", `/v1/payments/${id}/settle`, { apiKey: m.apiKey, idempotencyKey: newKey("settle"), rawBody: `{"amount":499.99999999999999}` })
      assertInvalid(settled, "amount", "settle 499.99999999999999")
      const huge = yield* raw(`{"amount":9007199254740992,${rest}}`)
      assertInvalid(huge, "amount", "2^53")
      assert.strictEqual(jsonOf(huge)["detail"], "amount: must be an integer number of minor units between 1 and 99999999999")
      assert.deepStrictEqual(yield* writtenRows(m.merchantId), before, "a refused request wrote nothing")
      const payment = yield* server.request("GET", `/v1/payments/${id}`, { apiKey: m.apiKey })
      assert.strictEqual(jsonOf(payment)["status"], "AUTHORIZED", "the payment was not captured")
    }))

  it.effect("a body-less POST's unknown field is named; a body needs Content-Type application/json in UTF-8 (415 otherwise), a body-less POST none", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Media type")
      const id = String(jsonOf(yield* createPayment(m, newKey()))["id"])
      const before = yield* writtenRows(m.merchantId)
      const authorize = (options: { readonly rawBody?: string; readonly contentType?: string }) =>
        server.request("POST", `/v1/payments/${id}/authorize`, { apiKey: m.apiKey, idempotencyKey: newKey("authorize"), ...options })
      assertInvalid(yield* authorize({ rawBody: `{"foo":1}` }), "foo", "authorize with an unknown field")
      const body = JSON.stringify(paymentBody())
      const latin1 = yield* createPayment(m, newKey(), undefined, { rawBody: body, contentType: "application/json; charset=iso-8859-1" })
      assert.strictEqual(latin1.status, 415, describeAnswer(latin1))
      assert.strictEqual(jsonOf(latin1)["code"], "unsupported_media_type")
      const untyped = yield* rawRequest(server.process.port, [[
        "POST /v1/payments HTTP/1.1",
        "Host: 127.0.0.1",
        `Authorization: Bearer ${m.apiKey}`,
        `Idempotency-Key: ${newKey()}`,
        `Content-Length: ${Buffer.byteLength(body)}`,
        "Connection: close",
        "",
        body
      ].join("\r\n")])
      assert.strictEqual(untyped.status, 415, `no Content-Type: ${untyped.status} ${untyped.body.slice(0, 300)}`)
      assert.deepStrictEqual(yield* writtenRows(m.merchantId), before, "a refused request wrote nothing")
      const utf8 = yield* createPayment(m, newKey(), undefined, { rawBody: body, contentType: "application/json; charset=UTF-8" })
      assert.strictEqual(utf8.status, 201, describeAnswer(utf8))
      // A body of Unicode spaces is a body, not "no body" (outside contract fuzz: a settle with one
      // U+00A0 ran as a full capture): 400 malformed_json with its JSON type, 415 without one.
      const beforeSpaces = yield* writtenRows(m.merchantId)
      for (const space of ["\u00A0", "\u3000", "\u2028", "\uFEFF\u00A0"]) {
        const spaced = yield* authorize({ rawBody: space, contentType: "application/json" })
        assert.strictEqual(spaced.status, 400, `${JSON.stringify(space)}: ${describeAnswer(spaced)}`)
        assert.strictEqual(jsonOf(spaced)["code"], "malformed_json")
      }
      const spacedUntyped = yield* rawRequest(server.process.port, [[
        `POST /v1/payments/${id}/authorize HTTP/1.1`,
        "Host: 127.0.0.1",
        `Authorization: Bearer ${m.apiKey}`,
        `Idempotency-Key: ${newKey()}`,
        "Content-Length: 3",
        "Connection: close",
        "",
        "\u3000"
      ].join("\r\n")])
      assert.strictEqual(spacedUntyped.status, 415, `U+3000 without Content-Type: ${spacedUntyped.status} ${spacedUntyped.body.slice(0, 300)}`)
      assert.deepStrictEqual(yield* writtenRows(m.merchantId), beforeSpaces, "a refused request wrote nothing (the payment is still CREATED)")
      // JSON's own whitespace is still no body: the same request as none (a replay under its key).
      const authorizeKey = newKey("authorize")
      const newline = yield* server.request("POST", `/v1/payments/${id}/authorize`, { apiKey: m.apiKey, idempotencyKey: authorizeKey, rawBody: "\r\n \t", contentType: "application/json" })
      assert.strictEqual(newline.status, 200, describeAnswer(newline))
      // No body, no Content-Type: still the body-less authorize.
      const bodiless = yield* server.request("POST", `/v1/payments/${id}/authorize`, { apiKey: m.apiKey, idempotencyKey: authorizeKey })
      assert.strictEqual(bodiless.status, 200, describeAnswer(bodiless))
      assert.strictEqual(bodiless.headers.get("idempotent-replayed"), "true")
    }))

  it.effect("a body nested ten thousand deep (20 KB): 400 saying so, not a stack overflow's 500; 32 levels still get the field's own reason", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Deep JSON")
      const before = yield* writtenRows(m.merchantId)
      const raw = (rawBody: string) => createPayment(m, newKey(), undefined, { rawBody })
      const rest = `"amount":5,"currency":"USD","payment_method":"pm_card_visa"`
      const nested = (levels: number, open: string, inner: string, close: string) =>
        `{${rest},"metadata":{"a":${open.repeat(levels)}${inner}${close.repeat(levels)}}}`
      for (const [open, inner, close] of [["[", "", "]"], ["{\"k\":", "1", "}"]] as const) {
        const deep = yield* raw(nested(10_000, open, inner, close))
        assert.strictEqual(deep.status, 400, describeAnswer(deep))
        assert.strictEqual(jsonOf(deep)["code"], "invalid_request")
        assert.include(String(jsonOf(deep)["detail"]), "nested deeper than 32 levels")
      }
      // Brackets inside strings are text, not nesting: 40 of them in a description is a valid body.
      const brackets = yield* raw(`{${rest},"description":"${"[{\\\"".repeat(40)}"}`)
      assert.strictEqual(brackets.status, 201, describeAnswer(brackets))
      // 32 levels in all (the body, metadata, 30 arrays): walked, and refused for what it is.
      assertInvalid(yield* raw(nested(30, "[", "", "]")), "metadata.a", "30 arrays inside metadata")
      const after = yield* writtenRows(m.merchantId)
      assert.deepStrictEqual([after.payments, after.keys], [before.payments + 1, before.keys + 1], "only the bracketed description wrote")
    }))

  it.effect("a body whose bytes are not UTF-8: 400 malformed_json saying so, nothing written (not stored with U+FFFD)", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Not UTF-8")
      const before = yield* writtenRows(m.merchantId)
      const bytes = (...parts: ReadonlyArray<string | ReadonlyArray<number>>) =>
        new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(Buffer.concat(parts.map((part) => (typeof part === "string" ? Buffer.from(part, "utf8") : Buffer.from(part)))))
            controller.close()
          }
        })
      const head = `{"amount":1000,"currency":"USD","payment_method":"pm_card_visa","description":"`
      const cases: ReadonlyArray<readonly [string, ReadonlyArray<number>]> = [
        ["bytes FF FE", [0xff, 0xfe]],
        ["an overlong '/' (C0 AF)", [0xc0, 0xaf]],
        ["a UTF-16 surrogate encoded as UTF-8 (ED A0 80)", [0xed, 0xa0, 0x80]],
        ["a truncated sequence (E2 82)", [0xe2, 0x82]]
      ]
      for (const [label, invalid] of cases) {
        const answer = yield* createPayment(m, newKey(), undefined, { stream: bytes(head, invalid, `"}`) })
        assert.strictEqual(answer.status, 400, `${label}: ${describeAnswer(answer)}`)
        assert.strictEqual(jsonOf(answer)["code"], "malformed_json", label)
        assert.include(String(jsonOf(answer)["detail"]), "not UTF-8", label)
      }
      // The media type is still judged first: the same bytes as text/plain are a 415.
      const plain = yield* createPayment(m, newKey(), undefined, { stream: bytes(head, [0xff], `"}`), contentType: "text/plain" })
      assert.strictEqual(plain.status, 415, describeAnswer(plain))
      assert.deepStrictEqual(yield* writtenRows(m.merchantId), before, "a refused request wrote nothing")
      // Valid UTF-8 (a leading byte order mark dropped, as before; an emoji) is stored as sent.
      const fine = yield* createPayment(m, newKey(), undefined, { stream: bytes([0xef, 0xbb, 0xbf], head, "💳 ok", `"}`) })
      assert.strictEqual(fine.status, 201, describeAnswer(fine))
      assert.strictEqual(jsonOf(fine)["description"], "💳 ok")
    }))

  it.effect("lengths are code points: 500 emoji are a valid description, stored and returned as sent", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Emoji")
      const description = "😀".repeat(500)
      const created = yield* createPayment(m, newKey(), paymentBody({ description, metadata: { "😀": "é".repeat(500) } }))
      assert.strictEqual(created.status, 201, describeAnswer(created))
      assert.strictEqual(jsonOf(created)["description"], description)
    }))

  it.effect("metadata keys named like Object's own (__proto__, constructor, toString) are kept and answered as sent, on create, read and list", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Prototype keys")
      // Written raw: a JavaScript object literal would take `__proto__` as its prototype.
      const rawBody = `{"amount":1050,"currency":"USD","payment_method":"pm_card_visa","metadata":{"__proto__":"order-77","constructor":"c","toString":"t"}}`
      const created = yield* createPayment(m, newKey(), undefined, { rawBody })
      assert.strictEqual(created.status, 201, describeAnswer(created))
      const id = String(jsonOf(created)["id"])
      // In jsonb's key order (shorter first), as every answer lists metadata.
      const expected: Array<[string, string]> = [["toString", "t"], ["__proto__", "order-77"], ["constructor", "c"]]
      // JSON.parse defines own properties, `__proto__` included: the answers' metadata members, in order.
      const metadataOf = (text: string, pick: (body: { metadata?: unknown; data?: ReadonlyArray<{ metadata?: unknown }> }) => unknown) => {
        const metadata = pick(JSON.parse(text))
        return typeof metadata === "object" && metadata !== null ? Object.entries(metadata) : []
      }
      assert.deepStrictEqual(metadataOf(created.text, (body) => body.metadata), expected, created.text)
      const read = yield* server.request("GET", `/v1/payments/${id}`, { apiKey: m.apiKey })
      assert.deepStrictEqual(metadataOf(read.text, (body) => body.metadata), expected, read.text)
      const listed = yield* server.request("GET", "/v1/payments?limit=1", { apiKey: m.apiKey })
      assert.deepStrictEqual(metadataOf(listed.text, (body) => body.data?.[0]?.metadata), expected, listed.text)
    }))

  it.effect("authorize/settle: no body and {} under one key are one request (the second is a replay, not 422)", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Empty body")
      const server = yield* TestServer
      const created = yield* createPayment(m, newKey())
      const id = String(jsonOf(created)["id"])
      const key = newKey("authorize")
      const first = yield* server.request("POST", `/v1/payments/${id}/authorize`, { apiKey: m.apiKey, idempotencyKey: key })
      assert.strictEqual(first.status, 200, describeAnswer(first))
      const second = yield* server.request("POST", `/v1/payments/${id}/authorize`, { apiKey: m.apiKey, idempotencyKey: key, json: {} })
      assert.strictEqual(second.status, 200, describeAnswer(second))
      assert.strictEqual(second.headers.get("idempotent-replayed"), "true")
      assert.strictEqual(second.text, first.text)
    }))

  it.effect("property: any UTF-16 text (lone surrogates, NUL, controls) in description or metadata → 201 or 400, never 5xx", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Unicode property")
      const server = yield* TestServer
      const samples = fc.sample(
        fc.record({ description: fc.oneof(anyText, anyCodePoints), key: fc.oneof(anyText, anyCodePoints), value: fc.oneof(anyText, anyCodePoints) }),
        { numRuns: 120, seed: 20261202 }
      )
      const statuses = new Map<number, number>()
      for (const sample of samples) {
        const answer = yield* server.request("POST", "/v1/payments", {
          apiKey: m.apiKey,
          idempotencyKey: newKey("prop"),
          json: paymentBody({ description: sample.description, metadata: { [sample.key]: sample.value } })
        })
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1)
        assert.oneOf(answer.status, [201, 400], `${JSON.stringify(sample)}: ${describeAnswer(answer)}`)
        if (answer.status === 201) {
          const body = jsonOf(answer)
          assert.strictEqual(body["description"], sample.description, "stored and returned as sent")
        }
      }
      assert.isAbove(statuses.get(201) ?? 0, 0, "some samples are valid")
      assert.isAbove(statuses.get(400) ?? 0, 0, "some samples are refused")
    }))
})
