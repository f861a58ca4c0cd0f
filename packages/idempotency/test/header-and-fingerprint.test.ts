import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import { isDeepStrictEqual } from "node:util"
import {
  canonicalBodyFromText,
  canonicalJson,
  fingerprint,
  fingerprintRequest,
  parseIdempotencyKeyResult
} from "../src/index.ts"

type Expected = { readonly key: string } | { readonly error: string; readonly reason?: string }

const cases: ReadonlyArray<readonly [string, string | undefined, Expected]> = [
  ["plain token (Stripe form)", "KG5LxwFBepaKHyUD", { key: "KG5LxwFBepaKHyUD" }],
  ["uuid", "8e03978e-40d5-43e8-bc93-6894a57f9324", { key: "8e03978e-40d5-43e8-bc93-6894a57f9324" }],
  ["quoted sf-string (IETF form) names the same key", "\"KG5LxwFBepaKHyUD\"", { key: "KG5LxwFBepaKHyUD" }],
  ["surrounding optional whitespace is not part of the key", " \tabc \t", { key: "abc" }],
  ["quoted with surrounding whitespace", "  \"abc\"  ", { key: "abc" }],
  ["inner spaces are kept", "a b", { key: "a b" }],
  ["quoted escapes \\\" and \\\\", "\"a\\\"b\\\\c\"", { key: "a\"b\\c" }],
  ["255 characters is the maximum", "k".repeat(255), { key: "k".repeat(255) }],
  ["255 characters quoted", `"${"k".repeat(255)}"`, { key: "k".repeat(255) }],
  ["missing header", undefined, { error: "IdempotencyKeyMissing" }],
  ["empty", "", { error: "IdempotencyKeyInvalid", reason: "empty" }],
  ["only whitespace", "   ", { error: "IdempotencyKeyInvalid", reason: "empty" }],
  ["empty quoted string", "\"\"", { error: "IdempotencyKeyInvalid", reason: "empty" }],
  ["256 characters", "k".repeat(256), { error: "IdempotencyKeyInvalid", reason: "too_long" }],
  ["256 characters quoted", `"${"k".repeat(256)}"`, { error: "IdempotencyKeyInvalid", reason: "too_long" }],
  ["NUL", "ab\u0000c", { error: "IdempotencyKeyInvalid", reason: "control_character" }],
  ["newline (header injection)", "abc\r\nX-Evil: 1", { error: "IdempotencyKeyInvalid", reason: "control_character" }],
  ["inner tab", "a\tb", { error: "IdempotencyKeyInvalid", reason: "control_character" }],
  ["DEL", "ab\u007f", { error: "IdempotencyKeyInvalid", reason: "control_character" }],
  ["control character inside quotes", "\"a\u0001b\"", { error: "IdempotencyKeyInvalid", reason: "control_character" }],
  ["non-ASCII", "clé", { error: "IdempotencyKeyInvalid", reason: "non_ascii" }],
  ["unterminated quote", "\"abc", { error: "IdempotencyKeyInvalid", reason: "malformed_quoted_string" }],
  ["text after the closing quote", "\"abc\"def", { error: "IdempotencyKeyInvalid", reason: "malformed_quoted_string" }],
  ["sf parameters are not accepted", "\"abc\";p=1", { error: "IdempotencyKeyInvalid", reason: "malformed_quoted_string" }],
  ["bad escape", "\"a\\nb\"", { error: "IdempotencyKeyInvalid", reason: "malformed_quoted_string" }]
]

describe("Idempotency-Key header", () => {
  for (const [name, header, expected] of cases) {
    it(name, () => {
      const parsed = parseIdempotencyKeyResult(header)
      if ("key" in expected) {
        assert.isTrue(Result.isSuccess(parsed), `expected success for ${JSON.stringify(header)}`)
        if (Result.isSuccess(parsed)) assert.strictEqual(parsed.success, expected.key)
      } else {
        assert.isTrue(Result.isFailure(parsed), `expected failure for ${JSON.stringify(header)}`)
        if (Result.isFailure(parsed)) {
          assert.strictEqual(parsed.failure._tag, expected.error)
          if (expected.reason !== undefined && parsed.failure._tag === "IdempotencyKeyInvalid") {
            assert.strictEqual(parsed.failure.reason, expected.reason)
          }
        }
      }
    })
  }

  it("errors carry HTTP 400 and stable codes", () => {
    const missing = parseIdempotencyKeyResult(undefined)
    const invalid = parseIdempotencyKeyResult("")
    assert.isTrue(Result.isFailure(missing) && missing.failure.code === "idempotency_key_missing")
    assert.isTrue(Result.isFailure(invalid) && invalid.failure.code === "idempotency_key_invalid")
  })
})

