import { encodePaymentEvent, type Payment, PAYMENT_EVENT_SCHEMA_VERSION, type PaymentEvent, type PaymentStatus } from "@pay/domain"
import type { CteWrite } from "@pay/idempotency"
import type { OutboxWriter } from "@pay/outbox"
import type { SettlementAlongside } from "@pay/settlement"
import { DateTime, Effect, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { type ChangeContext, eventHeadersOf, isChangeContext } from "./ChangeContext.ts"
import { countTransition } from "./PaymentMetrics.ts"

/** What PaymentRepository.ts and PaymentApply.ts share: the trail every change writes, and helpers. */

export const toDate = (instant: DateTime.Utc): Date => DateTime.toDateUtc(instant)

export const assertContext = (context: ChangeContext) =>
  isChangeContext(context)
    ? Effect.void
    : Effect.die(new Error("ChangeContext violates its schema: validate it at the edge (ChangeContext)"))

/** Rows whose shape the statement's RETURNING (or select list) fixes: a mismatch is a bug. */
export const decodeRows = <S extends Schema.Top & { readonly DecodingServices: never }>(row: S) => {
  const decode = Schema.decodeUnknownEffect(Schema.Array(row))
  return (effect: Effect.Effect<ReadonlyArray<unknown>, SqlError>) =>
    effect.pipe(Effect.flatMap(decode), Effect.catchTag("SchemaError", Effect.die))
}
export const ids = decodeRows(Schema.Struct({ id: Schema.String }))

/** What every change writes with it: its status-history row and its outbox event. */
export const makeTrail = (sql: SqlClient.SqlClient, outbox: OutboxWriter["Service"]) => ({
  recordHistory: (payment: Payment, from: PaymentStatus | null, context: ChangeContext) =>
    sql`
      INSERT INTO payment_status_history
        (payment_id, version, from_status, to_status, actor, reason, correlation_id, traceparent, occurred_at)
      VALUES (${payment.id}, ${payment.version}, ${from}, ${payment.status}, ${context.actor},
              ${context.reason ?? null}, ${context.correlationId}, ${context.traceparent ?? null},
              ${toDate(payment.updated_at)}::timestamptz)`.pipe(
      // Counted once the change commits: a rolled-back change counts nothing.
      Effect.tap(() => sql.afterCommit(countTransition(payment, from)))
    ),
  publish: (event: PaymentEvent, context: ChangeContext) => outbox.append(outboxEventOf(event, context)),
  /** `recordHistory` and `publish` as CTEs of one statement, written once per row of `source`. */
  historyFrom: (payment: Payment, from: PaymentStatus | null, context: ChangeContext, source: string) =>
    sql`
      INSERT INTO payment_status_history
        (payment_id, version, from_status, to_status, actor, reason, correlation_id, traceparent, occurred_at)
      SELECT ${payment.id}, ${payment.version}, ${from}, ${payment.status}, ${context.actor},
             ${context.reason ?? null}, ${context.correlationId}, ${context.traceparent ?? null},
             ${toDate(payment.updated_at)}::timestamptz
      FROM ${sql.literal(source)}`,
  publishFrom: (event: PaymentEvent, context: ChangeContext, source: string) => outbox.appendFrom(outboxEventOf(event, context), source)
})

const outboxEventOf = (event: PaymentEvent, context: ChangeContext) => ({
  aggregateType: "payment",
  aggregateId: event.payment_id,
  eventType: event.type,
  eventVersion: PAYMENT_EVENT_SCHEMA_VERSION,
  payload: encodePaymentEvent(event),
  headers: eventHeadersOf(context)
})

export type Trail = ReturnType<typeof makeTrail>

/** What the settlement posted: the event carries it. */
export interface SettledSplit {
  readonly fee_minor: bigint
  readonly net_minor: bigint
}

/** The settlement step of a settle (`PaymentRepository.apply`): writes `alongside` (the event) with its settlement row. */
export type OnSettled<E> = (payment: Payment, alongside: SettlementAlongside) => Effect.Effect<SettledSplit, E>

/**
 * The caller's stored answer, written by the change's own statement (one round trip fewer), built
 * from the changed payment: `Execution.finishFrom` of `@pay/idempotency` is one.
 */
export type AnswerFrom<F, E> = (payment: Payment) => CteWrite<F, E>
