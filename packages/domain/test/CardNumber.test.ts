import { assert, describe, it } from "@effect/vitest"
import { Result, Schema, SchemaIssue } from "effect"
import * as fc from "fast-check"
import {
  cardNumberLikePattern,
  CreatePaymentInput,
  Description,
  looksLikeCardNumber,
  luhnValid,
  Metadata,
  Payment,
  PaymentMethodToken,
  StoredDescription,
  StoredMetadata,
  tokenHoldsCardDigits,
  withoutCardNumbers
} from "../src/index.ts"
import { paymentIn } from "./fixtures.ts"

/** The first issue's message and path, as the API's 400 names them, or undefined when it decodes. */
const refusal = <A, I>(schema: Schema.Codec<A, I>, value: unknown): { readonly path: string; readonly message: string } | undefined => {
  const result = Schema.decodeUnknownResult(schema)(value)
  if (Result.isSuccess(result)) return undefined
  const first = SchemaIssue.makeFormatterStandardSchemaV1()(result.failure.issue).issues[0]
  const path = (first?.path ?? []).map((segment) => String(typeof segment === "object" && segment !== null && "key" in segment ? segment.key : segment))
  return { path: path.join("."), message: first?.message ?? String(result.failure) }
}

/** A Luhn-valid number of `length` digits: `body` completed with its check digit. */
const withCheckDigit = (body: string): string => {
  for (let digit = 0; digit <= 9; digit++) if (luhnValid(`${body}${digit}`)) return `${body}${digit}`
  throw new Error("unreachable: one check digit always completes a Luhn number")
}
/** The same number with its last digit changed: Luhn-invalid. */
const breakCheckDigit = (number: string): string => `${number.slice(0, -1)}${(Number(number.slice(-1)) + 1) % 10}`

const cardNumberArbitrary = fc.integer({ min: 13, max: 19 }).chain((length) =>
  fc.array(fc.integer({ min: 0, max: 9 }), { minLength: length - 1, maxLength: length - 1 }).map((digits) => withCheckDigit(digits.join("")))
)
const grouped = (number: string, separator: string): string => (number.match(/.{1,4}/gu) ?? []).join(separator)
const words = fc.stringMatching(/^[a-z]{1,8}$/u)

describe("card numbers in free text (description, metadata): 13-19 digits passing the Luhn check", () => {
  it("the Luhn check", () => {
    for (const valid of ["4242424242424242", "4111111111111111", "378282246310005", "6011111111111117", "79927398713"]) assert.isTrue(luhnValid(valid), valid)
    for (const invalid of ["4242424242424243", "79927398710", "", "4242 4242"]) assert.isFalse(luhnValid(invalid), invalid)
  })

  it("refuses card numbers written alone, grouped by one separator, followed by an expiry or preceded by a number", () => {
    for (const text of [
      "4242424242424242",
      "card 4242 4242 4242 4242 please",
      "4242-4242-4242-4242",
      "4242.4242.4242.4242",
      "4242/4242/4242/4242",
      "4242_4242_4242_4242",
      "Amex 3782 822463 10005",
      "card: 4111111111111111, exp 12/28",
      "4242 4242 4242 4242 12/28",
      "#1234 4242 4242 4242 4242"
    ]) assert.isTrue(looksLikeCardNumber(text), text)
  })

  it("accepts ordinary text with numbers, Luhn-invalid long numbers, runs glued to letters, 12 or 20+ digits", () => {
    for (const text of [
      "Order #1001, 3 items, 2 x 12.50 USD",
      "order 4242424242424243", // 16 digits, Luhn-invalid: an order number
      "2026-12-04 10:30:00",
      "call +44 20 7946 0958",
      "BE68 5390 0754 7034", // an IBAN: glued to its country code
      "INV4242424242424242",
      "424242424242", // 12 digits
      "42424242424242424242424", // 23 digits in one group
      "4242 : 4242 : 4242 : 4242", // two-character separators
      ""
    ]) assert.isFalse(looksLikeCardNumber(text), text)
  })

  it("property: a Luhn-valid 13-19 digit number in words, whole or grouped by 4 with any one separator, is found; written whole with its check digit broken, not", () => {
    fc.assert(
      fc.property(cardNumberArbitrary, fc.constantFrom("", " ", "-", ".", "/", "_"), words, words, (number, separator, before, after) => {
        assert.isTrue(looksLikeCardNumber(`${before} ${grouped(number, separator)} ${after}`), number)
        // Whole: grouped, the first groups of a broken number may pass the check by themselves (a window).
        assert.isFalse(looksLikeCardNumber(`${before} ${breakCheckDigit(number)} ${after}`), number)
      }),
      { numRuns: 300, seed: 20261204 }
    )
  })
})

