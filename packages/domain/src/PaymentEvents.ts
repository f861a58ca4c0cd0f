import { Schema, SchemaTransformation } from "effect"
import { Currency } from "./Currency.ts"
import { MerchantId, PaymentId } from "./Ids.ts"
import { AMOUNT_MINOR_MAX, AmountMinorFromJsonNumber } from "./Money.ts"
import { FailureCode, FailureMessage, PaymentStatus, PaymentVersion } from "./Payment.ts"

/**
 * Domain events: past-tense facts about one payment, published through the outbox.
 *
 * Wire format (the outbox payload and the Kafka value) is the encoded form of these schemas:
 * plain JSON, `amount_minor` a JSON integer, `occurred_at` an ISO-8601 string. The discriminator
 * is `type` (not Effect's `_tag`), because consumers need not be written with Effect.
 *
 * Every event carries the payment `version` it produced: a consumer that sees version N+2 before
 * N+1 knows it missed or reordered something, and (payment_id, version) is a natural dedup key.
 */
export const PAYMENT_EVENT_SCHEMA_VERSION = 1

const common = {
  payment_id: PaymentId,
  merchant_id: MerchantId,
  amount_minor: AmountMinorFromJsonNumber,
  currency: Currency,
  version: PaymentVersion,
  occurred_at: Schema.DateTimeUtcFromString
}

export const PaymentCreated = Schema.Struct({
  type: Schema.tag("payment_created"),
  ...common,
  status: Schema.Literal("CREATED")
})
export type PaymentCreated = typeof PaymentCreated.Type

export const PaymentAuthorized = Schema.Struct({
  type: Schema.tag("payment_authorized"),
  ...common,
  previous_status: PaymentStatus,
  status: Schema.Literal("AUTHORIZED")
})
export type PaymentAuthorized = typeof PaymentAuthorized.Type

/**
 * A non-negative amount in minor units as a JSON integer (a fee may be 0). Exact: at most
 * AMOUNT_MINOR_MAX, well inside the safe-integer range.
 */
export const SplitMinorFromJsonNumber = Schema.Int.check(
  Schema.isBetween(
    { minimum: 0, maximum: Number(AMOUNT_MINOR_MAX) },
    { message: `fee_minor / net_minor must be an integer between 0 and ${AMOUNT_MINOR_MAX} (minor units)` }
  )
).pipe(
  Schema.decodeTo(
    Schema.BigInt,
    SchemaTransformation.transform({ decode: (amount: number) => BigInt(amount), encode: (amount: bigint) => Number(amount) })
  )
)

/**
 * `fee_minor` and `net_minor` (fee + net = the captured amount) are the split the settlement posted to the
 * ledger in the same transaction. Optional in the schema (an added field keeps the version, and
 * events written before they existed still decode); every payment_settled written now has them.
 */
export const PaymentSettled = Schema.Struct({
  type: Schema.tag("payment_settled"),
  ...common,
  previous_status: PaymentStatus,
  status: Schema.Literal("SETTLED"),
  fee_minor: Schema.optionalKey(SplitMinorFromJsonNumber),
  net_minor: Schema.optionalKey(SplitMinorFromJsonNumber),
  /**
   * What was captured and posted (≤ `amount_minor`, the authorized amount; issue 19). fee + net =
   * this amount. Absent only in events written before partial capture existed (then: the amount).
   */
  captured_amount_minor: Schema.optionalKey(AmountMinorFromJsonNumber)
})
export type PaymentSettled = typeof PaymentSettled.Type

export const PaymentFailed = Schema.Struct({
  type: Schema.tag("payment_failed"),
  ...common,
  previous_status: PaymentStatus,
  status: Schema.Literal("FAILED"),
  failure_code: FailureCode,
  failure_message: FailureMessage
})
export type PaymentFailed = typeof PaymentFailed.Type

/**
 * The merchant canceled the payment (`POST /v1/payments/{id}/cancel`): an AUTHORIZED one was voided
 * (the acquirer released the reserved funds), a CREATED one had nothing reserved
 * (`previous_status` says which); no money moved in our ledger. CANCELED is terminal.
 */
export const PaymentCanceled = Schema.Struct({
  type: Schema.tag("payment_canceled"),
  ...common,
  previous_status: PaymentStatus,
  status: Schema.Literal("CANCELED")
})
export type PaymentCanceled = typeof PaymentCanceled.Type

/** The authorization lapsed uncaptured (`AUTHORIZED` → `EXPIRED`, terminal, by the expiry job). */
export const PaymentExpired = Schema.Struct({
  type: Schema.tag("payment_expired"),
  ...common,
  previous_status: PaymentStatus,
  status: Schema.Literal("EXPIRED")
})
export type PaymentExpired = typeof PaymentExpired.Type

/**
 * A warning, not a change (issue 19): the authorization of this AUTHORIZED payment lapses at
 * `authorization_expires_at` unless it is captured first. Written once per payment by the expiry
 * job, a configurable lead time before (`PAYMENT_EXPIRY_WARNING_MS`). `version` is the payment's
 * current version (unchanged: nothing changed); for ordering checks it is its own aggregate
 * (`eventAggregate` in RefundEvents.ts).
 */
export const PaymentExpiring = Schema.Struct({
  type: Schema.tag("payment_expiring"),
  ...common,
  status: Schema.Literal("AUTHORIZED"),
  authorization_expires_at: Schema.DateTimeUtcFromString
})
export type PaymentExpiring = typeof PaymentExpiring.Type

export const PaymentEvent = Schema.Union([
  PaymentCreated,
  PaymentAuthorized,
  PaymentSettled,
  PaymentFailed,
  PaymentCanceled,
  PaymentExpired,
  PaymentExpiring
])
export type PaymentEvent = typeof PaymentEvent.Type
/** The JSON form of an event, as stored in `outbox_events.payload`. */
export type PaymentEventJson = typeof PaymentEvent.Encoded

export const paymentEventTypes = [
  "payment_created",
  "payment_authorized",
  "payment_settled",
  "payment_failed",
  "payment_canceled",
  "payment_expired",
  "payment_expiring"
] as const
export const PaymentEventType = Schema.Literals(paymentEventTypes)
export type PaymentEventType = typeof PaymentEventType.Type

/** Event → JSON-safe payload. Total: every valid event encodes. */
export const encodePaymentEvent = Schema.encodeSync(PaymentEvent)
/** JSON payload → event, with typed `SchemaError` (for consumers). */
export const decodePaymentEvent = Schema.decodeUnknownEffect(PaymentEvent)
