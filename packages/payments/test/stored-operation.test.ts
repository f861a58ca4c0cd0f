// The operation stored with an idempotency key is read back by the completer to resume it. Written
// before a rule of the free text (0080: card numbers, 0083: hidden characters), it must still
// decode: a refund PENDING at the acquirer whose key could not be resumed stayed PENDING for good
// (parked at once, parked again by `idempotency retry`). The HTTP edge checks what is sent now.
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { decodePaymentOperation, encodePaymentOperation } from "../src/PaymentOperation.ts"

describe("stored payment operations", () => {
  it("a refund and a create stored with text the current rules refuse still decode, and encode back the same", () => {
    const refund = { _tag: "refund" as const, payment_id: "pay_0000000000000000000000000", metadata: { note: "\u202Bשלום\u202C", bell: "\u0007" } }
    const decodedRefund = decodePaymentOperation(refund)
    assert.isTrue(Result.isSuccess(decodedRefund), Result.isFailure(decodedRefund) ? decodedRefund.failure.message : "")
    if (Result.isSuccess(decodedRefund)) assert.deepStrictEqual(encodePaymentOperation(decodedRefund.success), refund)
    const create = {
      _tag: "create",
      amount_minor: 1_050,
      currency: "EUR",
      payment_method: "pm_card_visa",
      description: "before the rule \u001b[2J, card 4242 4242 4242 4242",
      metadata: { "k\u202E": "v" }
    }
    const decodedCreate = decodePaymentOperation(create)
    assert.isTrue(Result.isSuccess(decodedCreate), Result.isFailure(decodedCreate) ? decodedCreate.failure.message : "")
    // Not every stored shape decodes: an operation that is not one is still refused.
    assert.isTrue(Result.isFailure(decodePaymentOperation({ _tag: "refund", payment_id: "pay_x", metadata: { n: 5 } })))
  })
})
