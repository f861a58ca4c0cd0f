import { decodeRow } from "@pay/infra"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { randomUUID } from "node:crypto"

/** INSERT … RETURNING: exactly one row. */
const createdRow = decodeRow(Schema.Struct({ created_at: Schema.Date }))

/** What a state change records about itself, in the same transaction as the change. */
export interface NewOutboxEvent {
  readonly aggregateType: string
  readonly aggregateId: string
  /** Past-tense fact: `payment_created`, `payment_authorized`, `payment_settled`, `payment_failed`. */
  readonly eventType: string
  readonly eventVersion: number
  /** Already encoded to JSON-safe values (money as integer minor units, instants as ISO strings). */
  readonly payload: Schema.Json
  /** `correlation_id`, `traceparent`: carried to Kafka headers by the publisher. */
  readonly headers: Readonly<Record<string, string>>
}

export interface AppendedOutboxEvent {
  readonly id: string
  readonly createdAt: Date
}

/**
 * Appends events to `outbox_events`. It must run inside the caller's `sql.withTransaction`
 * (the same one that changes the state): that is the whole point of an outbox. It never talks to
 * Kafka; the publisher does, after commit.
 */
export class OutboxWriter extends Context.Service<OutboxWriter, {
  readonly append: (event: NewOutboxEvent) => Effect.Effect<AppendedOutboxEvent, SqlError>
}>()("outbox/OutboxWriter") {
  static readonly layer = Layer.effect(
    OutboxWriter,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const append = Effect.fn("OutboxWriter.append")(function* (event: NewOutboxEvent) {
        const id = randomUUID()
        const { created_at: createdAt } = yield* createdRow(sql`
          INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers)
          VALUES (${id}, ${event.aggregateType}, ${event.aggregateId}, ${event.eventType}, ${event.eventVersion},
                  ${JSON.stringify(event.payload)}::jsonb, ${JSON.stringify(event.headers)}::jsonb)
          RETURNING created_at`)
        return { id, createdAt }
      })
      return OutboxWriter.of({ append })
    })
  )
}
