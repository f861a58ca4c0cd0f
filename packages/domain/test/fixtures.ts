import { DateTime, Result, Schema } from "effect"
import {
  createPayment,
  CreatePaymentInput,
  MerchantId,
  type Payment,
  type PaymentCommand,
  type PaymentCommandName,
  PaymentId,
  type PaymentStatus,
  transition
} from "../src/index.ts"

export const t0 = DateTime.makeUnsafe("2026-01-01T00:00:00.000Z")
export const later = (seconds: number): DateTime.Utc => DateTime.add(t0, { seconds })

export const paymentId = PaymentId.make("pay_0123456789abcdefghjkmnpq")
export const merchantId = MerchantId.make("mer_0123456789abcdefghjkmnpq")

export const input: CreatePaymentInput = Schema.decodeUnknownSync(CreatePaymentInput)({
  merchant_id: merchantId,
  amount_minor: 1250,
  currency: "EUR",
  payment_method: "pm_card_visa",
  description: "order 42",
  metadata: { order_id: "42" }
})

export const commandFor = (name: PaymentCommandName): PaymentCommand => {
  switch (name) {
    case "authorize":
      return { _tag: "authorize" }
    case "settle":
      return { _tag: "settle" }
    case "cancel":
      return { _tag: "cancel" }
    case "expire":
      return { _tag: "expire" }
    case "decline":
      return { _tag: "decline", failure_code: "card_declined", failure_message: "The card was declined" }
    case "fail":
      return { _tag: "fail", failure_code: "capture_failed", failure_message: "The capture was refused" }
  }
}

/**
 * A payment in `status`, reached through the state machine itself (never by constructing an
 * impossible payment by hand): the path to each status is the shortest legal one.
 */
export const paymentIn = (status: PaymentStatus): Payment => {
  const created = createPayment(input, { id: paymentId, now: t0 }).payment
  const paths: Readonly<Record<PaymentStatus, ReadonlyArray<PaymentCommandName>>> = {
    CREATED: [],
    AUTHORIZED: ["authorize"],
    SETTLED: ["authorize", "settle"],
    FAILED: ["decline"],
  CANCELED: ["authorize", "cancel"],
  EXPIRED: ["authorize", "expire"]
  }
  const path = paths[status]
  return path.reduce((payment, name, index) => {
    const result = transition(payment, commandFor(name), later(index + 1))
    if (Result.isFailure(result)) throw new Error(`fixture path to ${status} broke at ${name}: ${result.failure.message}`)
    return result.success.payment
  }, created)
}
