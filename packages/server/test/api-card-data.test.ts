// Card numbers where a merchant writes text (outside attack review F3), over real HTTP (the real
// server process): a card number as `payment_method` grouped by letters, or in `description` or
// `metadata` (keys and values, of a payment and of a refund), is a 400 naming the field and
// saying why, nothing written, and the number is echoed neither in the answer nor in the
// server's logs. Ordinary text with numbers, and a long order number that fails the Luhn check,
// are stored as sent. The same free text refuses hidden characters (outside attack review F4:
// controls other than tab and line breaks, bidirectional overrides and isolates), naming the field
// and the code point; the right-to-left marks and line breaks a merchant needs are stored as sent.
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { decodeRows } from "@pay/infra"
import { type Answer, type HttpCallError, jsonOf } from "./support/Http.ts"
import { createMerchant, createPayment, newKey, paymentBody, TestServer, testServerLayer, writtenRows } from "./support/TestServer.ts"

const Live = testServerLayer()

const describeAnswer = (answer: Answer) => `${answer.status} ${answer.text.slice(0, 300)}`
const cardReason = "looks like a card number (13 to 19 digits passing the Luhn check); card data must not be sent in description or metadata"

const assertCardRefused = (answer: Answer, field: string, label: string) => {
  assert.strictEqual(answer.status, 400, `${label}: ${describeAnswer(answer)}`)
  assert.strictEqual(jsonOf(answer)["code"], "invalid_request", label)
  assert.strictEqual(jsonOf(answer)["field"], field, label)
  assert.notMatch(answer.text, /4242|4111|3782/u, `${label}: the number is not echoed`)
}

const refundCount = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ count: Schema.BigInt }))(sql`SELECT count(*) AS count FROM refunds WHERE payment_id = ${paymentId}`)
    return Number(row?.count ?? -1)
  })