describe("request fingerprint", () => {
  const payment = { amount_minor: 1250, currency: "EUR", payment_method: "pm_card_visa", metadata: { b: 1, a: [1, { y: 2, x: 1 }] } }

  it("canonical JSON sorts keys recursively and drops whitespace", () => {
    assert.strictEqual(
      canonicalJson(payment),
      "{\"amount_minor\":1250,\"currency\":\"EUR\",\"metadata\":{\"a\":[1,{\"x\":1,\"y\":2}],\"b\":1},\"payment_method\":\"pm_card_visa\"}"
    )
  })

  it("key order and whitespace do not change the fingerprint", () => {
    const a = "{\"amount_minor\":1250,\"currency\":\"EUR\",\"payment_method\":\"pm_card_visa\"}"
    const b = "{\n  \"payment_method\" : \"pm_card_visa\",\n  \"currency\": \"EUR\",\n\t\"amount_minor\": 1250\n}\n"
    assert.strictEqual(canonicalBodyFromText(a), canonicalBodyFromText(b))
    const fa = fingerprint({ method: "POST", path: "/v1/payments", canonicalBody: canonicalBodyFromText(a) })
    const fb = fingerprint({ method: "post", path: "/v1/payments", canonicalBody: canonicalBodyFromText(b) })
    assert.strictEqual(fa, fb)
    assert.match(fa, /^[0-9a-f]{64}$/)
  })

  it("any difference in a value, the method or the path changes it", () => {
    const base = fingerprintRequest({ method: "POST", path: "/v1/payments", body: { amount_minor: 1250, currency: "EUR" } })
    const variants = [
      fingerprintRequest({ method: "POST", path: "/v1/payments", body: { amount_minor: 1251, currency: "EUR" } }),
      fingerprintRequest({ method: "POST", path: "/v1/payments", body: { amount_minor: "1250", currency: "EUR" } }),
      fingerprintRequest({ method: "POST", path: "/v1/payments", body: { amount_minor: 1250, currency: "EUR", x: null } }),
      fingerprintRequest({ method: "PUT", path: "/v1/payments", body: { amount_minor: 1250, currency: "EUR" } }),
      fingerprintRequest({ method: "POST", path: "/v1/payments/x", body: { amount_minor: 1250, currency: "EUR" } }),
      fingerprintRequest({ method: "POST", path: "/v1/payments", body: [1250, "EUR"] }),
      fingerprintRequest({ method: "POST", path: "/v1/payments", body: undefined })
    ]
    assert.strictEqual(new Set([base, ...variants]).size, variants.length + 1)
  })

  it("is sha256(METHOD \\n path \\n canonical body), as documented", () => {
    // Pinned (computed with `printf 'POST\n/v1/payments\n{"a":1}' | sha256sum`): a change to the
    // canonical form would silently turn every in-flight client retry into a 422.
    assert.strictEqual(
      fingerprintRequest({ method: "POST", path: "/v1/payments", body: { a: 1 } }),
      "98482f14f0c38a774016e604a73a6d6e6309989fa5722fa94cb2fc11ea2e8360"
    )
  })

  it("empty and absent bodies are the same; bigint is a JSON integer; non-JSON text is kept as is", () => {
    assert.strictEqual(canonicalBodyFromText(""), "")
    assert.strictEqual(canonicalBodyFromText("  \n"), "")
    assert.strictEqual(canonicalJson({ amount_minor: 99_999_999_999n }), "{\"amount_minor\":99999999999}")
    assert.strictEqual(canonicalBodyFromText("{\"amount_minor\": 99999999999}"), canonicalJson({ amount_minor: 99_999_999_999n }))
    assert.strictEqual(canonicalBodyFromText("not json"), "not json")
    assert.strictEqual(canonicalJson({ a: undefined, b: [undefined] }), "{\"b\":[null]}")
  })

  // Properties: the examples above pin the form; these say what it is for, over random documents.
  /** What a body means once parsed (JSON.parse of its own serialization: -0 is 0, undefined gone). */
  const meaning = (value: unknown): unknown => JSON.parse(JSON.stringify(value) ?? "null")
  /** The same document written by another client: every object's keys shuffled, other spacing. */
  const rewritten = (value: unknown, order: ReadonlyArray<number>, indent: number): string => {
    let turn = 0
    const shuffle = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(shuffle)
      if (typeof v !== "object" || v === null) return v
      const keys = Object.keys(v)
      const shift = order.length === 0 ? 0 : (order[turn++ % order.length] ?? 0) % Math.max(keys.length, 1)
      return Object.fromEntries([...keys.slice(shift), ...keys.slice(0, shift)].reverse().map((k) => [k, shuffle(Object.getOwnPropertyDescriptor(v, k)?.value)]))
    }
    return JSON.stringify(shuffle(value), null, indent)
  }
  const body = (value: unknown) => canonicalBodyFromText(JSON.stringify(value))
  const print = (method: string, value: unknown) => fingerprint({ method, path: "/v1/payments", canonicalBody: body(value) })

  it("property: the same document written differently (key order, spacing) has one canonical form and one fingerprint, which means the same document", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.array(fc.nat(20), { maxLength: 8 }), fc.integer({ min: 0, max: 4 }), (value, order, indent) => {
        const canonical = body(value)
        assert.strictEqual(canonicalBodyFromText(rewritten(value, order, indent)), canonical)
        assert.deepStrictEqual(JSON.parse(canonical), meaning(value))
        assert.strictEqual(print("POST", JSON.parse(rewritten(value, order, indent))), print("post", value))
      }),
      { numRuns: 300 }
    )
  })

  it("property: two documents get the same fingerprint exactly when they mean the same document", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 3 }), fc.jsonValue({ maxDepth: 3 }), (a, b) => {
        assert.strictEqual(print("POST", a) === print("POST", b), isDeepStrictEqual(meaning(a), meaning(b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`)
      }),
      { numRuns: 500 }
    )
    // Random pairs are mostly different; near neighbours are where a weak form would collide.
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 })), fc.string({ maxLength: 5 }), (doc, key) => {
        const changed = { ...doc, [key]: [Object.getOwnPropertyDescriptor(doc, key)?.value ?? null] }
        assert.notStrictEqual(print("POST", doc), print("POST", changed))
      }),
      { numRuns: 300 }
    )
  })
})