describe("Description and Metadata refuse card numbers, naming the field, never echoing the number", () => {
  it("description: refused with the reason; ordinary text accepted", () => {
    const problem = refusal(Description, "Customer card 4242 4242 4242 4242")
    assert.isDefined(problem)
    assert.include(problem?.message, "description looks like a card number")
    assert.include(problem?.message, "card data must not be sent in description or metadata")
    assert.notInclude(problem?.message, "4242")
    assert.isUndefined(refusal(Description, "Order #1001: 2 shirts, size 42, 19.99 EUR each"))
  })

  it("metadata: a value is named by its key, a key by metadata alone; a Luhn-invalid 16-digit order number passes", () => {
    const value = refusal(Metadata, { order_id: "1001", note: "4242-4242-4242-4242" })
    assert.strictEqual(value?.path, "note")
    assert.include(value?.message, "a metadata value looks like a card number")
    assert.notInclude(value?.message, "4242")
    const key = refusal(Metadata, { "4242424242424242": "x" })
    assert.strictEqual(key?.path, "")
    assert.include(key?.message, "a metadata key looks like a card number")
    assert.notInclude(key?.message, "4242")
    assert.isUndefined(refusal(Metadata, { order_id: "4242424242424243", reference: "2026-12-04 10:30:00" }))
  })

  it("a create input is refused on each field; a row holding a card number from before the rule still reads back", () => {
    const base = { merchant_id: "mer_0123456789abcdefghjkmnpq", amount_minor: 1250, currency: "EUR", payment_method: "pm_card_visa" }
    assert.strictEqual(refusal(CreatePaymentInput, { ...base, description: "4111 1111 1111 1111" })?.path, "description")
    assert.strictEqual(refusal(CreatePaymentInput, { ...base, metadata: { card: "4111111111111111" } })?.path, "metadata.card")
    assert.strictEqual(refusal(CreatePaymentInput, { ...base, payment_method: "pm_4242x4242x4242x4242" })?.path, "payment_method")
    assert.isUndefined(refusal(StoredDescription, "4111 1111 1111 1111"))
    assert.isUndefined(refusal(StoredMetadata, { card: "4111111111111111" }))
    const stored = { ...Schema.encodeSync(Payment)(paymentIn("CREATED")), description: "4111 1111 1111 1111", metadata: { card: "4111111111111111" } }
    assert.isUndefined(refusal(Payment, stored))
  })
})

