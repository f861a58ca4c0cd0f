import type { SqlClient } from "effect/sql"

/**
 * Payloads of events written by hand in tests, read from the rows they announce, so that they pass
 * the database's check that an event says what the rows say (migrations/0098): the type, the
 * payment's id, merchant, currency and amount, then `extra` (the version, the statuses, …). A SQL
 * expression (jsonb) for an `INSERT INTO outbox_events … VALUES (…, <payload>)`; the rows must
 * exist when the statement runs.
 */
export const paymentEventPayload = (sql: SqlClient.SqlClient, paymentId: string, type: string, extra: Readonly<Record<string, unknown>> = {}) =>
  sql`(SELECT jsonb_build_object('type', ${type}::text, 'payment_id', p.id, 'merchant_id', p.merchant_id, 'currency', p.currency::text,
                                 'amount_minor', p.amount_minor) || ${JSON.stringify(extra)}::jsonb
       FROM payments p WHERE p.id = ${paymentId})`

/** A `payment_settled` payload: the payment's, and its settlement row's split (the row must be written first). */
export const settledEventPayload = (sql: SqlClient.SqlClient, paymentId: string, extra: Readonly<Record<string, unknown>> = {}) =>
  sql`(SELECT jsonb_build_object('type', 'payment_settled', 'payment_id', p.id, 'merchant_id', p.merchant_id, 'currency', p.currency::text,
                                 'amount_minor', p.amount_minor, 'fee_minor', s.fee_minor, 'net_minor', s.net_minor,
                                 'captured_amount_minor', s.gross_minor) || ${JSON.stringify(extra)}::jsonb
       FROM payments p JOIN payment_settlements s ON s.payment_id = p.id WHERE p.id = ${paymentId})`

/** A refund event's payload, from the refund's row as it is when the statement runs. */
export const refundEventPayload = (sql: SqlClient.SqlClient, refundId: string, type: string, extra: Readonly<Record<string, unknown>> = {}) =>
  sql`(SELECT jsonb_build_object('type', ${type}::text, 'refund_id', r.id, 'payment_id', r.payment_id, 'merchant_id', r.merchant_id,
                                 'currency', r.currency::text, 'amount_minor', r.amount_minor,
                                 'fee_returned_minor', coalesce(r.fee_returned_minor, 0), 'failure_code', r.failure_code) || ${JSON.stringify(extra)}::jsonb
       FROM refunds r WHERE r.id = ${refundId})`
