import { DateTime, Result, Schema } from "effect"
import { CodedError } from "./DescribedError.ts"
import { PaymentId } from "./Ids.ts"
import { AmountMinor } from "./Money.ts"
import { CaptureExceedsAuthorized } from "./PaymentErrors.ts"
import {
  type CreatePaymentInput,
  FailureCode,
  FailureMessage,
  Payment,
  PaymentStatus,
  paymentStatuses
} from "./Payment.ts"
import { PaymentAuthorized, PaymentCanceled, PaymentCreated, PaymentExpired, PaymentFailed, PaymentSettled } from "./PaymentEvents.ts"

// ---------------------------------------------------------------------------------------------
// Commands: what may be asked of a payment.
// ---------------------------------------------------------------------------------------------

export const paymentCommandNames = ["authorize", "decline", "settle", "fail", "cancel", "expire"] as const
export const PaymentCommandName = Schema.Literals(paymentCommandNames)
export type PaymentCommandName = typeof PaymentCommandName.Type

/** How long an authorization holds the funds unless the caller says otherwise (7 days). */
export const AUTHORIZATION_TTL_MS_DEFAULT = 7 * 24 * 60 * 60 * 1000
/**
 * `AUTHORIZATION_LIFETIME_MS` bounds: at least a minute, at most 30 days (the longest hold card
 * schemes allow for any merchant category; most issuers release after 7).
 */
export const authorizationLifetimeBounds = { min: 60 * 1000, max: 30 * 24 * 60 * 60 * 1000 } as const

/** `expires_at`: when the authorization lapses (default: {@link AUTHORIZATION_TTL_MS_DEFAULT} after it). */
export const Authorize = Schema.TaggedStruct("authorize", { expires_at: Schema.optionalKey(Schema.DateTimeUtc) })
export const Decline = Schema.TaggedStruct("decline", { failure_code: FailureCode, failure_message: FailureMessage })
/** `amount_minor`: what to capture (partial capture); absent = the whole authorized amount. */
export const Settle = Schema.TaggedStruct("settle", { amount_minor: Schema.optionalKey(AmountMinor) })
export const Fail = Schema.TaggedStruct("fail", { failure_code: FailureCode, failure_message: FailureMessage })
export const Cancel = Schema.TaggedStruct("cancel", {})
export const Expire = Schema.TaggedStruct("expire", {})
export const PaymentCommand = Schema.Union([Authorize, Decline, Settle, Fail, Cancel, Expire])
export type PaymentCommand = typeof PaymentCommand.Type

// ---------------------------------------------------------------------------------------------
// THE transition table. Everything else (allowed pairs, terminal statuses, the pure transition
// function, the docs' diagram, the seed of the `payment_transitions` table in the database,
// checked by a test) is derived from, or compared against, these rows.
// ---------------------------------------------------------------------------------------------

/** A status a transition can lead to. No rule can lead back to CREATED: it is only ever initial. */
export type TransitionTarget = Exclude<PaymentStatus, "CREATED">

export interface TransitionRule {
  readonly command: PaymentCommandName
  readonly from: PaymentStatus
  readonly to: TransitionTarget
  /** Why the transition exists, in business terms (rendered in docs/payments.md). */
  readonly why: string
}

export const paymentTransitions = [
  {
    command: "authorize",
    from: "CREATED",
    to: "AUTHORIZED",
    why: "the issuer approved the payment and reserved the funds on the payer's account"
  },
  {
    command: "decline",
    from: "CREATED",
    to: "FAILED",
    why: "the issuer (or our risk checks) refused the authorization: no money was reserved"
  },
  {
    command: "cancel",
    from: "CREATED",
    to: "CANCELED",
    why: "the merchant canceled the payment before it was authorized: nothing was reserved, so nothing is voided and no money moved"
  },
  {
    command: "settle",
    from: "AUTHORIZED",
    to: "SETTLED",
    why: "the reserved funds were captured and are owed to the merchant: the ledger records it"
  },
  {
    command: "fail",
    from: "AUTHORIZED",
    to: "FAILED",
    why: "the authorization could not be captured (expired, capture refused): the reservation is released"
  },
  {
    command: "cancel",
    from: "AUTHORIZED",
    to: "CANCELED",
    why: "the merchant voided the authorization and the acquirer released the reservation: no money moved"
  },
  {
    command: "expire",
    from: "AUTHORIZED",
    to: "EXPIRED",
    why: "the authorization lapsed (authorization_expires_at passed) without a capture: the issuer released the funds"
  }
] as const satisfies ReadonlyArray<TransitionRule>

