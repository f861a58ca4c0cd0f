import {
  AMOUNT_MINOR_MAX,
  Currency,
  Description,
  type ErrorCode,
  FailureCode,
  FailureMessage,
  Metadata,
  paymentIdPattern,
  paymentRequestFields,
  PaymentStatus,
  RefundReason,
  RefundStatus,
  StoredDescription,
  StoredMetadata,
  StoredPaymentMethodToken
} from "@pay/domain"
import { Schema } from "effect"
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "effect/http-api"
import { Authorization } from "./Authorization.ts"
import { commonProblemCodes, postProblemCodes, problems } from "./Problems.ts"

/** The largest request body accepted, in bytes. */
export const REQUEST_BODY_BYTES_MAX = 64 * 1024
/** Containers inside containers in a request body: no body of this API needs more than 3; deeper is refused (400) before it is walked. */
export const REQUEST_BODY_NESTING_MAX = 32

/**
 * An integer field of a body, bounded: every failure (a fraction, a value beyond 2^53 that is no
 * longer a safe integer, or out of the bounds) says the range, not a bare "Expected an integer".
 */
export const boundedIntJson = (minimum: number, maximum: number, message: string) =>
  Schema.Number.check(Schema.isInt({ message }), Schema.isBetween({ minimum, maximum }, { message }))

/** `amount` on the wire: a JSON integer of minor units (cents for USD, yen for JPY). */
export const AmountJson = boundedIntJson(1, Number(AMOUNT_MINOR_MAX), `must be an integer number of minor units between 1 and ${AMOUNT_MINOR_MAX}`).annotate({ description: "Amount in minor units of the currency (e.g. 1050 = 10.50 USD, 1050 = 1050 JPY)" })

/**
 * `POST /v1/payments` body. Unknown fields are rejected. `description` may be `null`, as the
 * payment shows it when there is none: the same as leaving it out (a client that sends back what
 * it read is not refused).
 */
export const CreatePaymentBody = Schema.Struct({
  amount: AmountJson,
  ...paymentRequestFields,
  description: Schema.optionalKey(Schema.NullOr(Description).annotate({ description: "Free text, at most 500 characters, with no control character other than tab, line feed and carriage return, no bidirectional override or isolate (U+202A-U+202E, U+2066-U+2069) and no card number in it (13-19 digits, grouped or not, that pass the Luhn check): otherwise 400; null or absent: none" }))
})
export type CreatePaymentBody = typeof CreatePaymentBody.Type

/**
 * `POST /v1/payments/{id}/settle` body: none, `{}`, or `{ "amount": n }` to capture less than was
 * authorized (partial capture; the rest of the authorization is released). Unknown fields are rejected.
 */
export const SettlePaymentBody = Schema.Struct({
  amount: Schema.optionalKey(AmountJson.annotate({ description: "What to capture, in minor units: at most the authorized amount (default: all of it)" }))
})
export type SettlePaymentBody = typeof SettlePaymentBody.Type

/** A payment as the API shows it. */
/** `pay_` + 24 lowercase base32 characters. */
export const PaymentIdJson = Schema.String.check(
  Schema.isPattern(paymentIdPattern, { message: "a payment id is \"pay_\" followed by 24 lowercase base32 characters" })
)

/** An instant as the API writes it: ISO 8601 in UTC with milliseconds. */
const InstantJson = Schema.String.check(
  Schema.isPattern(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/u)
).annotate({ format: "date-time" })

export const PaymentJson = Schema.Struct({
  id: PaymentIdJson,
  object: Schema.Literal("payment"),
  amount: AmountJson,
  currency: Currency,
  payment_method: StoredPaymentMethodToken,
  // As stored: a row from before a rule of Description or Metadata (0080, 0083) still reads back.
  description: Schema.NullOr(StoredDescription),
  metadata: StoredMetadata,
  status: PaymentStatus,
  failure_code: Schema.NullOr(FailureCode),
  failure_message: Schema.NullOr(FailureMessage),
  /** What was captured (≤ amount) once SETTLED; null before. */
  captured_amount: Schema.NullOr(AmountJson),
  /** When the authorization lapses (set when AUTHORIZED; null before): no capture from then on. */
  authorization_expires_at: Schema.NullOr(InstantJson),
  created_at: InstantJson,
  updated_at: InstantJson
})
export type PaymentJson = typeof PaymentJson.Type

