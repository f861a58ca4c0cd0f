import { Effect, Schema, SchemaTransformation } from "effect"
import { Currency } from "./Currency.ts"
import { CodedError } from "./DescribedError.ts"
import { MerchantId, PaymentId } from "./Ids.ts"
import { AMOUNT_MINOR_MAX, AmountMinorFromJsonNumber } from "./Money.ts"
import { FailureCode, FailureMessage, StoredMetadata } from "./Payment.ts"

/**
 * A refund (issue 19): money given back from a SETTLED payment, its own object with its own life:
 * PENDING until the acquirer answers, then SUCCEEDED (one ledger transaction reversed the money)
 * or FAILED (nothing moved; it no longer counts toward the cap). The sum of a payment's refunds
 * that are not FAILED never exceeds the captured amount (docs/refunds.md). The same rules are
 * CHECKs and triggers in `migrations/0047_refunds.sql`.
 */
export const refundIdPattern = /^re_[0-9a-hjkmnp-tv-z]{24}$/u
export const RefundId = Schema.String.check(
  Schema.isPattern(refundIdPattern, { message: "a refund id is \"re_\" followed by 24 lowercase base32 characters" })
).pipe(Schema.brand("RefundId"))
export type RefundId = typeof RefundId.Type

const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
/** A fresh refund id: 24 symbols of 5 random bits each (120 bits), like payment ids. */
export const generateRefundId: Effect.Effect<RefundId> = Effect.sync(() => {
  const bytes = new Uint8Array(24)
  globalThis.crypto.getRandomValues(bytes)
  return RefundId.make(`re_${Array.from(bytes, (byte) => alphabet.charAt(byte & 31)).join("")}`)
})

export const refundStatuses = ["PENDING", "SUCCEEDED", "FAILED"] as const
export const RefundStatus = Schema.Literals(refundStatuses)
export type RefundStatus = typeof RefundStatus.Type

export const RefundReason = Schema.Literals(["requested_by_customer", "duplicate", "fraudulent"])
export type RefundReason = typeof RefundReason.Type

const FeeReturnedMinor = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: Number(AMOUNT_MINOR_MAX) })).pipe(
  Schema.decodeTo(Schema.BigInt, SchemaTransformation.transform({ decode: (amount: number) => BigInt(amount), encode: (amount: bigint) => Number(amount) }))
)

export class Refund extends Schema.Class<Refund>("Refund")(
  Schema.Struct({
    id: RefundId,
    payment_id: PaymentId,
    merchant_id: MerchantId,
    amount_minor: AmountMinorFromJsonNumber,
    currency: Currency,
    status: RefundStatus,
    reason: Schema.NullOr(RefundReason),
    metadata: StoredMetadata,
    failure_code: Schema.NullOr(FailureCode),
    failure_message: Schema.NullOr(FailureMessage),
    /** The part of the platform's fee given back with a SUCCEEDED refund (0 when the fee is kept). */
    fee_returned_minor: FeeReturnedMinor,
    created_at: Schema.DateTimeUtcFromString,
    updated_at: Schema.DateTimeUtcFromString
  }).check(
    Schema.makeFilter((refund) =>
      (refund.status === "FAILED") === (refund.failure_code !== null && refund.failure_message !== null) &&
        (refund.status === "FAILED" || (refund.failure_code === null && refund.failure_message === null)) ||
      "failure_code and failure_message are present exactly when the refund FAILED"
    )
  )
) {}

/** A refund that would take the payment's non-failed refunds above what was captured. */
export class RefundExceedsCaptured extends CodedError<RefundExceedsCaptured>()(
  "refund_exceeds_captured",
  "RefundExceedsCaptured",
  { paymentId: PaymentId, requested_minor: Schema.BigInt, captured_minor: Schema.BigInt, refunded_minor: Schema.BigInt },
  (e) =>
    e.refunded_minor >= e.captured_minor
      ? `payment ${e.paymentId}: nothing is left to refund: ${e.refunded_minor} of the captured ${e.captured_minor} (minor units) are already refunded or pending`
      : `payment ${e.paymentId}: a refund of ${e.requested_minor} with ${e.refunded_minor} already refunded or pending would exceed the captured ${e.captured_minor} (minor units)`
) {}

/** Only a SETTLED payment has money to give back. */
export class PaymentNotRefundable extends CodedError<PaymentNotRefundable>()(
  "payment_not_refundable",
  "PaymentNotRefundable",
  { paymentId: PaymentId, status: Schema.String },
  (e) => `payment ${e.paymentId} is ${e.status}: only a SETTLED payment can be refunded`
) {}

/**
 * The fee is kept (docs/refunds.md): a refund takes its whole amount from the merchant's payable
 * balance, which never goes negative; the balance less the merchant's pending refunds must cover it.
 */
export class RefundExceedsBalance extends CodedError<RefundExceedsBalance>()(
  "refund_exceeds_balance",
  "RefundExceedsBalance",
  { paymentId: PaymentId, requested_minor: Schema.BigInt, available_minor: Schema.BigInt },
  (e) => `payment ${e.paymentId}: a refund of ${e.requested_minor} exceeds the merchant's available balance ${e.available_minor} (minor units)`
) {}

/** No such refund for this merchant (unknown and foreign ids answer the same). */
export class RefundNotFound extends CodedError<RefundNotFound>()(
  "refund_not_found", "RefundNotFound", { refundId: Schema.String }, (e) => `no refund ${e.refundId}`
) {}
