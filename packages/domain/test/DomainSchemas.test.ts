import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Result, Schema } from "effect"
import * as fc from "fast-check"
import {
  AMOUNT_MINOR_MAX,
  AmountMinorFromJsonNumber,
  Currency,
  currencyCodes,
  decodePaymentEvent,
  encodePaymentEvent,
  formatMoney,
  generateMerchantId,
  generatePaymentId,
  MerchantId,
  minorUnitExponent,
  Payment,
  PaymentId,
  PaymentMethodToken,
  StoredPaymentMethodToken,
  transition
} from "../src/index.ts"
import { commandFor, later, paymentIn } from "./fixtures.ts"

const failureMessage = <A, I>(schema: Schema.Codec<A, I>, value: unknown): string => {
  const result = Schema.decodeUnknownResult(schema)(value)
  return Result.isFailure(result) ? result.failure.message : "<decoded>"
}

describe("Currency (ISO 4217 table)", () => {
  it("knows zero-, two- and three-decimal currencies", () => {
    assert.strictEqual(minorUnitExponent("JPY"), 0)
    assert.strictEqual(minorUnitExponent("KRW"), 0)
    assert.strictEqual(minorUnitExponent("USD"), 2)
    assert.strictEqual(minorUnitExponent("EUR"), 2)
    assert.strictEqual(minorUnitExponent("KWD"), 3)
    assert.strictEqual(minorUnitExponent("BHD"), 3)
  })

  it("rejects unknown and mis-spelled codes with a message naming the input", () => {
    for (const code of ["XYZ", "usd", "US", "USDD", "", "BGN"]) {
      assert.match(failureMessage(Currency, code), /unknown currency/, code)
      assert.include(failureMessage(Currency, code), JSON.stringify(code))
    }
    assert.strictEqual(failureMessage(Currency, "JPY"), "<decoded>")
  })

  it("lists sorted, upper-case, three-letter codes", () => {
    assert.isAbove(currencyCodes.length, 40)
    assert.deepStrictEqual([...currencyCodes], [...currencyCodes].sort())
    for (const code of currencyCodes) assert.match(code, /^[A-Z]{3}$/)
  })

  it("formats with bigint arithmetic only", () => {
    assert.strictEqual(formatMoney(1234n, "USD"), "12.34 USD")
    assert.strictEqual(formatMoney(5n, "EUR"), "0.05 EUR")
    assert.strictEqual(formatMoney(1234n, "JPY"), "1234 JPY")
    assert.strictEqual(formatMoney(1234n, "KWD"), "1.234 KWD")
    assert.strictEqual(formatMoney(AMOUNT_MINOR_MAX, "USD"), "999999999.99 USD")
  })
})

describe("amount_minor", () => {
  it("is strictly positive and bounded", () => {
    for (const bad of [0, -1, 1.5, Number(AMOUNT_MINOR_MAX) + 1, Number.MAX_SAFE_INTEGER, "12", null]) {
      assert.notStrictEqual(failureMessage(AmountMinorFromJsonNumber, bad), "<decoded>", String(bad))
    }
    assert.strictEqual(Schema.decodeUnknownSync(AmountMinorFromJsonNumber)(1), 1n)
  })

  it("keeps the maximum exact through JSON", () => {
    assert.isTrue(AMOUNT_MINOR_MAX <= BigInt(Number.MAX_SAFE_INTEGER))
    const wire = JSON.stringify({ amount_minor: Schema.encodeSync(AmountMinorFromJsonNumber)(AmountMinorFromJsonNumber.make(AMOUNT_MINOR_MAX)) })
    assert.strictEqual(wire, '{"amount_minor":99999999999}')
    const parsed: unknown = JSON.parse(wire)
    const back = Schema.decodeUnknownSync(Schema.Struct({ amount_minor: AmountMinorFromJsonNumber }))(parsed)
    assert.strictEqual(back.amount_minor, AMOUNT_MINOR_MAX)
  })

  it("round-trips every valid amount exactly (property)", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: AMOUNT_MINOR_MAX }), (amount) => {
        const encoded = Schema.encodeSync(AmountMinorFromJsonNumber)(AmountMinorFromJsonNumber.make(amount))
        assert.isTrue(Number.isSafeInteger(encoded))
        assert.strictEqual(Schema.decodeUnknownSync(AmountMinorFromJsonNumber)(JSON.parse(JSON.stringify(encoded))), amount)
      }),
      { numRuns: 300 }
    )
  })
})