/** `POST /v1/payments/{id}/refunds` body. Unknown fields are rejected. */
export const CreateRefundBody = Schema.Struct({
  amount: Schema.optionalKey(AmountJson.annotate({ description: "What to give back, in minor units (default: what is left of the captured amount)" })),
  // `null`, as the refund shows it when there is none: the same as leaving it out.
  reason: Schema.optionalKey(Schema.NullOr(RefundReason).annotate({ description: "Why the money goes back; null or absent: none given" })),
  metadata: Schema.optionalKey(Metadata)
})
export type CreateRefundBody = typeof CreateRefundBody.Type

export const RefundJson = Schema.Struct({
  id: Schema.String.check(Schema.isPattern(/^re_[0-9a-hjkmnp-tv-z]{24}$/u)),
  object: Schema.Literal("refund"),
  payment_id: PaymentIdJson,
  amount: AmountJson,
  currency: Currency,
  status: RefundStatus,
  reason: Schema.NullOr(RefundReason),
  metadata: StoredMetadata,
  failure_code: Schema.NullOr(FailureCode),
  failure_message: Schema.NullOr(FailureMessage),
  fee_returned: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)).annotate({
    description: "The part of the platform's fee given back with the refund, in minor units: 0 unless the merchant's fee is returned on refund (and the refund SUCCEEDED)"
  }),
  created_at: InstantJson,
  updated_at: InstantJson
})
export type RefundJson = typeof RefundJson.Type

export const RefundListJson = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(RefundJson),
  has_more: Schema.Boolean
})

export const PaymentListJson = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(PaymentJson),
  has_more: Schema.Boolean
})

export const BalanceJson = Schema.Struct({
  object: Schema.Literal("balance"),
  /** The merchant's payable balance per currency, read from the ledger, in minor units. */
  available: Schema.Array(Schema.Struct({
    currency: Currency,
    // The document says "integer" without Int's ±2^53 bounds: the answer is exact past them (balanceBody).
    amount: Schema.Number.check(Schema.isInt({ toJsonSchema: () => ({ type: "integer" }) })).annotate({
      description: "In minor units, written as the exact integer however large: past 2^53 (a lifetime's net in a currency of small units) read it with a parser that keeps integers exact."
    })
  }))
})

// Declared optional so that a missing key reaches the handler, which answers the documented
// 400 problem (`idempotency_key_missing`) instead of a generic decoding error.
export const IdempotencyKeyHeader = Schema.Struct({
  "idempotency-key": Schema.optionalKey(Schema.String.annotate({
    description: "Required on every POST. 1-255 characters, no control characters; a token or a quoted string."
  }))
})

// A string here, so that any other id reaches the handler and answers payment_not_found (404); the
// document declares the pattern (OpenApiContract.ts).
const PaymentIdParam = { id: Schema.String.annotate({ description: "A payment id, `pay_…`" }) }

/** What a POST on an existing payment may answer: the acquirer decides, the payment may refuse. */
const transitionProblemCodes = [
  ...postProblemCodes,
  "route_not_found",
  "payment_not_found",
  "invalid_transition",
  "concurrent_modification",
  "acquirer_timeout",
  "acquirer_unavailable",
  "payment_locked"
] as const satisfies ReadonlyArray<ErrorCode>

/**
 * Payments. Every POST requires an `Idempotency-Key`: a retry with the same key and request
 * replays the first answer (header `Idempotent-Replayed: true`); the same key with another
 * request answers 422; while the first is in flight, 409.
 */
