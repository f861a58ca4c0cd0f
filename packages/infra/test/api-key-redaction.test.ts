// An API key a client put where it does not belong (a query, a path, a header other than
// Authorization), in any spelling a URL gives it, never reaches a log line or a span: the outside
// re-test got `Bearer%20sk_…`, `%22sk_…%22`, `sk_test%5F…`, `%73k_test_…`, `xsk_test_…` and
// `pay_sk_test_…` through a pattern that wanted a word boundary and the literal spelling, and a key
// sent as X-Request-Id into every log line, the payment's history and its Kafka headers.
import { assert, describe, it } from "@effect/vitest"
import { correlationIdFrom, withoutApiKeys } from "../src/index.ts"

const key = "sk_test_AbCdEfGh12345678AbCdEfGh12345678"
const body = key.slice("sk_test_".length)

describe("API keys out of logs and spans", () => {
  it("withoutApiKeys redacts a key wherever it starts and however a URL encodes it; other text is left as written", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      [`api_key=${key}`, "api_key=sk_test_REDACTED"],
      [`auth=Bearer%20${key}`, "auth=Bearer%20sk_test_REDACTED"],
      [`x=%22${key}%22`, "x=%22sk_test_REDACTED%22"],
      [`x=sk_test%5F${body}`, "x=sk_test_REDACTED"],
      [`x=%73k_test_${body}`, "x=sk_test_REDACTED"],
      [`/v1/payments/x${key}`, "/v1/payments/xsk_test_REDACTED"],
      [`/v1/payments/pay_${key}`, "/v1/payments/pay_sk_test_REDACTED"],
      [`sk_live_${body}`, "sk_live_REDACTED"]
    ]
    for (const [text, redacted] of cases) assert.strictEqual(withoutApiKeys(text), redacted, text)
    for (const untouched of ["limit=2&starting_after=pay_0123456789abcdefghjkmnpq", "%zz%", "a%20b", "sk_test_short"]) {
      assert.strictEqual(withoutApiKeys(untouched), untouched, untouched)
    }
  })

  it("an X-Request-Id that carries a key is replaced by a generated id; any other acceptable one is kept", () => {
    const replaced = correlationIdFrom(`req-${key}`)
    assert.notInclude(replaced, body)
    assert.match(replaced, /^[0-9a-f-]{36}$/)
    assert.strictEqual(correlationIdFrom("req-123"), "req-123")
  })
})
