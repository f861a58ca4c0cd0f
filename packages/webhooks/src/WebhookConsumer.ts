import type { DomainEvent } from "@pay/domain"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { enqueueDeliveries } from "./DeliveryQueue.ts"

/** The consumer's name (its group id is `<topic prefix>webhooks`; its rows in `processed_events`). */
export const WEBHOOK_CONSUMER_NAME = "webhooks"

/** What the consumer framework hands a handler: the CloudEvents envelope and the decoded event. */
export interface ConsumedPaymentEvent {
  readonly envelope: { readonly ce_id: string }
  readonly event: DomainEvent
}

/**
 * Webhooks as a consumer of `payments.events`: the handler the consumer framework (issue 14)
 * calls inside each record's transaction, after its `processed_events` check. It queues the
 * event's deliveries in that transaction, so they commit with the consumer's bookkeeping and
 * offset or not at all; `webhook-id` is the event's `ce_id` (the outbox row's id). Structurally a
 * `ConsumerHandler` of `@pay/consumers`. Needs `SqlClient` when made (the record's transaction is
 * found through it).
 */
export const makeWebhookConsumerHandler = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return {
    name: WEBHOOK_CONSUMER_NAME,
    apply: (decoded: ConsumedPaymentEvent): Effect.Effect<void, SqlError> =>
      enqueueDeliveries({ eventId: decoded.envelope.ce_id, event: decoded.event }).pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        Effect.asVoid
      )
  }
})