export class PaymentsGroup extends HttpApiGroup.make("payments")
  .add(
    HttpApiEndpoint.post("create", "/v1/payments", {
      headers: IdempotencyKeyHeader,
      payload: CreatePaymentBody,
      success: PaymentJson.annotate({ httpApiStatus: 201 }),
      error: problems(...postProblemCodes)
    }).annotate(OpenApi.Description, "Creates a payment (status CREATED). Idempotent: the same key and body replay the first answer; nothing is charged yet."),
    HttpApiEndpoint.post("authorize", "/v1/payments/:id/authorize", {
      params: PaymentIdParam,
      headers: IdempotencyKeyHeader,
      success: PaymentJson,
      error: problems(...transitionProblemCodes)
    }).annotate(OpenApi.Description, "Asks the acquirer to authorize a CREATED payment: AUTHORIZED, or FAILED with failure_code when declined. A 503 means the outcome is unknown: retry with the same key."),
    HttpApiEndpoint.post("settle", "/v1/payments/:id/settle", {
      params: PaymentIdParam,
      headers: IdempotencyKeyHeader,
      payload: SettlePaymentBody,
      success: PaymentJson,
      error: problems(...transitionProblemCodes, "settlement_unavailable", "capture_exceeds_authorized", "authorization_expired")
    }).annotate(OpenApi.Description, "Captures an AUTHORIZED payment at the acquirer (all of it, or `amount` ≤ the authorized amount: a partial capture releases the rest) and posts the captured money to the ledger (SETTLED): the merchant's balance grows by the captured amount less the fee, computed on the captured amount."),
    HttpApiEndpoint.post("cancel", "/v1/payments/:id/cancel", {
      params: PaymentIdParam,
      headers: IdempotencyKeyHeader,
      success: PaymentJson,
      error: problems(...transitionProblemCodes, "authorization_in_progress")
    }).annotate(OpenApi.Description, "Cancels a CREATED or AUTHORIZED payment: CANCELED (terminal); no money moves. An AUTHORIZED payment's reservation is voided at the acquirer; a CREATED one has nothing reserved, unless its authorization is in progress: then 409 authorization_in_progress (stored; nothing done or pending), and a cancel with a new key once the authorization has finished voids it. A 503 means the outcome is unknown: retry with the same key."),
    HttpApiEndpoint.post("refund", "/v1/payments/:id/refunds", {
      params: PaymentIdParam,
      headers: IdempotencyKeyHeader,
      payload: CreateRefundBody,
      success: RefundJson.annotate({ httpApiStatus: 201 }),
      error: problems(
        ...postProblemCodes,
        "route_not_found",
        "payment_not_found",
        "payment_not_refundable",
        "refund_exceeds_captured",
        "refund_exceeds_balance",
        "acquirer_timeout",
        "acquirer_unavailable",
        "settlement_unavailable"
      )
    }).annotate(OpenApi.Description, "Refunds a SETTLED payment, fully or partly (`amount`, default: what is left). The refund is SUCCEEDED (the money is reversed in the ledger; the fee is kept) or FAILED when the acquirer declines. The payment's refunds that have not failed never exceed the captured amount. A 503 means the outcome is unknown: retry with the same key."),
    HttpApiEndpoint.get("listRefunds", "/v1/payments/:id/refunds", {
      params: PaymentIdParam,
      query: {
        limit: Schema.optionalKey(Schema.String.annotate({ description: "1-100, default 100" })),
        starting_after: Schema.optionalKey(Schema.String.annotate({ description: "A refund id of this payment: the page starts after it" }))
      },
      success: RefundListJson,
      error: problems(...commonProblemCodes, "route_not_found", "payment_not_found", "invalid_cursor")
    }).annotate(OpenApi.Description, "The payment's refunds, oldest first, `limit` at a time (default 100); `starting_after` continues after one of this payment's refunds (has_more says whether there is more)."),
    HttpApiEndpoint.get("retrieveRefund", "/v1/payments/:id/refunds/:refund_id", {
      params: { ...PaymentIdParam, refund_id: Schema.String.annotate({ description: "A refund id, `re_…`" }) },
      success: RefundJson,
      error: problems(...commonProblemCodes, "route_not_found", "payment_not_found", "refund_not_found")
    }).annotate(OpenApi.Description, "One refund of one of the merchant's payments. An unknown or another merchant's payment is payment_not_found (checked first, as on the list); a refund that is not this payment's is refund_not_found."),
    HttpApiEndpoint.get("retrieve", "/v1/payments/:id", {
      params: PaymentIdParam,
      success: PaymentJson,
      error: problems(...commonProblemCodes, "route_not_found", "payment_not_found")
    }).annotate(OpenApi.Description, "Reads one of the merchant's payments; another merchant's payment is payment_not_found."),
    HttpApiEndpoint.get("list", "/v1/payments", {
      query: {
        limit: Schema.optionalKey(Schema.String.annotate({ description: "1-100, default 10" })),
        starting_after: Schema.optionalKey(Schema.String.annotate({ description: "A payment id: the page starts after it" }))
      },
      success: PaymentListJson,
      error: problems(...commonProblemCodes, "invalid_cursor")
    }).annotate(OpenApi.Description, "Lists the merchant's payments, newest first, `limit` at a time; `starting_after` continues after a payment id (has_more says whether there is more)."),
    HttpApiEndpoint.get("balance", "/v1/balance", {
      success: BalanceJson,
      error: problems(...commonProblemCodes)
    }).annotate(OpenApi.Description, "The merchant's payable balance per currency, read from the ledger, in minor units.")
  )
  .middleware(Authorization)
  .annotateMerge(OpenApi.annotations({
    title: "Payments",
    description: "Create, authorize, settle and cancel payments; read them and the merchant's balance."
  }))
{}
