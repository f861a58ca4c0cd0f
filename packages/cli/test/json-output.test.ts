// The consumer commands' JSON (lag, offsets, reset, dlq, reconcile): bigints as JSON numbers with
// their exact digits, one type per field whatever the value (outside re-test: a money field was a
// number below 2^53 and a string above it, so a jq comparison on it broke again).
import { assert, it } from "@effect/vitest"
import { json } from "../src/ConsumerCommands.ts"

it("a string cannot forge the bigint mark: the output stays valid JSON", () => {
  const text = json({ s: "a\"\u0000bigint:5", n: 5n })
  assert.deepStrictEqual(JSON.parse(text), { s: "a\"\uFFFDbigint:5", n: 5 })
})

it("bigints are written as JSON numbers with their exact digits, below and above 2^53; strings stay strings", () => {
  const text = json({ small: 74n, big: 9_007_199_254_740_993n, negative: -20_379n, list: [1n, 2n], label: "9007199254740993" })
  assert.include(text, "\"small\": 74,")
  assert.include(text, "\"big\": 9007199254740993,")
  assert.include(text, "\"negative\": -20379,")
  assert.include(text, "\"label\": \"9007199254740993\"")
  assert.deepStrictEqual(JSON.parse(text, (_key, value: unknown, context?: { readonly source?: string }) =>
    typeof value === "number" && context?.source !== undefined ? BigInt(context.source) : value), {
    small: 74n, big: 9_007_199_254_740_993n, negative: -20_379n, list: [1n, 2n], label: "9007199254740993"
  })
})
