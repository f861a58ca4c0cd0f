// What the document allows, the server accepts, and what the server refuses, the document forbids:
// the Idempotency-Key pattern /openapi.json declares and the server's parser agree on every header
// value fast-check makes from the characters that matter (quotes, escapes, spaces, tabs, controls,
// non-ASCII) and on the boundaries (255 and 256 characters, quoted or not).
import { assert, describe, it } from "@effect/vitest"
import { PaymentsApi } from "@pay/api"
import { parseIdempotencyKeyResult } from "@pay/idempotency"
import { Result, Schema } from "effect"
import { OpenApi } from "effect/http-api"
import * as fc from "fast-check"

const Parameters = Schema.Struct({
  paths: Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.Struct({
    parameters: Schema.optionalKey(Schema.Array(Schema.Struct({ name: Schema.String, schema: Schema.Struct({ pattern: Schema.optionalKey(Schema.String) }) })))
  })))
})

const document = Schema.decodeUnknownSync(Parameters)(JSON.parse(JSON.stringify(OpenApi.fromApi(PaymentsApi))))
const keyPatterns = Object.values(document.paths).flatMap((item) =>
  Object.values(item).flatMap((operation) => (operation.parameters ?? []).filter((p) => p.name === "Idempotency-Key").map((p) => p.schema.pattern))
)

describe("the document's Idempotency-Key pattern is the server's parser", () => {
  it("every POST declares the same pattern", () => {
    const posts = Object.values(document.paths).filter((item) => Object.hasOwn(item, "post")).length
    assert.isAtLeast(posts, 4)
    assert.strictEqual(keyPatterns.length, posts)
    assert.strictEqual(new Set(keyPatterns).size, 1)
  })

  it("they agree on 20,000 generated values and the boundaries", () => {
    const pattern = new RegExp(keyPatterns[0] ?? "^$", "u")
    const agrees = (value: string) => Result.isSuccess(parseIdempotencyKeyResult(value)) === pattern.test(value)
    const boundaries = ["x".repeat(255), "x".repeat(256), `"${"x".repeat(255)}"`, `"${"x".repeat(256)}"`, `"${"\\\\".repeat(255)}"`, " a ", "\"\"", "\"a\" b"]
    for (const value of boundaries) assert.isTrue(agrees(value), JSON.stringify(value))
    const unit = fc.constantFrom(" ", "\t", "\"", "\\", "a", "b", "~", "!", "#", "\u007f", "\u001f", "é", "\u0000")
    fc.assert(fc.property(fc.string({ unit, maxLength: 10 }), agrees), { numRuns: 20_000, seed: 11 })
  })
})
