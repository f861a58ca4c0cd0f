import {
  encodeRefundEvent,
  PAYMENT_EVENT_SCHEMA_VERSION,
  type Refund,
  REFUND_VERSION_CREATED,
  REFUND_VERSION_FINAL,
  type RefundEvent
} from "@pay/domain"
import type { OutboxWriter } from "@pay/outbox"
import { Effect } from "effect"
import { type ChangeContext, eventHeadersOf } from "./ChangeContext.ts"

/** The event a refund's current state is the fact of (docs/events.md, "Refund events"). */
export const refundEventOf = (refund: Refund): Effect.Effect<RefundEvent> => {
  const common = {
    refund_id: refund.id,
    payment_id: refund.payment_id,
    merchant_id: refund.merchant_id,
    amount_minor: refund.amount_minor,
    currency: refund.currency,
    occurred_at: refund.updated_at,
    reason: refund.reason
  }
  switch (refund.status) {
    case "PENDING":
      return Effect.succeed({ type: "refund_created", ...common, version: REFUND_VERSION_CREATED, status: "PENDING" })
    case "SUCCEEDED":
      return Effect.succeed({ type: "refund_succeeded", ...common, version: REFUND_VERSION_FINAL, status: "SUCCEEDED", fee_returned_minor: refund.fee_returned_minor })
    case "FAILED":
      if (refund.failure_code === null || refund.failure_message === null) {
        // The Refund schema and the table's CHECK both refuse a FAILED refund without them.
        return Effect.die(new Error(`refund ${refund.id} is FAILED without failure details`))
      }
      return Effect.succeed({
        type: "refund_failed", ...common, version: REFUND_VERSION_FINAL, status: "FAILED",
        failure_code: refund.failure_code, failure_message: refund.failure_message
      })
  }
}

/**
 * Writes a refund's event to the outbox, in the caller's transaction (the one that inserted or
 * completed the refund). Aggregate `payment`, id the payment's: the event travels on the
 * payment's key and partition, behind its `payment_settled` (docs/events.md).
 */
export const makeRefundEvents = (outbox: OutboxWriter["Service"]) => ({
  publish: (refund: Refund, context: ChangeContext) =>
    Effect.gen(function* () {
      const event = yield* refundEventOf(refund)
      return yield* outbox.append({
        aggregateType: "payment",
        aggregateId: refund.payment_id,
        eventType: event.type,
        eventVersion: PAYMENT_EVENT_SCHEMA_VERSION,
        payload: encodeRefundEvent(event),
        headers: eventHeadersOf(context)
      })
    })
})