/** The status each command leads to (each command appears with exactly one target). */
export const commandTarget: Readonly<Record<PaymentCommandName, TransitionTarget>> = (() => {
  const targets: Partial<Record<PaymentCommandName, TransitionTarget>> = {}
  for (const rule of paymentTransitions) {
    const known = targets[rule.command]
    if (known !== undefined && known !== rule.to) {
      throw new Error(`transition table: command ${rule.command} leads to both ${known} and ${rule.to}`)
    }
    targets[rule.command] = rule.to
  }
  const complete: Record<PaymentCommandName, TransitionTarget> = {
    authorize: targetOf(targets, "authorize"),
    decline: targetOf(targets, "decline"),
    settle: targetOf(targets, "settle"),
    fail: targetOf(targets, "fail"),
    cancel: targetOf(targets, "cancel"),
    expire: targetOf(targets, "expire")
  }
  return complete
})()

function targetOf(
  targets: Partial<Record<PaymentCommandName, TransitionTarget>>,
  command: PaymentCommandName
): TransitionTarget {
  const target = targets[command]
  if (target === undefined) throw new Error(`transition table: command ${command} has no rule`)
  return target
}

/** The allowed (from, to) pairs: what the database's `payment_transitions` table must contain. */
export const allowedTransitionPairs: ReadonlyArray<readonly [PaymentStatus, TransitionTarget]> = paymentTransitions.map(
  (rule) => [rule.from, rule.to] as const
)

export const isTransitionAllowed = (from: PaymentStatus, to: PaymentStatus): boolean =>
  paymentTransitions.some((rule) => rule.from === from && rule.to === to)

/** Statuses with no outgoing rule. A terminal payment never changes again. */
export const terminalStatuses: ReadonlyArray<PaymentStatus> = paymentStatuses.filter(
  (status) => !paymentTransitions.some((rule) => rule.from === status)
)

export const isTerminal = (status: PaymentStatus): boolean => terminalStatuses.includes(status)

export const ruleFor = (command: PaymentCommandName, from: PaymentStatus): TransitionRule | undefined =>
  paymentTransitions.find((rule) => rule.command === command && rule.from === from)

// ---------------------------------------------------------------------------------------------
// The error and the pure functions.
// ---------------------------------------------------------------------------------------------

/**
 * The acquirer's refusal of a capture or a void of an authorization our side still saw AUTHORIZED:
 * another request of the same payment won the race at the acquirer, which approves one of
 * capture and void, once (docs/payments.md, "Void (cancel), and its race with settle"). The
 * acquirer's own decline codes (`@pay/acquirer` DeclineCode).
 */
export const AuthorizationRaceDecline = Schema.Literals(["authorization_captured", "authorization_voided"])
export type AuthorizationRaceDecline = typeof AuthorizationRaceDecline.Type

const raceLossCause: Readonly<Record<AuthorizationRaceDecline, string>> = {
  authorization_captured: "the authorization was already captured by another request",
  authorization_voided: "the authorization was already voided (canceled by another request, or released at its expiry)"
}

/** The acquirer call a command makes, as the detail names it. */
const acquirerCallOf = (command: PaymentCommandName): string =>
  command === "settle" ? "capture" : command === "cancel" ? "void" : command

/**
 * The command is not allowed from the payment's current status (including every command on a
 * terminal payment). A conflict with the resource's state. With `acquirerDecline`: the status
 * allowed it, and the acquirer refused it because another request of the payment won the race
 * (`from` is the status read before asking); the message says so instead of naming a transition.
 */
export class InvalidTransition extends CodedError<InvalidTransition>()(
  "invalid_transition",
  "InvalidTransition",
  {
    paymentId: PaymentId,
    from: PaymentStatus,
    to: PaymentStatus,
    command: PaymentCommandName,
    acquirerDecline: Schema.optionalKey(AuthorizationRaceDecline)
  },
  (e) =>
    e.acquirerDecline === undefined
      ? `payment ${e.paymentId} cannot ${e.command}: ${e.from} -> ${e.to} is not an allowed transition`
      : `payment ${e.paymentId} cannot ${e.command}: the acquirer refused the ${acquirerCallOf(e.command)} (${e.acquirerDecline}), ${raceLossCause[e.acquirerDecline]}`
) {}

export type TransitionEvent = PaymentAuthorized | PaymentSettled | PaymentFailed | PaymentCanceled | PaymentExpired

export interface Transitioned {
  readonly payment: Payment
  readonly event: TransitionEvent
}

export interface Created {
  readonly payment: Payment
  readonly event: PaymentCreated
}

const failureOf = (command: PaymentCommand) => {
  switch (command._tag) {
    case "decline":
    case "fail":
      return { failure_code: command.failure_code, failure_message: command.failure_message }
    case "authorize":
    case "settle":
    case "cancel":
    case "expire":
      return { failure_code: null, failure_message: null }
  }
}

/**
 * The state machine: `payment` + `command` at instant `now` → the next payment and the event it
 * produces, or `InvalidTransition`. Pure: no I/O, no clock, no randomness; the caller supplies
 * `now`. The version grows by exactly one. `updated_at` never moves backwards, even if `now`
 * comes from a clock that is behind the one that wrote the payment. A settle captures its
 * `amount_minor` (default: all of it), at most the authorized amount (`CaptureExceedsAuthorized`).
 */
