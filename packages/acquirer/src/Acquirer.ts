import { CodedError } from "@pay/domain"
import { Context, type Effect, Schema } from "effect"

/**
 * The acquirer port: the bank-side system that authorizes and captures card payments, as the
 * payment use cases see it. Two properties of a real acquirer that our failure handling depends on:
 *
 * 1. It is idempotent per `reference`: asked twice with the same reference, it performs the
 *    operation once and answers the same outcome twice. We derive references from our own ids
 *    (e.g. `payment:<id>:authorization`), so a retry after an unknown outcome can never charge twice.
 * 2. It has its own memory, outside our transactions: a rollback or a `kill -9` of our server does
 *    not undo what "happened at the bank".
 *
 * The simulator (Simulator.ts) is the one implementation today.
 */

/**
 * `authorization_voided` / `authorization_captured`: a capture after a void, a void after a
 * capture. They exclude each other; the loser's request is refused, the payment left to the winner.
 */
export const DeclineCode = Schema.Literals([
  "card_declined",
  "insufficient_funds",
  "authorization_voided",
  "authorization_captured",
  /** A refund the acquirer refuses (the card account is closed, more than was captured…). */
  "refund_declined"
])
export type DeclineCode = typeof DeclineCode.Type

export class Approved extends Schema.TaggedClass<Approved>()("Approved", {
  /** The acquirer's own id for the operation (what a support ticket to the bank quotes). */
  acquirerReference: Schema.String
}) {}

export class Declined extends Schema.TaggedClass<Declined>()("Declined", {
  code: DeclineCode,
  message: Schema.String
}) {}

/** A definitive answer. Both are final for the reference: asking again gives the same one. */
export type AcquirerOutcome = Approved | Declined

export const AcquirerOperation = Schema.Literals(["authorize", "capture", "void", "refund"])
export type AcquirerOperation = typeof AcquirerOperation.Type

/**
 * No answer within `timeout_ms`: the operation may or may not have happened at the acquirer.
 * Never treat it as a decline. Ask again with the same reference (now or from the completer).
 */
export class AcquirerTimeout extends CodedError<AcquirerTimeout>()(
  "acquirer_timeout",
  "AcquirerTimeout",
  { operation: AcquirerOperation, reference: Schema.String, timeout_ms: Schema.Int },
  (e) => `the acquirer did not answer ${e.operation} ${e.reference} within ${e.timeout_ms} ms; the outcome is unknown`
) {}

/**
 * The acquirer could not be reached or failed. Handle it like a timeout (outcome unknown, ask
 * again with the same reference), never like a decline.
 */
export class AcquirerUnavailable extends CodedError<AcquirerUnavailable>()(
  "acquirer_unavailable",
  "AcquirerUnavailable",
  { operation: AcquirerOperation, reference: Schema.String, detail: Schema.String },
  (e) => `the acquirer is unavailable for ${e.operation} ${e.reference}: ${e.detail}`
) {}

export type AcquirerError = AcquirerTimeout | AcquirerUnavailable

export interface AuthorizeRequest {
  /** Our idempotency reference for this operation, e.g. `payment:<id>:authorization`. */
  readonly reference: string
  readonly paymentId: string
  readonly amount_minor: bigint
  readonly currency: string
  readonly paymentMethod: string
}

export interface CaptureRequest {
  /** e.g. `payment:<id>:capture` */
  readonly reference: string
  readonly paymentId: string
  readonly amount_minor: bigint
  readonly currency: string
}

/** Release (void) an approved, uncaptured authorization. e.g. `payment:<id>:void` */
export interface VoidRequest {
  readonly reference: string
  readonly paymentId: string
  /** The authorized amount being released. */
  readonly amount_minor: bigint
  readonly currency: string
}

/** Give back part or all of a captured payment. e.g. `refund:<refund id>` */
export interface RefundRequest {
  readonly reference: string
  readonly paymentId: string
  readonly amount_minor: bigint
  readonly currency: string
}

export class Acquirer extends Context.Service<Acquirer, {
  readonly authorize: (request: AuthorizeRequest) => Effect.Effect<AcquirerOutcome, AcquirerError>
  readonly capture: (request: CaptureRequest) => Effect.Effect<AcquirerOutcome, AcquirerError>
  /**
   * Approved when the payment has an approved authorization and no approved capture; declined
   * otherwise (a capture already performed cannot be voided: it is refunded instead).
   */
  readonly void: (request: VoidRequest) => Effect.Effect<AcquirerOutcome, AcquirerError>
  /**
   * Approved when the payment was captured and the refunds approved so far plus this one stay
   * within the captured amount; declined `refund_declined` otherwise.
   */
  readonly refund: (request: RefundRequest) => Effect.Effect<AcquirerOutcome, AcquirerError>
}>()("acquirer/Acquirer") {}
