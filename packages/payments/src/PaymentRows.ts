import { Payment } from "@pay/domain"
import { Effect, Schema } from "effect"

/**
 * A `payments` row as the Postgres driver returns it (int8 → bigint, timestamptz → Date,
 * jsonb → parsed value, char(3) → string). Converted to the domain's `Payment` by decoding its
 * JSON form, so every domain rule (brands, patterns, bounds, "failure iff FAILED") is checked on
 * the way out of the database too.
 */
export const PaymentRow = Schema.Struct({
  id: Schema.String,
  merchant_id: Schema.String,
  amount_minor: Schema.BigInt,
  currency: Schema.String,
  payment_method: Schema.String,
  description: Schema.NullOr(Schema.String),
  metadata: Schema.Unknown,
  status: Schema.String,
  failure_code: Schema.NullOr(Schema.String),
  failure_message: Schema.NullOr(Schema.String),
  captured_amount_minor: Schema.NullOr(Schema.BigInt),
  authorization_expires_at: Schema.NullOr(Schema.Date),
  version: Schema.Number,
  created_at: Schema.Date,
  updated_at: Schema.Date
})
export type PaymentRow = typeof PaymentRow.Type

const decodeRow = Schema.decodeUnknownEffect(PaymentRow)
const decodePayment = Schema.decodeUnknownEffect(Payment)

/**
 * Row → Payment. A row the domain cannot read means the database holds something its own CHECKs
 * and triggers should have refused: a broken invariant, so a defect (loud), not a typed error.
 */
export const paymentFromRow = (row: unknown): Effect.Effect<Payment> =>
  decodeRow(row).pipe(
    Effect.flatMap((decoded) =>
      decodePayment({
        ...decoded,
        // Exact: the CHECK bounds amount_minor far below 2^53; the decode re-checks the bound.
        amount_minor: Number(decoded.amount_minor),
        captured_amount_minor: decoded.captured_amount_minor === null ? null : Number(decoded.captured_amount_minor),
        authorization_expires_at: decoded.authorization_expires_at === null ? null : decoded.authorization_expires_at.toISOString(),
        created_at: decoded.created_at.toISOString(),
        updated_at: decoded.updated_at.toISOString()
      })
    ),
    Effect.mapError((error) => new Error(`payments row does not satisfy the Payment schema: ${error.message}`)),
    Effect.orDie
  )

/** The column list every read uses, so all reads decode the same shape. */
export const paymentColumns =
  "id, merchant_id, amount_minor, currency, payment_method, description, metadata, status, failure_code, failure_message, captured_amount_minor, authorization_expires_at, version, created_at, updated_at"
