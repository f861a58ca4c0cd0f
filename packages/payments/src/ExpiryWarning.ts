import { encodePaymentEvent, PAYMENT_EVENT_SCHEMA_VERSION, type Payment, PaymentId, type PaymentExpiring } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import type { OutboxWriter } from "@pay/outbox"
import { DateTime, Effect, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import { paymentColumns, paymentFromRow } from "./PaymentRows.ts"

/**
 * `EXPIRY_WARNING_LEAD_MS` bounds: 0 turns the warning off; at most 30 days (the longest
 * authorization lifetime, `authorizationLifetimeBounds`).
 */
export const expiryWarningLeadBounds = { min: 0, max: 30 * 24 * 60 * 60 * 1_000 } as const
/** How long before `authorization_expires_at` the `payment_expiring` warning is written (24 hours). */
export const EXPIRY_WARNING_LEAD_MS_DEFAULT = 24 * 60 * 60 * 1_000

const DueRow = Schema.Struct({ id: PaymentId })
const Inserted = decodeRows(Schema.Struct({ payment_id: Schema.String }))

const context = { actor: "system:expiry", correlationId: "authorization-expiry-warning" }

/** `occurred_at`: when the warning is written (nothing about the payment changed). */
const expiringEvent = (payment: Payment, now: DateTime.Utc): PaymentExpiring | undefined =>
  payment.status !== "AUTHORIZED" || payment.authorization_expires_at === null
    ? undefined
    : {
      type: "payment_expiring",
      payment_id: payment.id,
      merchant_id: payment.merchant_id,
      amount_minor: payment.amount_minor,
      currency: payment.currency,
      version: payment.version,
      occurred_at: now,
      status: "AUTHORIZED",
      authorization_expires_at: payment.authorization_expires_at
    }

/**
 * The warning before an authorization lapses (issue 19): `payment_expiring`, written ONCE per
 * payment. One transaction per payment: its row lock (FOR NO KEY UPDATE, the lock a transition
 * takes, so the warning is ordered with the payment's other events on its aggregate), still
 * AUTHORIZED, a `payment_expiry_warnings` row (primary key: once per payment) and the event in the
 * outbox. The database refuses the row without its event at COMMIT, and a warning for a payment
 * that is not AUTHORIZED (migrations/0061_payment_expiring.sql).
 */
export const makeExpiryWarnings = (sql: SqlClient.SqlClient, outbox: OutboxWriter["Service"]) => {
  const warnOne = (paymentId: PaymentId) =>
    sql.withTransaction(Effect.gen(function* () {
      const rows = yield* sql.unsafe(`SELECT ${paymentColumns} FROM payments WHERE id = $1 FOR NO KEY UPDATE`, [paymentId])
      if (rows[0] === undefined) return false
      const event = expiringEvent(yield* paymentFromRow(rows[0]), yield* DateTime.now)
      if (event === undefined) return false
      const inserted = yield* Inserted(sql`
        INSERT INTO payment_expiry_warnings (payment_id, authorization_expires_at)
        VALUES (${paymentId}, ${new Date(event.authorization_expires_at.epochMilliseconds)})
        ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id`)
      if (inserted.length === 0) return false
      yield* outbox.append({
        aggregateType: "payment",
        aggregateId: paymentId,
        eventType: event.type,
        eventVersion: PAYMENT_EVENT_SCHEMA_VERSION,
        payload: encodePaymentEvent(event),
        headers: { correlation_id: context.correlationId }
      })
      return true
    }))

  /** At most `batch_max` authorizations due within `lead_ms` and not warned yet; how many were warned. */
  const warnDue = (lead_ms: number, batch_max: number) =>
    Effect.gen(function* () {
      if (lead_ms === 0) return 0
      const due = yield* decodeRows(DueRow)(sql`
        SELECT p.id FROM payments p
        WHERE p.status = 'AUTHORIZED'
          AND p.authorization_expires_at <= now() + ${lead_ms}::double precision * interval '1 millisecond'
          AND p.authorization_expires_at > now()
          AND NOT EXISTS (SELECT 1 FROM payment_expiry_warnings w WHERE w.payment_id = p.id)
        ORDER BY p.authorization_expires_at LIMIT ${batch_max}`)
      const warned = yield* Effect.forEach(due, (row) => warnOne(row.id))
      return warned.filter(Boolean).length
    })

  return { warnDue }
}
