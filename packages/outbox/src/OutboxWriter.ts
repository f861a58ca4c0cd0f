import { cteName, decodeRow } from "@pay/infra"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { newOutboxEventId } from "./EventIds.ts"

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
  /**
   * The same row as `append`, as a statement for a CTE of the caller's single statement:
   * `INSERT … SELECT … FROM <source>`, one event per row of `source` (another CTE of that
   * statement, e.g. the inserted state change), so it commits with that change or not at all.
   */
  readonly appendFrom: (event: NewOutboxEvent, source: string) => Fragment
}>()("outbox/OutboxWriter") {
  static readonly layer = Layer.effect(
    OutboxWriter,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const append = Effect.fn("OutboxWriter.append")(function* (event: NewOutboxEvent) {
        const id = newOutboxEventId()
        const { created_at: createdAt } = yield* createdRow(sql`
          INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers)
          VALUES (${id}, ${event.aggregateType}, ${event.aggregateId}, ${event.eventType}, ${event.eventVersion},
                  ${JSON.stringify(event.payload)}::jsonb, ${JSON.stringify(event.headers)}::jsonb)
          RETURNING created_at`)
        return { id, createdAt }
      })
      const appendFrom = (event: NewOutboxEvent, source: string): Fragment => {
        if (!cteName.test(source)) throw new Error(`appendFrom: ${JSON.stringify(source)} is not a CTE name`)
        return sql`
          INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers)
          SELECT ${newOutboxEventId()}, ${event.aggregateType}, ${event.aggregateId}, ${event.eventType}, ${event.eventVersion},
                 ${JSON.stringify(event.payload)}::jsonb, ${JSON.stringify(event.headers)}::jsonb
          FROM ${sql.literal(source)}`
      }
      return OutboxWriter.of({ append, appendFrom })
    })
  )
}
