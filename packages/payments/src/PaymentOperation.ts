import type { AcquirerTimeout, AcquirerUnavailable } from "@pay/acquirer"
import {
  AmountMinorFromJsonNumber,
  type AuthorizationExpired,
  type AuthorizationInProgress,
  type CaptureExceedsAuthorized,
  type PaymentNotRefundable,
  type Refund,
  type RefundExceedsBalance,
  type RefundExceedsCaptured,
  RefundReason,
  type ConcurrentModification,
  type InvalidTransition,
  type Payment,
  PaymentLocked,
  type PaymentNotFound,
  paymentRequestFields,
  StoredDescription,
  StoredMetadata
} from "@pay/domain"
import type { IdempotencyLockLost } from "@pay/idempotency"
import type { SettlementUnavailable } from "@pay/settlement"
import { Data, Schema } from "effect"
import type { SqlError } from "effect/sql/SqlError"

/**
 * What an idempotent request asks the payments capability to do: the operation and its
 * arguments. The server builds it from the HTTP request; it is stored with the idempotency key at
 * the first run (column `operation`, migrations/0008), and the completer decodes it back with this
 * same schema to resume an abandoned key. `payment_id` is the id as asked for: a malformed one is a
 * stored 404 like an unknown one.
 */
export const CreateOperation = Schema.TaggedStruct("create", {
  amount_minor: AmountMinorFromJsonNumber,
  ...paymentRequestFields,
  // As stored: an operation written before a rule of the free text (0080, 0083) still decodes for
  // the completer; the HTTP edge checked what is sent now (outside review: such a key was parked
  // at once, and `idempotency retry` parked it again).
  description: Schema.optionalKey(StoredDescription),
  metadata: Schema.optionalKey(StoredMetadata)
})
export const AuthorizeOperation = Schema.TaggedStruct("authorize", { payment_id: Schema.String })
/** `amount_minor`: a partial capture; absent (and in keys stored before it existed) = all of it. */
export const SettleOperation = Schema.TaggedStruct("settle", {
  payment_id: Schema.String,
  amount_minor: Schema.optionalKey(AmountMinorFromJsonNumber)
})
export const CancelOperation = Schema.TaggedStruct("cancel", { payment_id: Schema.String })
/** A refund of a settled payment; `amount_minor` absent = what is left to refund. */
export const RefundOperation = Schema.TaggedStruct("refund", {
  payment_id: Schema.String,
  amount_minor: Schema.optionalKey(AmountMinorFromJsonNumber),
  reason: Schema.optionalKey(RefundReason),
  // As stored (see CreateOperation): a refund PENDING at the acquirer must be resumable.
  metadata: Schema.optionalKey(StoredMetadata)
})
export type RefundOperation = typeof RefundOperation.Type
export const PaymentOperation = Schema.Union([CreateOperation, AuthorizeOperation, SettleOperation, CancelOperation, RefundOperation])
export type PaymentOperation = typeof PaymentOperation.Type
export type CreateOperation = typeof CreateOperation.Type
/** The operations that call the acquirer after a committed recovery point (`PaymentUseCases.gatedStart`). */
export type GatedOperation = typeof AuthorizeOperation.Type | typeof SettleOperation.Type | typeof CancelOperation.Type

/** The stored (JSON) form; total: every operation encodes. */
export const encodePaymentOperation = Schema.encodeSync(PaymentOperation)
/** Back from the stored form, with the reason when it is not one (the completer logs it). */
export const decodePaymentOperation = Schema.decodeUnknownResult(PaymentOperation)

/** A decided "no": stored with the key and replayed like any decided outcome. */
export type PaymentRefusal =
  | PaymentNotFound
  | AuthorizationInProgress
  | InvalidTransition
  | CaptureExceedsAuthorized
  | AuthorizationExpired
  | ConcurrentModification
  | PaymentNotRefundable
  | RefundExceedsCaptured
  | RefundExceedsBalance

/**
 * What a use case decided. The HTTP server renders it (201/200 with the payment, or the refusal's
 * problem document); the use case never builds response bytes.
 */
export type PaymentOutcome = Data.TaggedEnum<{
  Created: { readonly payment: Payment }
  Transitioned: { readonly payment: Payment }
  /** A refund decided by the acquirer: SUCCEEDED (money reversed) or FAILED. */
  Refunded: { readonly refund: Refund }
  Refused: { readonly error: PaymentRefusal }
}>
export const PaymentOutcome = Data.taggedEnum<PaymentOutcome>()

/**
 * Failures that leave the outcome unknown or undecided: never stored, the key is released (keeping
 * its recovery point) and a retry with the same key, or the completer, resumes.
 */
export type Unfinished =
  | AcquirerTimeout
  | AcquirerUnavailable
  | IdempotencyLockLost
  | PaymentLocked
  | SettlementUnavailable
  | SqlError

/**
 * A lost wait for the payment's row (past the lock bound, a deadlock, a serialization failure) in
 * a run that must not store it: `PaymentLocked`, unfinished (503, the same key goes on). After the
 * acquirer acted (AcquirerTransition.ts), and before it is asked (CancelBeforeAuthorization.ts).
 */
export const lockWaitUnfinished = (error: ConcurrentModification): PaymentLocked =>
  new PaymentLocked({ paymentId: error.paymentId, reason: error.reason })

/** Recovery points of the idempotency key, in the order a run passes them. */
export const RecoveryPoint = {
  started: "started",
  /** Our intent to call the acquirer is committed; the call may or may not have happened. */
  authorizationRequested: "authorization_requested",
  captureRequested: "capture_requested",
  voidRequested: "void_requested",
  /** The PENDING refund is committed (its id in the recovery data); the acquirer may have been asked. */
  refundRequested: "refund_requested"
} as const

/** The acquirer's idempotency reference: one per payment and operation, so asking twice is safe. */
export const acquirerReference = (paymentId: string, operation: "authorization" | "capture" | "void") =>
  `payment:${paymentId}:${operation}`
