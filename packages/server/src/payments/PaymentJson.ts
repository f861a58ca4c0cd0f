import type { PaymentJson, RefundJson } from "@pay/api"
import type { Payment, Refund } from "@pay/domain"
import type { CurrencyBalance } from "@pay/settlement"
import { DateTime } from "effect"

const utf8 = new TextEncoder()

/** PostgreSQL's `jsonb` key order: shorter UTF-8 first, then by bytes. */
const jsonbKeyOrder = (a: string, b: string): number => {
  const left = utf8.encode(a)
  const right = utf8.encode(b)
  if (left.length !== right.length) return left.length - right.length
  for (let index = 0; index < left.length; index++) {
    const difference = (left[index] ?? 0) - (right[index] ?? 0)
    if (difference !== 0) return difference
  }
  return 0
}

/**
 * Metadata in the order a read gives it back: the `jsonb` column keeps its own key order, so the
 * answer of a create (rendered from the request) and a later GET (from the column) list the same
 * keys in the same order.
 */
export const metadataInStoredOrder = (metadata: Readonly<Record<string, string>>): Record<string, string> =>
  // Own properties defined, never assigned: `ordered["__proto__"] = v` would set the prototype
  // (ignored for a string) and drop a merchant's key named so from every answer.
  Object.fromEntries(Object.keys(metadata).sort(jsonbKeyOrder).map((key) => [key, metadata[key] ?? ""]))

/** The API's view of a payment. `amount` is the integer number of minor units. */
export const toPaymentJson = (payment: Payment): PaymentJson => ({
  id: payment.id,
  object: "payment",
  // Exact: amounts are bounded by AMOUNT_MINOR_MAX, far inside the safe-integer range.
  amount: Number(payment.amount_minor),
  currency: payment.currency,
  payment_method: payment.payment_method,
  description: payment.description,
  metadata: metadataInStoredOrder(payment.metadata),
  status: payment.status,
  failure_code: payment.failure_code,
  failure_message: payment.failure_message,
  captured_amount: payment.captured_amount_minor === null ? null : Number(payment.captured_amount_minor),
  authorization_expires_at: payment.authorization_expires_at === null ? null : DateTime.formatIso(payment.authorization_expires_at),
  created_at: DateTime.formatIso(payment.created_at),
  updated_at: DateTime.formatIso(payment.updated_at)
})

/** The API's view of a refund. */
export const toRefundJson = (refund: Refund): RefundJson => ({
  id: refund.id,
  object: "refund",
  payment_id: refund.payment_id,
  amount: Number(refund.amount_minor),
  currency: refund.currency,
  status: refund.status,
  reason: refund.reason,
  metadata: metadataInStoredOrder(refund.metadata),
  failure_code: refund.failure_code,
  failure_message: refund.failure_message,
  // What was given back: nothing until the refund SUCCEEDED (the contract's description). The share
  // stored at reservation is shown only then: a FAILED refund showed it (outside money review: a
  // merchant adding up `fee_returned` counted fees it never got back).
  fee_returned: refund.status === "SUCCEEDED" ? Number(refund.fee_returned_minor) : 0,
  created_at: DateTime.formatIso(refund.created_at),
  updated_at: DateTime.formatIso(refund.updated_at)
})

/**
 * The balance answer's exact bytes. Every `amount` is written as the integer it is, digit for digit:
 * a merchant's lifetime net in a currency of small units can pass 2^53 minor units (about 360 million
 * USD worth of VND without a payout), where `JSON.stringify` of a `number` would round and refusing
 * (as this did) answered 500 for every currency of the merchant. JSON has no limit on an integer's
 * digits (RFC 8259 §6); a client whose parser rounds past 2^53 reads it with a bigint-aware parser
 * (docs/api.md).
 */
export const balanceBody = (balances: ReadonlyArray<CurrencyBalance>): string => {
  const available = balances.map((balance) =>
    `{"currency":${JSON.stringify(balance.currency)},"amount":${balance.balance_minor.toString()}}`
  )
  return `{"object":"balance","available":[${available.join(",")}]}`
}
