import { Schema } from "effect"
import { Currency } from "./Currency.ts"
import { MerchantId, PaymentId } from "./Ids.ts"
import { AmountMinorFromJsonNumber } from "./Money.ts"
import { FailureCode, FailureMessage } from "./Payment.ts"
import { PaymentEvent, paymentEventTypes, SplitMinorFromJsonNumber } from "./PaymentEvents.ts"
import { RefundId, RefundReason } from "./Refund.ts"

/**
 * Refund events (issue 19): past-tense facts about one refund, written to the outbox in the same
 * transaction as the refund's change (migrations/0060_refund_events.sql refuses a refund change
 * without its event at COMMIT). They travel on the payment's key (`payment_id`: the payment's
 * partition, after its `payment_settled`), but their `version` is the REFUND's: 1 when it is
 * created (PENDING), 2 at its one final change (SUCCEEDED or FAILED; the database allows exactly
 * one). A consumer's "not newer than applied is ignored" check runs per aggregate: the refund
 * (`eventAggregate` below), never the payment, so a refund event is never taken for a stale
 * payment event (docs/events.md, "Refund events").
 */
export const REFUND_VERSION_CREATED = 1
export const REFUND_VERSION_FINAL = 2

const RefundVersion = Schema.Literals([REFUND_VERSION_CREATED, REFUND_VERSION_FINAL])

const common = {
  refund_id: RefundId,
  payment_id: PaymentId,
  merchant_id: MerchantId,
  /** The refund's amount (minor units). */
  amount_minor: AmountMinorFromJsonNumber,
  currency: Currency,
  occurred_at: Schema.DateTimeUtcFromString,
  reason: Schema.NullOr(RefundReason)
}

export const RefundCreated = Schema.Struct({
  type: Schema.tag("refund_created"),
  ...common,
  version: Schema.Literal(REFUND_VERSION_CREATED),
  status: Schema.Literal("PENDING")
})
export type RefundCreated = typeof RefundCreated.Type

/**
 * The acquirer approved and the reversal posted in the same transaction. `fee_returned_minor`: the
 * part of the platform's fee given back with it (0 when the merchant's fee is kept, the default);
 * optional so that a consumer written before it reads 0.
 */
export const RefundSucceeded = Schema.Struct({
  type: Schema.tag("refund_succeeded"),
  ...common,
  version: Schema.Literal(REFUND_VERSION_FINAL),
  status: Schema.Literal("SUCCEEDED"),
  fee_returned_minor: Schema.optionalKey(SplitMinorFromJsonNumber)
})
export type RefundSucceeded = typeof RefundSucceeded.Type

export const RefundFailed = Schema.Struct({
  type: Schema.tag("refund_failed"),
  ...common,
  version: Schema.Literal(REFUND_VERSION_FINAL),
  status: Schema.Literal("FAILED"),
  failure_code: FailureCode,
  failure_message: FailureMessage
})
export type RefundFailed = typeof RefundFailed.Type

export const RefundEvent = Schema.Union([RefundCreated, RefundSucceeded, RefundFailed])
export type RefundEvent = typeof RefundEvent.Type

export const refundEventTypes = ["refund_created", "refund_succeeded", "refund_failed"] as const
/** A refund event's `version`: the refund's (1 created, 2 final). */
export type RefundVersion = typeof RefundVersion.Type

/** Everything published on `payments.events`: the payment's events and its refunds' events. */
export const DomainEvent = Schema.Union([PaymentEvent, RefundEvent])
export type DomainEvent = typeof DomainEvent.Type
export type DomainEventJson = typeof DomainEvent.Encoded

export const domainEventTypes = [...paymentEventTypes, ...refundEventTypes] as const
export type DomainEventType = (typeof domainEventTypes)[number]

export const encodeDomainEvent = Schema.encodeSync(DomainEvent)
export const encodeRefundEvent = Schema.encodeSync(RefundEvent)
export const decodeDomainEvent = Schema.decodeUnknownEffect(DomainEvent)

export const isRefundEvent = (event: DomainEvent): event is RefundEvent =>
  event.type === "refund_created" || event.type === "refund_succeeded" || event.type === "refund_failed"

/**
 * The aggregate whose version an event carries, for a consumer's ordering check (per aggregate:
 * an event whose version is not above the aggregate's applied version is stale). A payment event:
 * the payment. A refund event: the refund. A notice that changes nothing (`payment_expiring`): its
 * own once-only aggregate `<payment id>:expiring` at version 1, so it is neither stale behind the
 * payment's version nor makes the payment's next event stale.
 */
export const eventAggregate = (event: DomainEvent): { readonly id: string; readonly version: number } =>
  isRefundEvent(event)
    ? { id: event.refund_id, version: event.version }
    : event.type === "payment_expiring"
    ? { id: `${event.payment_id}:expiring`, version: 1 }
    : { id: event.payment_id, version: event.version }
