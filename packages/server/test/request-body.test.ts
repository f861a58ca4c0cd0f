// The request body's text, read exactly (in process, no server): a number written with a fraction
// or an exponent is refused where JSON.parse would round it (`9999999999.99999999` became
// 10000000000 and was stored), a duplicate member is named by its dotted path, a charset other
// than UTF-8 is not JSON, and an integer beyond 2^53 says the range. The rule "every number of a
// body is an integer" holds because the document declares no other kind of number in a request body.
import { assert, describe, it } from "@effect/vitest"
import { CreatePaymentBody, CreateRefundBody, CreateWebhookEndpointBody, PaymentsApi, SettlePaymentBody } from "@pay/api"
import { Effect, Result } from "effect"
import { OpenApi } from "effect/http-api"
import { decodeBody, fieldPath, isJsonUtf8, parseJsonBody } from "../src/http/RequestBody.ts"

const refusal = (text: string) => {
  const parsed = parseJsonBody(text)
  if (Result.isSuccess(parsed)) return undefined
  const error = parsed.failure
  return error._tag === "InvalidRequest" ? { field: error.field, detail: error.detail } : { field: undefined, detail: error._tag }
}

const rest = `"currency":"USD","payment_method":"pm_card_visa"`

describe("request body text", () => {
  it("a number written with a fraction or an exponent is refused, naming its field; integers as written pass", () => {
    const inexact: ReadonlyArray<readonly [string, string]> = [
      [`{"amount":9999999999.99999999,${rest}}`, "amount"],
      [`{"amount":10.9999999999999999,${rest}}`, "amount"],
      [`{"amount":499.99999999999999}`, "amount"],
      [`{"amount":10.0,${rest}}`, "amount"],
      [`{"amount":1e3,${rest}}`, "amount"],
      [`{"amount":1E3,${rest}}`, "amount"],
      [`{"amount":-1.5e+2,${rest}}`, "amount"],
      [`{"expires_in_ms":1000.0}`, "expires_in_ms"],
      [`{"amount":5,${rest},"metadata":{"a":0.5}}`, "metadata.a"],
      [`{"event_types":["*"],"x":[1,[2,3.0]]}`, "x.1.1"]
    ]
    for (const [text, field] of inexact) {
      const refused = refusal(text)
      assert.strictEqual(refused?.field, field, text)
      assert.include(refused?.detail ?? "", `${field}: must be an integer written without a fraction or an exponent`, text)
    }
    // A bare number is not a body of this API at all: said as of a bare integer (decodeBody).
    for (const text of ["1.5", " -2e3 "]) assert.strictEqual(refusal(text)?.detail, `the body must be a JSON object (got the number ${text.trim()})`, text)
    // Digits, dots and e's inside strings, and the e of true and false, are not numbers.
    for (const text of [`{"amount":1050,${rest},"description":"1.5e3 and 2E-1","metadata":{"1.0":"e"}}`, `{"a":true,"b":false,"c":null,"d":[-0,10,-7]}`]) {
      assert.isUndefined(refusal(text), text)
    }
  })

  it("a duplicate member is named by its dotted path", () => {
    assert.strictEqual(refusal(`{"amount":5,${rest},"metadata":{"a":"1","a":"2"}}`)?.field, "metadata.a")
    assert.strictEqual(refusal(`{"amount":5,"am\\u006funt":6,${rest}}`)?.field, "amount")
    assert.strictEqual(refusal(`{"x":[{"k":1},{"k":2,"k":3}]}`)?.field, "x.1.k")
    assert.isUndefined(refusal(`{"amount":5,${rest},"description":"amount","metadata":{"amount":"amount"}}`))
  })

  it.effect("an integer beyond 2^53, or out of the bounds, says the range (not a bare \"Expected an integer\")", () =>
    Effect.gen(function* () {
      for (const amount of [9007199254740992, 1e20, 0, 100_000_000_000]) {
        const error = yield* Effect.flip(decodeBody(CreatePaymentBody, { amount, currency: "USD", payment_method: "pm_card_visa" }))
        assert.strictEqual(error.detail, "amount: must be an integer number of minor units between 1 and 99999999999", String(amount))
        const settle = yield* Effect.flip(decodeBody(SettlePaymentBody, { amount }))
        assert.strictEqual(settle.field, "amount")
      }
    }))

  it.effect("a missing member is 'is required', an unknown one 'unknown field', a body that is not an object says it is the body (not the library's words)", () =>
    Effect.gen(function* () {
      const missing = yield* Effect.flip(decodeBody(CreatePaymentBody, { currency: "USD", payment_method: "pm_card_visa" }))
      assert.deepStrictEqual([missing.field, missing.detail], ["amount", "amount: is required"])
      const unknown = yield* Effect.flip(decodeBody(SettlePaymentBody, { amount: 5, extra: 1 }))
      assert.deepStrictEqual([unknown.field, unknown.detail], ["extra", "extra: unknown field: this request does not take it"])
      for (const body of [null, [], "x", 1]) {
        const whole = yield* Effect.flip(decodeBody(CreatePaymentBody, body))
        assert.isUndefined(whole.field)
        assert.match(whole.detail, /^the body must be a JSON object \(got (null|an array|a string|a number)\)$/, JSON.stringify(body))
      }
    }))

  it.effect("a member of the wrong JSON type is said in the API's words: an integer, a string or null, an array (outside contract fuzz: the library's \"Expected number\")", () =>
    Effect.gen(function* () {
      const body = { amount: 1050, currency: "USD", payment_method: "pm_card_visa" }
      const cases: ReadonlyArray<readonly [Record<string, unknown>, string, string]> = [
        [{ ...body, amount: "1050" }, "amount", "amount: must be an integer (a JSON number)"],
        [{ ...body, amount: true }, "amount", "amount: must be an integer (a JSON number)"],
        [{ ...body, description: 1 }, "description", "description: must be a string or null"],
        // A key of the wrong length is the key's problem, named `metadata`, before its value's type
        // (outside re-test: `metadata.<the 41-character key>: must be a string`).
        [{ ...body, metadata: { ["k".repeat(41)]: 5 } }, "metadata", "metadata: metadata keys must be 1 to 40 characters (a key of 41 characters)"],
        [{ ...body, metadata: { "": 5 } }, "metadata", "metadata: metadata keys must be 1 to 40 characters (a key of 0 characters)"]
      ]
      for (const [sent, field, detail] of cases) {
        const refused = yield* Effect.flip(decodeBody(CreatePaymentBody, sent))
        assert.deepStrictEqual([refused.field, refused.detail], [field, detail], JSON.stringify(sent))
      }
      // A list of allowed values, as "one of" them.
      const reason = yield* Effect.flip(decodeBody(CreateRefundBody, { reason: 5 }))
      assert.deepStrictEqual([reason.field, reason.detail], ["reason", `reason: must be one of "requested_by_customer", "duplicate", "fraudulent" or null`])
      const eventType = yield* Effect.flip(decodeBody(CreateWebhookEndpointBody, { url: "https://merchant.example/hooks", event_types: ["bad"] }))
      assert.strictEqual(eventType.field, "event_types.0")
      assert.match(eventType.detail, /^event_types\.0: must be one of "\*", "payment_created", /u)
      assert.notInclude(eventType.detail, "Expected")
    }))

  it("field names: dotted members, array indexes, and a member that would read as more than one in brackets", () => {
    assert.strictEqual(fieldPath(["metadata", "order_id"]), "metadata.order_id")
    assert.strictEqual(fieldPath(["items", "0", "amount"]), "items.0.amount")
    assert.strictEqual(fieldPath(["metadata", "a.b"]), `metadata["a.b"]`)
    assert.strictEqual(fieldPath(["metadata", ""]), `metadata[""]`)
    assert.strictEqual(fieldPath(["metadata", `say "hi" [now]`]), `metadata["say \\"hi\\" [now]"]`)
    assert.strictEqual(fieldPath([]), "")
  })

  it("Content-Type: application/json, with no charset or UTF-8 only", () => {
    for (const header of ["application/json", "Application/JSON", "application/json; charset=utf-8", "application/json;charset=\"UTF-8\"", "application/json; charset=utf8"]) {
      assert.isTrue(isJsonUtf8(header), header)
    }
    for (const header of ["", "text/plain", "application/json; charset=iso-8859-1", "application/json; charset=utf-16", "application/json-seq", "application/x-www-form-urlencoded"]) {
      assert.isFalse(isJsonUtf8(header), header)
    }
  })

  it("no request body of the document declares a number that is not an integer (the rule above would refuse it)", () => {
    const document: unknown = JSON.parse(JSON.stringify(OpenApi.fromApi(PaymentsApi)))
    const types: Array<string> = []
    const visit = (node: unknown): void => {
      if (Array.isArray(node)) return node.forEach(visit)
      if (typeof node !== "object" || node === null) return
      for (const [key, value] of Object.entries(node)) {
        if (key === "type" && typeof value === "string") types.push(value)
        else if (key === "$ref" && typeof value === "string") visit(resolve(value))
        else visit(value)
      }
    }
    const member = (node: unknown, name: string): unknown =>
      typeof node === "object" && node !== null ? Object.entries(node).find(([key]) => key === name)?.[1] : undefined
    const resolve = (ref: string): unknown => ref.replace(/^#\//u, "").split("/").reduce<unknown>(member, document)
    const values = (node: unknown): ReadonlyArray<unknown> => (typeof node === "object" && node !== null ? Object.values(node) : [])
    const bodies = values(member(document, "paths")).flatMap((item) => values(item).map((operation) => member(operation, "requestBody")))
      .filter((body) => body !== undefined)
    assert.isAtLeast(bodies.length, 6)
    bodies.forEach(visit)
    assert.include(types, "integer")
    assert.notInclude(types, "number")
  })
})
