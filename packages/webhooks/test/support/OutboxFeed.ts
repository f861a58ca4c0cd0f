import { decodePaymentEvent } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { enqueueDeliveries } from "../../src/DeliveryQueue.ts"

const outboxRows = decodeRows(Schema.Struct({ id: Schema.String, payload: Schema.Unknown }))

/**
 * Until the consumer of `payments.events` calls `enqueueDeliveries` in its per-record
 * transaction, tests feed it from the outbox table (the same events, the same ids as on Kafka):
 * one transaction per event, in position order. Enqueueing twice creates nothing new.
 */
export const enqueueFromOutbox = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* outboxRows(sql`
    SELECT id::text AS id, payload FROM outbox_events WHERE aggregate_type = 'payment' ORDER BY position LIMIT 10000`)
  let created = 0
  for (const row of rows) {
    const event = yield* decodePaymentEvent(row.payload).pipe(Effect.orDie)
    created += yield* sql.withTransaction(enqueueDeliveries({ eventId: row.id, event }))
  }
  return created
})