export const transition = (
  payment: Payment,
  command: PaymentCommand,
  now: DateTime.Utc
): Result.Result<Transitioned, InvalidTransition | CaptureExceedsAuthorized> => {
  const rule = ruleFor(command._tag, payment.status)
  if (rule === undefined) {
    return Result.fail(
      new InvalidTransition({
        paymentId: payment.id,
        from: payment.status,
        to: commandTarget[command._tag],
        command: command._tag
      })
    )
  }
  const captured = capturedAmount(payment, command)
  if (Result.isFailure(captured)) return Result.fail(captured.failure)
  const next = new Payment({
    id: payment.id,
    merchant_id: payment.merchant_id,
    amount_minor: payment.amount_minor,
    currency: payment.currency,
    payment_method: payment.payment_method,
    description: payment.description,
    metadata: payment.metadata,
    status: rule.to,
    ...failureOf(command),
    captured_amount_minor: captured.success,
    authorization_expires_at: command._tag === "authorize"
      ? command.expires_at ?? DateTime.add(now, { milliseconds: AUTHORIZATION_TTL_MS_DEFAULT })
      : payment.authorization_expires_at,
    version: payment.version + 1,
    created_at: payment.created_at,
    updated_at: DateTime.max(payment.updated_at, now)
  })
  return Result.succeed({ payment: next, event: transitionEvent(next, rule.to, payment.status) })
}

/**
 * The authorization has lapsed at `now` (from its expiry on). Checked by the settle use case
 * BEFORE the acquirer is asked (`AuthorizationExpired`), not by `transition`: a capture the
 * acquirer approved before the expiry must still commit after it (the acquirer, which releases
 * an expired authorization through the expiry job's void, is the authority on what it captured).
 */
export const isAuthorizationExpired = (payment: Payment, now: DateTime.Utc): boolean =>
  payment.authorization_expires_at !== null && !DateTime.isLessThan(now, payment.authorization_expires_at)

/** What a settle captures (its amount, or all of it); null for every other command. */
const capturedAmount = (payment: Payment, command: PaymentCommand): Result.Result<AmountMinor | null, CaptureExceedsAuthorized> => {
  if (command._tag !== "settle") return Result.succeed(null)
  const requested = command.amount_minor ?? payment.amount_minor
  if (requested > payment.amount_minor) {
    return Result.fail(new CaptureExceedsAuthorized({ paymentId: payment.id, requested_minor: requested, authorized_minor: payment.amount_minor }))
  }
  return Result.succeed(requested)
}

const eventCommon = (payment: Payment) => ({
  payment_id: payment.id,
  merchant_id: payment.merchant_id,
  amount_minor: payment.amount_minor,
  currency: payment.currency,
  version: payment.version,
  occurred_at: payment.updated_at
})

/** The event is a function of the target status: a table row cannot name the wrong event. */
const transitionEvent = (next: Payment, to: TransitionTarget, from: PaymentStatus): TransitionEvent => {
  switch (to) {
    case "AUTHORIZED":
      return PaymentAuthorized.make({ ...eventCommon(next), previous_status: from, status: to })
    case "SETTLED":
      return PaymentSettled.make({
        ...eventCommon(next),
        previous_status: from,
        status: to,
        ...(next.captured_amount_minor === null ? {} : { captured_amount_minor: next.captured_amount_minor })
      })
    case "CANCELED":
      return PaymentCanceled.make({ ...eventCommon(next), previous_status: from, status: to })
    case "EXPIRED":
      return PaymentExpired.make({ ...eventCommon(next), previous_status: from, status: to })
    case "FAILED": {
      const { failure_code, failure_message } = next
      if (failure_code === null || failure_message === null) {
        // Unreachable: the Payment constructor already enforces "failure iff FAILED".
        throw new Error(`payment ${next.id} is FAILED without failure details`)
      }
      return PaymentFailed.make({ ...eventCommon(next), previous_status: from, status: to, failure_code, failure_message })
    }
  }
}

/**
 * Creation: the only way into the machine. Pure like `transition`: id and instant come from the
 * caller. Produces a CREATED payment at version 1 and its `payment_created` event.
 */
export const createPayment = (
  input: CreatePaymentInput,
  generated: { readonly id: PaymentId; readonly now: DateTime.Utc }
): Created => {
  const payment = new Payment({
    id: generated.id,
    merchant_id: input.merchant_id,
    amount_minor: input.amount_minor,
    currency: input.currency,
    payment_method: input.payment_method,
    description: input.description ?? null,
    metadata: input.metadata ?? {},
    status: "CREATED",
    failure_code: null,
    failure_message: null,
    captured_amount_minor: null,
    authorization_expires_at: null,
    version: 1,
    created_at: generated.now,
    updated_at: generated.now
  })
  const event = PaymentCreated.make({ ...eventCommon(payment), status: "CREATED" })
  return { payment, event }
}