layer(Live, { excludeTestServices: true, timeout: "120 seconds" })("card data in a payment or a refund: 400 naming the field (real server process)", (it) => {
  it.effect("payment: payment_method grouped by letters, description, a metadata value or key holding a card number: 400 naming the field and why, nothing written, never echoed", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Card data")
      const before = yield* writtenRows(m.merchantId)
      const send = (overrides: Readonly<Record<string, unknown>>) => createPayment(m, newKey(), paymentBody(overrides))
      for (const payment_method of ["pm_4242x4242x4242x4242", "pm_4242a4242b4242c4242", "pm_4242_x4242_x4242_x4242"]) {
        const answer = yield* send({ payment_method })
        assertCardRefused(answer, "payment_method", payment_method)
        assert.include(String(jsonOf(answer)["detail"]), "payment_method must be a token, not a card number", payment_method)
      }
      const description = yield* send({ description: "Customer card 4242 4242 4242 4242, exp 12/28" })
      assertCardRefused(description, "description", "description")
      assert.strictEqual(jsonOf(description)["detail"], `description: description ${cardReason}`)
      // Grouped by no-break, thin or narrow spaces, an invisible joiner, two spaces, tabs, dashes,
      // or in fullwidth digits (outside re-tests: stored before).
      for (const value of ["4111-1111-1111-1111", "4111111111111111", "Amex 3782 822463 10005", "4111\u00A01111\u00A01111\u00A01111", "4111\u20091111\u20091111\u20091111", "4111\u202F1111\u202F1111\u202F1111", "4111\u200B1111\u200B1111\u200B1111", "4111  1111  1111  1111", "4111\u20131111\u20131111\u20131111", "\uFF14\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11\uFF11",
        // Bidirectional marks and Hangul fillers between the groups, the Japanese long-vowel mark as a
        // dash, other scripts' digits, a letter after the number, a card on its own line between
        // numbers (outside re-tests of 0117 and 0119: stored).
        "4111\u200E1111\u200E1111\u200E1111", "4111\u31641111\u31641111\u31641111", "4111\u30FC1111\u30FC1111\u30FC1111", "Room 101\n4111 1111 1111 1111\n12/28",
        // Fullwidth hyphens (a Japanese input method in fullwidth mode), mathematical digits (third re-test);
        // one dot leaders, vertical dashes, subscript digits (fourth re-test).
        "4111\u20241111\u20241111\u20241111", "4111\uFE311111\uFE311111\uFE311111", "\u2084\u2081\u2081\u2081\u2081\u2081\u2081\u2081\u2081\u2081\u2081\u2081\u2081\u2081\u2081\u2081",
        "\uFF14\uFF11\uFF11\uFF11\uFF0D\uFF11\uFF11\uFF11\uFF11\uFF0D\uFF11\uFF11\uFF11\uFF11\uFF0D\uFF11\uFF11\uFF11\uFF11", "\u{1D7D2}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}\u{1D7CF}",
        "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661", "4111 1111 1111 1111x"]) {
        const answer = yield* send({ metadata: { order_id: "1001", note: value } })
        assertCardRefused(answer, "metadata.note", `metadata value ${value}`)
        assert.strictEqual(jsonOf(answer)["detail"], `metadata.note: a metadata value ${cardReason}`)
      }
      // A key that is a card number is not echoed back as the field's name: the field is `metadata`.
      const key = yield* send({ metadata: { "4242 4242 4242 4242": "visa" } })
      assertCardRefused(key, "metadata", "metadata key")
      assert.strictEqual(jsonOf(key)["detail"], `metadata: a metadata key ${cardReason}`)
      assert.deepStrictEqual(yield* writtenRows(m.merchantId), before, "a refused request wrote nothing")
      assert.notMatch(server.process.output(), /4242 4242 4242 4242|4111-1111-1111-1111|4111111111111111|4242x4242x4242x4242/u, "no card number in the server's logs")
    }))

  it.effect("a card number in what a refused request would echo (a member given twice, an unknown member's name, a query parameter's name, a path id) is written [card number]: in the answer and in the server's logs", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Card data: echoes")
      const before = yield* writtenRows(m.merchantId)
      const body = JSON.stringify(paymentBody({}))
      const refusals: ReadonlyArray<readonly [string, Effect.Effect<Answer, HttpCallError, TestServer>]> = [
        ["a metadata key given twice", createPayment(m, newKey(), undefined, { rawBody: body.replace(/\}$/u, ',"metadata":{"4242424242424242":"1","4242424242424242":"2"}}') })],
        ["an unknown member", createPayment(m, newKey(), undefined, { rawBody: body.replace(/\}$/u, ',"4242424242424242":"x"}') })],
        ["an unknown member glued to letters", createPayment(m, newKey(), undefined, { rawBody: body.replace(/\}$/u, ',"card4242424242424242x":"x"}') })],
        ["a query parameter's name", server.request("GET", "/v1/payments?4111111111111111=1", { apiKey: m.apiKey })],
        ["a path id", server.request("GET", "/v1/payments/4111111111111111", { apiKey: m.apiKey })]
      ]
      for (const [label, send] of refusals) {
        const answer = yield* send
        assert.oneOf(answer.status, [400, 404], `${label}: ${describeAnswer(answer)}`)
        assert.notMatch(answer.text, /4242|4111/u, `${label}: the number is not echoed (${answer.text.slice(0, 300)})`)
        assert.include(answer.text, "[card number]", `${label}: what was there is said`)
      }
      // A metadata key over 40 characters is not echoed at all (`field` is `metadata`, as for every key).
      const longKey = yield* createPayment(m, newKey(), paymentBody({ metadata: { [`4242424242424242${"x".repeat(30)}`]: "v" } }))
      assert.strictEqual(longKey.status, 400, describeAnswer(longKey))
      assert.strictEqual(jsonOf(longKey)["field"], "metadata")
      assert.notMatch(longKey.text, /4242|xxxx/u, `a metadata key over 40 characters is not echoed (${longKey.text.slice(0, 300)})`)
      assert.deepStrictEqual(yield* writtenRows(m.merchantId), before, "a refused request wrote nothing")
      assert.notMatch(server.process.output(), /4242424242424242|4242 4242 4242 4242|4111111111111111/u, "no card number in the server's logs")
    }))

  it.effect("payment: ordinary text with numbers, a Luhn-invalid 16-digit order number, dates split by a word in a token: stored and returned as sent", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Card data: look-alikes")
      const payment_method = "pm_2024_12_a_31_12_2025"
      const description = "Order #1001: 2 shirts, size 42, 19.99 EUR each; call +44 20 7946 0958"
      // Phone pairs and date ranges joined by ` / ` and ` - ` (0117 refused them, one in three: outside re-test).
      const metadata = {
        order_id: "4242424242424243", placed_at: "2026-12-04 10:30:00", iban: "BE68 5390 0754 7034",
        phones: "Tel 020 7946 0958 / 020 7946 0959", stay: "02.01.2026 - 16.01.2026", booking: "2026-01-02 \u2013 2026-01-16",
        // One per line: lists of numbers are not card numbers (0119's first form joined lines: re-test).
        orders: "4242\n4242\n4242\n4243", amounts: "1299\n4500\n7300\n1250\n990", row: "12\t34\t5678\t9012\t3456"
      }
      const created = yield* createPayment(m, newKey(), paymentBody({ payment_method, description, metadata }))
      assert.strictEqual(created.status, 201, describeAnswer(created))
      const read = yield* server.request("GET", `/v1/payments/${String(jsonOf(created)["id"])}`, { apiKey: m.apiKey })
      for (const answer of [created, read]) {
        assert.strictEqual(jsonOf(answer)["payment_method"], payment_method)
        assert.strictEqual(jsonOf(answer)["description"], description)
        assert.deepStrictEqual(Object.fromEntries(Object.entries(jsonOf(answer)["metadata"] as Record<string, string>).sort()), Object.fromEntries(Object.entries(metadata).sort()))
      }
    }))

  it.effect("refund: a card number in a metadata value or key is 400 naming the field, no refund written; an order number is accepted", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Card data: refunds")
      const created = yield* createPayment(m, newKey())
      const id = String(jsonOf(created)["id"])
      for (const action of ["authorize", "settle"]) {
        const answer = yield* server.request("POST", `/v1/payments/${id}/${action}`, { apiKey: m.apiKey, idempotencyKey: newKey(action) })
        assert.strictEqual(answer.status, 200, `${action}: ${describeAnswer(answer)}`)
      }
      const refund = (metadata: Readonly<Record<string, string>>) =>
        server.request("POST", `/v1/payments/${id}/refunds`, { apiKey: m.apiKey, idempotencyKey: newKey("refund"), json: { amount: 100, metadata } })
      assertCardRefused(yield* refund({ card: "4242.4242.4242.4242" }), "metadata.card", "refund metadata value")
      assertCardRefused(yield* refund({ "4111111111111111": "x" }), "metadata", "refund metadata key")
      assert.strictEqual(yield* refundCount(id), 0, "no refund written")
      const fine = yield* refund({ order_id: "4242424242424243" })
      assert.strictEqual(fine.status, 201, describeAnswer(fine))
      assert.deepStrictEqual(jsonOf(fine)["metadata"], { order_id: "4242424242424243" })
      assert.strictEqual(yield* refundCount(id), 1)
    }))

  it.effect("hidden characters: a control character or a bidirectional override in a description, a metadata value or key, a refund's metadata or an endpoint's description is 400 naming the field and the code point; tabs, line breaks and RTL marks are stored as sent", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Hidden characters")
      const before = yield* writtenRows(m.merchantId)
      const send = (overrides: Readonly<Record<string, unknown>>) => createPayment(m, newKey(), paymentBody(overrides))
      const refused = (answer: Answer, field: string, codePoint: string, label: string) => {
        assert.strictEqual(answer.status, 400, `${label}: ${describeAnswer(answer)}`)
        assert.strictEqual(jsonOf(answer)["code"], "invalid_request", label)
        assert.strictEqual(jsonOf(answer)["field"], field, label)
        assert.include(String(jsonOf(answer)["detail"]), `found ${codePoint}`, label)
      }
      refused(yield* send({ description: "Invoice\u001b[2J 42" }), "description", "U+001B", "an escape sequence")
      refused(yield* send({ description: "Pay to \u202Eliamg.com" }), "description", "U+202E", "a right-to-left override")
      refused(yield* send({ description: "bell\u0007" }), "description", "U+0007", "a bell")
      refused(yield* send({ description: "C1 \u009B31m" }), "description", "U+009B", "a C1 control")
      refused(yield* send({ metadata: { note: "isolate \u2066x\u2069" } }), "metadata.note", "U+2066", "a metadata value")
      // A key with a hidden character is not echoed as the field: the field is `metadata`.
      const key = yield* send({ metadata: { "ord\u202Eer": "1" } })
      refused(key, "metadata", "U+202E", "a metadata key")
      assert.notInclude(key.text, "\u202E", "the key is not echoed")
      // Not even when its value is refused too (values are checked first, named by their key).
      for (const value of ["\u0007", "x".repeat(501)]) {
        const both = yield* send({ metadata: { "ord\u202Eer": value } })
        refused(both, "metadata", "U+202E", `a metadata key with a refused value too (${value.length})`)
        assert.notInclude(both.text, "\u202E", "the key is not echoed")
      }
      const cardKey = yield* send({ metadata: { "4242424242424242": "x".repeat(501) } })
      assert.deepStrictEqual([cardKey.status, jsonOf(cardKey)["field"]], [400, "metadata"], describeAnswer(cardKey))
      assert.notInclude(cardKey.text, "4242", "a card number as a key is not echoed, whatever its value")
      assert.deepStrictEqual(yield* writtenRows(m.merchantId), before, "a refused request wrote nothing")

      const description = "Line one\r\nLine two\twith a tab; \u200Fעברית\u200E, emoji \u{1F600}"
      const metadata = { note: "a\tb\nc", rtl: "\u200Fשלום" }
      const created = yield* send({ description, metadata })
      assert.strictEqual(created.status, 201, describeAnswer(created))
      const id = String(jsonOf(created)["id"])
      const read = yield* server.request("GET", `/v1/payments/${id}`, { apiKey: m.apiKey })
      assert.strictEqual(jsonOf(read)["description"], description)
      assert.deepStrictEqual(jsonOf(read)["metadata"], metadata)

      for (const action of ["authorize", "settle"]) {
        const answer = yield* server.request("POST", `/v1/payments/${id}/${action}`, { apiKey: m.apiKey, idempotencyKey: newKey(action) })
        assert.strictEqual(answer.status, 200, `${action}: ${describeAnswer(answer)}`)
      }
      const refund = yield* server.request("POST", `/v1/payments/${id}/refunds`, {
        apiKey: m.apiKey,
        idempotencyKey: newKey("refund"),
        json: { amount: 100, metadata: { why: "\u0085next line" } }
      })
      refused(refund, "metadata.why", "U+0085", "a refund's metadata value")
      assert.strictEqual(yield* refundCount(id), 0, "no refund written")

      const endpoint = yield* server.request("POST", "/v1/webhook_endpoints", {
        apiKey: m.apiKey,
        idempotencyKey: newKey("endpoint"),
        json: { url: "https://hooks.example.com/in", event_types: ["*"], description: "ops \u202Dteam" }
      })
      refused(endpoint, "description", "U+202D", "an endpoint's description")
    }))
})
