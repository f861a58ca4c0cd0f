import { Schema } from "effect"
import { MerchantId, PaymentId } from "./Ids.ts"

/**
 * No such payment for this merchant. Deliberately the same error, with the same payload, whether
 * the id is unknown or belongs to another merchant: the API must not reveal that another
 * merchant's payment exists. HTTP 404, code `payment_not_found`.
 */
export class PaymentNotFound extends Schema.TaggedError<PaymentNotFound>()(
  "PaymentNotFound",
  { paymentId: PaymentId },
  { httpApiStatus: 404 }
) {
  static readonly code = "payment_not_found"
  override get message(): string {
    return `no payment ${this.paymentId}`
  }
}

/** The merchant does not exist (creating a payment for it is impossible). HTTP 404. */
export class MerchantNotFound extends Schema.TaggedError<MerchantNotFound>()(
  "MerchantNotFound",
  { merchantId: MerchantId },
  { httpApiStatus: 404 }
) {
  static readonly code = "merchant_not_found"
  override get message(): string {
    return `no merchant ${this.merchantId}`
  }
}

/**
 * Another transaction changed the payment between our read and our write, or the database could
 * not serialize the two (serialization failure, deadlock, lock wait over the bound). Nothing was
 * written. Safe to retry the whole request: it will then see the new state. HTTP 409, code
 * `concurrent_modification`.
 */
export class ConcurrentModification extends Schema.TaggedError<ConcurrentModification>()(
  "ConcurrentModification",
  {
    paymentId: PaymentId,
    reason: Schema.Literals(["version_mismatch", "serialization_failure", "deadlock", "lock_timeout"])
  },
  { httpApiStatus: 409 }
) {
  static readonly code = "concurrent_modification"
  override get message(): string {
    return `payment ${this.paymentId} was modified concurrently (${this.reason}); retry the request`
  }
}

/**
 * A list cursor (`starting_after`) that does not name one of the merchant's payments. Same error
 * for unknown and foreign ids (no existence oracle). HTTP 400, code `invalid_cursor`.
 */
export class InvalidCursor extends Schema.TaggedError<InvalidCursor>()(
  "InvalidCursor",
  { startingAfter: Schema.String },
  { httpApiStatus: 400 }
) {
  static readonly code = "invalid_cursor"
  override get message(): string {
    return `starting_after ${this.startingAfter} is not a payment of this merchant`
  }
}

/** Input that does not satisfy the domain schemas (amount, currency, token, ...). HTTP 422. */
export class InvalidPaymentInput extends Schema.TaggedError<InvalidPaymentInput>()(
  "InvalidPaymentInput",
  { message: Schema.String },
  { httpApiStatus: 422 }
) {
  static readonly code = "invalid_payment_input"
}