describe("ids", () => {
  it.effect("generates prefixed, unique ids that their schemas accept", () =>
    Effect.gen(function* () {
      const ids = yield* Effect.forEach(Array.from({ length: 500 }), () => generatePaymentId)
      assert.strictEqual(new Set(ids).size, ids.length)
      for (const id of ids) assert.match(id, /^pay_[0-9a-hjkmnp-tv-z]{24}$/)
      const merchant = yield* generateMerchantId
      assert.match(merchant, /^mer_[0-9a-hjkmnp-tv-z]{24}$/)
    }))

  it("rejects ids of the wrong kind or shape", () => {
    for (const bad of ["mer_0123456789abcdefghjkmnpq", "pay_0123456789ABCDEFGHJKMNPQ", "pay_123", "pay_0123456789abcdefghjkmnpi", ""]) {
      assert.notStrictEqual(failureMessage(PaymentId, bad), "<decoded>", bad)
    }
    assert.notStrictEqual(failureMessage(MerchantId, "pay_0123456789abcdefghjkmnpq"), "<decoded>")
  })
})

describe("payment method token", () => {
  it("accepts tokens and refuses anything that looks like a card number", () => {
    assert.strictEqual(failureMessage(PaymentMethodToken, "pm_card_visa"), "<decoded>")
    assert.match(failureMessage(PaymentMethodToken, "pm_4242424242424242"), /not a card number/)
    assert.notStrictEqual(failureMessage(PaymentMethodToken, "4242424242424242"), "<decoded>")
  })

  it("refuses 12 or more digits with separators between them, keeps 11 and test methods; rows read back as the database holds them", () => {
    for (const grouped of ["pm_4242_4242_4242_4242", "pm_1_2_3_4_5_6_7_8_9_0_1_2", "pm_x4242__4242__4242y", "pm_42_42_42_42_42_42", "pm_4242x4242x4242x4242", "pm_4242a4242b4242c4242"]) {
      assert.match(failureMessage(PaymentMethodToken, grouped), /not a card number/, grouped)
      assert.strictEqual(failureMessage(StoredPaymentMethodToken, grouped), "<decoded>", `stored ${grouped}`)
    }
    for (const token of ["pm_card_visa", "pm_card_timeout", "pm_tok_1234_5678_901", "pm_12345678901", "pm_2024_12_a_31_12_2025"]) {
      assert.strictEqual(failureMessage(PaymentMethodToken, token), "<decoded>", token)
    }
    assert.match(failureMessage(StoredPaymentMethodToken, "pm_4242424242424242"), /not a card number/)
  })
})

describe("Payment schema", () => {
  it("round-trips through JSON", () => {
    const payment = paymentIn("FAILED")
    const json = JSON.stringify(Schema.encodeSync(Payment)(payment))
    const back = Schema.decodeUnknownSync(Payment)(JSON.parse(json))
    assert.strictEqual(back.amount_minor, payment.amount_minor)
    assert.strictEqual(back.failure_code, payment.failure_code)
    assert.strictEqual(back.created_at.epochMilliseconds, payment.created_at.epochMilliseconds)
  })

  it("requires failure details if and only if FAILED", () => {
    const created = Schema.encodeSync(Payment)(paymentIn("CREATED"))
    assert.match(failureMessage(Payment, { ...created, failure_code: "x", failure_message: "y" }), /must not carry/)
    assert.match(failureMessage(Payment, { ...created, status: "FAILED" }), /must carry failure_code/)
    assert.match(failureMessage(Payment, { ...created, status: "PENDING" }), /PENDING|Expected/)
  })
})

describe("payment events", () => {
  it.effect("encode to JSON-safe payloads (integer amount, ISO instants) and decode back", () =>
    Effect.gen(function* () {
      const result = transition(paymentIn("AUTHORIZED"), commandFor("fail"), later(120))
      assert.isTrue(Result.isSuccess(result))
      if (Result.isFailure(result)) return
      const payload = encodePaymentEvent(result.success.event)
      const text = JSON.stringify(payload) // would throw on a bigint
      const parsed: unknown = JSON.parse(text)
      assert.deepInclude(parsed, {
        type: "payment_failed",
        amount_minor: 1250,
        previous_status: "AUTHORIZED",
        status: "FAILED",
        version: 3,
        occurred_at: "2026-01-01T00:02:00.000Z",
        failure_code: "capture_failed"
      })
      const decoded = yield* decodePaymentEvent(parsed)
      assert.strictEqual(decoded.type, "payment_failed")
      assert.strictEqual(decoded.amount_minor, 1250n)
      const bad = yield* Effect.exit(decodePaymentEvent({ ...payload, amount_minor: "1250" }))
      assert.isTrue(Exit.isFailure(bad))
    }))
})