describe("payment_method: 12+ digits with only separators between them, or a card number grouped by letters", () => {
  it("refuses digits grouped by separators, and a card number grouped by letters or other single characters; keeps the test tokens and dates split by a word", () => {
    for (const token of ["pm_4242x4242x4242x4242", "pm_4242a4242b4242c4242", "pm_3782x822463x10005", "pm_tok4242x4242x4242x4242x12x28", "pm_4242___4242___4242___4242", "pm_424242424242"]) {
      assert.isTrue(tokenHoldsCardDigits(token), token)
      assert.include(refusal(PaymentMethodToken, token)?.message, "not a card number", token)
    }
    // 4242x4242x4242x4243 fails the Luhn check; groups of fewer than four digits are not a card's.
    for (const token of ["pm_card_visa", "pm_card_insufficient_funds", "pm_tok_1234_5678_901", "pm_2024_12_a_31_12_2025", "pm_4242x4242x4242x4243", "pm_42x42x42x42x42x42x42x42"]) {
      assert.isFalse(tokenHoldsCardDigits(token), token)
      assert.isUndefined(refusal(PaymentMethodToken, token), token)
    }
    // The OpenAPI document carries the rule a pattern can say (`not: { pattern }`), in the ECMA-262 flavour validators use.
    const document = Schema.toJsonSchemaDocument(PaymentMethodToken)
    assert.include(JSON.stringify(document), `"not":{"pattern":"${cardNumberLikePattern}"}`)
  })

  it("property: any card number in groups of 4 (a shorter tail joined to the last) split by any single letter is refused; 16 digits with the check digit broken, not", () => {
    const letter = fc.constantFrom(..."abcdefxyzABCXZ")
    const byFours = (number: string, separator: string) => (number.match(/.{4}(?=.{4})|.+$/gu) ?? []).join(separator)
    fc.assert(
      fc.property(cardNumberArbitrary, letter, (number, separator) => {
        assert.isTrue(tokenHoldsCardDigits(`pm_${byFours(number, separator)}`), number)
        // 16 digits in four groups: the whole number is the only candidate of 13 digits or more.
        if (number.length === 16) assert.isFalse(tokenHoldsCardDigits(`pm_${byFours(breakCheckDigit(number), separator)}`), breakCheckDigit(number))
      }),
      { numRuns: 500, seed: 20261204 }
    )
  })

  it("random hex tokens (a vault's ids) are rarely refused: under 5% of 2,000, most of them 12 digits in a row", () => {
    const hexToken = fc.stringMatching(/^[0-9a-f]{32}$/u).map((hex) => `pm_${hex}`)
    const tokens = fc.sample(hexToken, { numRuns: 2_000, seed: 20261204 })
    const refused = tokens.filter(tokenHoldsCardDigits)
    assert.isBelow(refused.length, 100, refused.slice(0, 5).join(", "))
  })
})

describe("withoutCardNumbers: what an echo of a refused request may carry", () => {
  it("a card number, however joined (letters, separators, nothing), is written [card number]; ids, dates and Luhn-invalid numbers are left as sent", () => {
    const masked: ReadonlyArray<readonly [string, string]> = [
      ["metadata.4242424242424242xxxx", "metadata.[card number]xxxx"],
      ["4242 4242 4242 4242", "[card number]"],
      ["x4242x4242x4242x4242x", "x[card number]x"],
      ["4-2-4-2-4-2-4-2-4-2-4-2-4-2-4-2", "[card number]"],
      ["query 4111111111111111=1", "query [card number]=1"],
      ["42424242-4242-4242-4242-424242424242", "[card number]"],
      // Glued to a UUID, or dressed as one with another layout (outside re-test of the exemption).
      ["no payment 4242424242424242-aaaa-aaaa-aaaa-aaaaaaaaaaaa", "no payment [card number]-aaaa-aaaa-aaaa-aaaaaaaaaaaa"],
      ["deadbeef-4242-4242-4242-4242abcdabcd", "deadbeef-[card number]abcdabcd"]
    ]
    for (const [text, expected] of masked) assert.strictEqual(withoutCardNumbers(text), expected, text)
    for (const text of [
      "pay_01JE2ZK4Y9Q8W7V6T5S4R3P2N1", "0193a1b2-1234-7abc-8def-123456789012", "2026-12-05 10:30:00", "4242424242424241", "order 12345678901234",
      // A UUID whose groups hold a Luhn-valid run (outside re-test: 0.28 % of random ones were masked).
      "no webhook delivery 21e7a955-e937-453c-bfa4-422842336903"
    ]) {
      assert.strictEqual(withoutCardNumbers(text), text, text)
    }
  })
})
