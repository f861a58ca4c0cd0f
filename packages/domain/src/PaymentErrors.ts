import { Schema } from "effect"
import { CodedError, DescribedError } from "./DescribedError.ts"
import { MerchantId, PaymentId } from "./Ids.ts"

/**
 * No such payment for this merchant. Deliberately the same error, with the same payload, whether
 * the id is unknown or belongs to another merchant: the API must not reveal that another
 * merchant's payment exists. `paymentId` is the id as asked for: a malformed one (which no payment
 * can have) is not found either.
 */
export class PaymentNotFound extends CodedError<PaymentNotFound>()(
  "payment_not_found", "PaymentNotFound", { paymentId: Schema.String }, (e) => `no payment ${e.paymentId}`
) {}

/** The merchant does not exist (creating a payment for it is impossible). Not an API answer. */
export class MerchantNotFound extends DescribedError<MerchantNotFound>()(
  "MerchantNotFound", { merchantId: MerchantId }, (e) => `no merchant ${e.merchantId}`
) {}

/**
 * Another transaction changed the payment between our read and our write, or the database could
 * not serialize the two (serialization failure, deadlock, lock wait over the bound). Nothing was
 * written. Safe to retry the whole request: it will then see the new state.
 */
export class ConcurrentModification extends CodedError<ConcurrentModification>()(
  "concurrent_modification",
  "ConcurrentModification",
  {
    paymentId: PaymentId,
    reason: Schema.Literals(["version_mismatch", "serialization_failure", "deadlock", "lock_timeout"])
  },
  (e) => `payment ${e.paymentId} was modified concurrently (${e.reason}); retry the request`
) {}

/**
 * The acquirer has already answered (authorized, captured or declined), or an authorize's gate has
 * not asked it yet (it reads the row FOR SHARE, AcquirerGate.ts), but the payment's row
 * stayed locked by another transaction past the bounded lock wait (an operator's session holding
 * it, a slow competing transaction), or the database could not serialize the write. Unlike
 * `ConcurrentModification` before any external effect, this is NOT a decided outcome: nothing was
 * committed, the idempotency key keeps its recovery point, and the retry with the same key (or the
 * completer) asks the acquirer again under the same reference (performed once) and finishes the
 * work exactly once. Never stored.
 */
export class PaymentLocked extends CodedError<PaymentLocked>()(
  "payment_locked",
  "PaymentLocked",
  {
    paymentId: PaymentId,
    reason: Schema.Literals(["version_mismatch", "serialization_failure", "deadlock", "lock_timeout"])
  },
  (e) => `payment ${e.paymentId} stayed locked by another transaction past the lock wait (${e.reason}); nothing was committed`
) {}

/**
 * A cancel of a CREATED payment while its authorization is in flight: the intent to ask the issuer
 * is committed (an authorize's idempotency key at `authorization_requested`) and its answer is not
 * in yet, so the funds may be being reserved right now. Canceling then could leave them held behind
 * a CANCELED payment. A decided refusal, stored with the cancel's key (409): nothing was done and
 * nothing is left pending, so no cancel takes effect behind the AUTHORIZED the merchant then reads.
 * Once the authorization has finished, a cancel with a new key voids it (when it was approved).
 */
export class AuthorizationInProgress extends CodedError<AuthorizationInProgress>()(
  "authorization_in_progress",
  "AuthorizationInProgress",
  { paymentId: PaymentId },
  (e) => `payment ${e.paymentId} cannot be canceled yet: its authorization is in progress at the acquirer`
) {}

/**
 * A capture (settle with `amount`) larger than the authorized amount: the acquirer can capture at
 * most what it reserved. Decided before the acquirer is asked; stored with the key (422).
 */
export class CaptureExceedsAuthorized extends CodedError<CaptureExceedsAuthorized>()(
  "capture_exceeds_authorized",
  "CaptureExceedsAuthorized",
  { paymentId: PaymentId, requested_minor: Schema.BigInt, authorized_minor: Schema.BigInt },
  (e) => `payment ${e.paymentId}: capture of ${e.requested_minor} exceeds the authorized ${e.authorized_minor} (minor units)`
) {}

/**
 * A capture after the authorization lapsed (`authorization_expires_at`): the issuer no longer
 * holds the funds. A conflict with the payment's state; stored with the key (409).
 */
export class AuthorizationExpired extends CodedError<AuthorizationExpired>()(
  "authorization_expired",
  "AuthorizationExpired",
  { paymentId: PaymentId, expiredAt: Schema.String },
  (e) => `payment ${e.paymentId}: the authorization expired at ${e.expiredAt}; it can no longer be captured`
) {}

/**
 * A list cursor (`starting_after`) that does not name an item of the list it pages: one of the
 * merchant's payments, webhook endpoints, an endpoint's deliveries, or a payment's refunds (a
 * refund of another payment, even the merchant's own, is not). Same error for unknown, malformed
 * and foreign ids (no existence oracle).
 */
export class InvalidCursor extends CodedError<InvalidCursor>()(
  "invalid_cursor",
  "InvalidCursor",
  { startingAfter: Schema.String, of: Schema.Literals(["payments", "webhook endpoints", "deliveries", "refunds of this payment"]) },
  (e) => `starting_after ${e.startingAfter} is not one of your ${e.of} (the id of the last item of the previous page)`
) {}
