import { Acquirer, type AcquirerError, type AcquirerOutcome, type Declined } from "@pay/acquirer"
import {
  type AmountMinor,
  AUTHORIZATION_TTL_MS_DEFAULT,
  AuthorizationExpired,
  authorizationLifetimeBounds,
  AuthorizationRaceDecline,
  isAuthorizationExpired,
  CaptureExceedsAuthorized,
  commandTarget,
  InvalidTransition,
  type MerchantId,
  type Payment,
  type PaymentCommand,
  PaymentId,
  PaymentNotFound,
  ruleFor
} from "@pay/domain"
import type { Execution } from "@pay/idempotency"
import { isWithin } from "@pay/infra"
import { type FeeSchedule, SettlementPosting } from "@pay/settlement"
import { Context, DateTime, Effect, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { makeAuthorizationExclusion } from "./CancelBeforeAuthorization.ts"
import type { ChangeContext } from "./ChangeContext.ts"
import { acquirerReference, lockWaitUnfinished, PaymentOutcome, type PaymentRefusal, RecoveryPoint } from "./PaymentOperation.ts"
import { measureAcquirerCall } from "./PaymentMetrics.ts"
import { PaymentRepository } from "./PaymentRepository.ts"

/**
 * A transition the acquirer decides: authorize (the issuer approves or declines), settle (the
 * capture is approved, and the money moves, or declined) and cancel (the acquirer releases the
 * authorization: a void). One table row each; one function runs them all:
 *
 * 1. load the payment (a stored 404 when there is none for this merchant);
 * 2. on a fresh run, check the transition is allowed (a stored 409) and commit the recovery point
 *    BEFORE calling the acquirer, so a crash after it leaves a key that resumes right there;
 * 3. ask the acquirer, outside any database transaction, with our idempotency reference (asking
 *    again after an unknown outcome is safe);
 * 4. in ONE transaction: apply the command the answer calls for, do what an approval also does
 *    (the settlement posting), and store the rendered outcome with the key.
 */
export interface AcquirerStep {
  readonly command: "authorize" | "settle" | "cancel"
  readonly recoveryPoint: string
  /** The name of the acquirer call in the metrics. */
  readonly call: "authorize" | "capture" | "void"
  /** `amount_minor`: what is asked for (a settle's capture amount; the payment's amount otherwise). */
  readonly ask: (acquirer: Acquirer["Service"], payment: Payment, amount_minor: AmountMinor) => Effect.Effect<AcquirerOutcome, AcquirerError>
  /**
   * What a decline leads to: a command (authorize → decline, settle → fail), or, for a void, no
   * change at all: the acquirer refuses to release an authorization it has captured (a capture
   * in flight won the race), so the payment stays AUTHORIZED and the cancel is refused (409).
   */
  readonly declined: (answer: Declined) => PaymentCommand | "refuse"
}

export const acquirerSteps = {
  authorize: {
    command: "authorize",
    recoveryPoint: RecoveryPoint.authorizationRequested,
    call: "authorize",
    ask: (acquirer, payment) =>
      acquirer.authorize({
        reference: acquirerReference(payment.id, "authorization"),
        paymentId: payment.id,
        amount_minor: payment.amount_minor,
        currency: payment.currency,
        paymentMethod: payment.payment_method
      }),
    declined: (answer) => ({ _tag: "decline", failure_code: answer.code, failure_message: answer.message })
  },
  settle: {
    command: "settle",
    recoveryPoint: RecoveryPoint.captureRequested,
    call: "capture",
    ask: (acquirer, payment, amount_minor) =>
      acquirer.capture({
        reference: captureReference(payment, amount_minor),
        paymentId: payment.id,
        amount_minor,
        currency: payment.currency
      }),
    // A capture refused because the merchant's void won the race (the cancel finishes the payment:
    // CANCELED), or because another capture of the authorization was approved (another key, with
    // another amount, is finishing it): this settle is refused rather than failing the payment.
    declined: (answer) =>
      answer.code === "authorization_voided" || answer.code === "authorization_captured"
        ? "refuse"
        : { _tag: "fail", failure_code: answer.code, failure_message: answer.message }
  },
  cancel: {
    command: "cancel",
    recoveryPoint: RecoveryPoint.voidRequested,
    call: "void",
    ask: (acquirer, payment) =>
      acquirer.void({
        reference: acquirerReference(payment.id, "void"),
        paymentId: payment.id,
        amount_minor: payment.amount_minor,
        currency: payment.currency
      }),
    declined: () => "refuse"
  }
} as const satisfies Readonly<Record<AcquirerStep["command"], AcquirerStep>>

/**
 * The capture's acquirer reference: `payment:<id>:capture` for the whole amount (as before partial
 * capture existed, so keys stored then resume under the same reference), `…:capture:<amount>` for
 * a partial one. Two captures of different amounts are two references; the acquirer approves
 * at most one capture per authorization (the other is declined `authorization_captured`).
 */
const captureReference = (payment: Payment, amount_minor: AmountMinor): string =>
  amount_minor === payment.amount_minor
    ? acquirerReference(payment.id, "capture")
    : `${acquirerReference(payment.id, "capture")}:${amount_minor}`

const decodePaymentId = Schema.decodeUnknownOption(PaymentId)

/**
 * Step 2's decided refusals: the transition is not allowed, the authorization has expired (a
 * capture; the expiry job voids it at the acquirer), or a capture exceeds the authorization.
 */
export const refusalBeforeAsking = (step: AcquirerStep, payment: Payment, amount_minor: AmountMinor, now: DateTime.Utc): PaymentRefusal | undefined => {
  if (ruleFor(step.command, payment.status) === undefined) {
    return new InvalidTransition({ paymentId: payment.id, from: payment.status, to: commandTarget[step.command], command: step.command })
  }
  if (step.command === "settle" && payment.authorization_expires_at !== null && isAuthorizationExpired(payment, now)) {
    return new AuthorizationExpired({ paymentId: payment.id, expiredAt: DateTime.formatIso(payment.authorization_expires_at) })
  }
  if (amount_minor > payment.amount_minor) {
    return new CaptureExceedsAuthorized({ paymentId: payment.id, requested_minor: amount_minor, authorized_minor: payment.amount_minor })
  }
  return undefined
}

const isRaceDecline = Schema.is(AuthorizationRaceDecline)

/**
 * The refusal of a step the acquirer declined without a command ("refuse"): the payment was
 * AUTHORIZED when read, so its status allowed the step; when another request of the payment won
 * the race at the acquirer (`authorization_captured` / `authorization_voided`), the refusal says
 * so (`acquirerDecline`) rather than naming a transition the status allowed.
 */
const refusalAfterAsking = (step: AcquirerStep, payment: Payment, answer: AcquirerOutcome): InvalidTransition => {
  const refusal = { paymentId: payment.id, from: payment.status, to: commandTarget[step.command], command: step.command }
  return answer._tag === "Declined" && isRaceDecline(answer.code)
    ? new InvalidTransition({ ...refusal, acquirerDecline: answer.code })
    : new InvalidTransition(refusal)
}

/** The command the acquirer's answer calls for ("refuse": none, see `AcquirerStep.declined`). */
/** An approved authorization holds the funds until `expires_at` (now + the configured lifetime). */
const commandAfter = (step: AcquirerStep, answer: AcquirerOutcome, amount_minor: AmountMinor, expires_at: DateTime.Utc): PaymentCommand | "refuse" => {
  if (answer._tag !== "Approved") return step.declined(answer)
  if (step.command === "authorize") return { _tag: "authorize", expires_at }
  return step.command === "settle" ? { _tag: "settle", amount_minor } : { _tag: step.command }
}

/**
 * Whether `current` is exactly where `command` leads, by the same acquirer operation this key
 * asked for (performed once, another key first): the same status, and for a capture the same
 * amount captured (the amount is in the capture's reference). Not for `fail` (a declined capture):
 * FAILED is also where another amount's declined capture leads, under another reference, with its
 * own failure code (outside review).
 */
const alreadyWhereCommandLeads = (command: PaymentCommand, current: Payment): boolean =>
  command._tag !== "fail" &&
  current.status === commandTarget[command._tag] &&
  (command._tag !== "settle" || current.captured_amount_minor === command.amount_minor)

/**
 * Step 4: the command, what an approval also does, and the stored outcome, in one transaction.
 * `resumed`: this key committed its recovery point in an earlier run (a retry after a 503, or the
 * completer): when another key's request has meanwhile applied the very outcome this key's own
 * acquirer call leads to, the answer is that payment (200), as the 503 promised ("retry with the
 * same key to finish it"), not a 409 naming a transition to where the payment already is.
 */
const makeApplyAndFinish = (sql: SqlClient.SqlClient, payments: PaymentRepository["Service"], settlement: SettlementPosting["Service"]) =>
(
  merchantId: MerchantId,
  payment: Payment,
  command: PaymentCommand,
  context: ChangeContext,
  execution: Execution<PaymentOutcome>,
  feeScheduleRead: Option.Option<FeeSchedule> | undefined,
  resumed: boolean
) =>
  sql.withTransaction(
    // A settled payment's money moves in the same transaction as its status (docs/settlement.md),
    // and its fee split is written into the payment_settled event (docs/events.md). The stored
    // answer is written by the change's own statement (`finishFrom`), before a settle's posting.
    payments.applyInTransaction(
      merchantId,
      payment.id,
      command,
      context,
      (updated) => execution.finishFrom(PaymentOutcome.Transitioned({ payment: updated })),
      (settled, alongside) => settlement.post(settled, feeScheduleRead, alongside)
    ).pipe(
      Effect.map(({ answered }) => answered),
      // Someone else won the race (or the state machine refuses): a decided outcome, stored.
      Effect.catchTags({
        InvalidTransition: (error) =>
          Effect.gen(function* () {
            const current = resumed
              ? yield* payments.findById(merchantId, payment.id).pipe(Effect.catchTag("PaymentNotFound", () => Effect.succeed(undefined)))
              : undefined
            if (current === undefined || !alreadyWhereCommandLeads(command, current)) return yield* execution.finish(PaymentOutcome.Refused({ error }))
            yield* Effect.logInfo("a resumed key finds its acquirer operation applied by another key: answered with the payment").pipe(
              Effect.annotateLogs({ payment_id: current.id, command: command._tag, status: current.status })
            )
            return yield* execution.finish(PaymentOutcome.Transitioned({ payment: current }))
          }),
        CaptureExceedsAuthorized: (error) => execution.finish(PaymentOutcome.Refused({ error })),
        PaymentNotFound: (error) => execution.finish(PaymentOutcome.Refused({ error })),
        // The acquirer has acted, and the row stayed locked past the bound (or could not be
        // serialized): nothing was decided here. Stored, a 409 would be the key's final answer
        // while the capture stands at the acquirer with no posting (issue 11). Unfinished: the
        // key keeps its recovery point and the retry or the completer finishes the work once.
        ConcurrentModification: (error) => Effect.fail(lockWaitUnfinished(error))
      })
    )
  )
/**
 * A resumed authorize or cancel (its recovery point committed by an earlier run: a retry after a
 * 503, the completer, an operator's retry days later) whose payment has moved on. Asking the
 * acquirer again could create what nothing undoes once its idempotency window has passed: a new
 * hold on a payment voided, captured or declined since, a void of a captured authorization. The
 * answer is decided from the status instead (outside review): the payment, when it is where this
 * key's own call leads (authorized, or declined, under the same reference `payment:<id>:authorization`;
 * canceled); else the refusal. Undefined: ask, as before (a CREATED payment; an AUTHORIZED one for
 * a cancel; every settle: a capture cannot take a voided authorization, and its answer decides).
 */
export const decidedWithoutAsking = (step: AcquirerStep, payment: Payment): PaymentOutcome | undefined => {
  if (step.command === "settle" || payment.status === "CREATED") return undefined
  if (step.command === "cancel" && payment.status === "AUTHORIZED") return undefined
  const whereItLeads = step.command === "authorize"
    ? payment.status === "AUTHORIZED" || (payment.status === "FAILED" && payment.authorization_expires_at === null)
    : payment.status === "CANCELED"
  if (whereItLeads) return PaymentOutcome.Transitioned({ payment })
  return PaymentOutcome.Refused({
    error: new InvalidTransition({ paymentId: payment.id, from: payment.status, to: commandTarget[step.command], command: step.command })
  })
}

/** `decidedWithoutAsking`'s answer, logged and stored with the key. */
const finishWithoutAsking = (sql: SqlClient.SqlClient, execution: Execution<PaymentOutcome>, step: AcquirerStep, payment: Payment, decided: PaymentOutcome) =>
  Effect.logInfo("a resumed key finds its payment moved on: answered from its status, the acquirer not asked again").pipe(
    Effect.annotateLogs({ payment_id: payment.id, command: step.command, status: payment.status, answer: decided._tag }),
    Effect.andThen(sql.withTransaction(execution.finish(decided)))
  )

/** The payment, or None for an unknown, foreign or malformed id (the same answer for all three). */
const loadPayment = (payments: PaymentRepository["Service"], merchantId: MerchantId, rawId: string) =>
  Option.match(decodePaymentId(rawId), {
    onNone: () => Effect.succeedNone,
    onSome: (paymentId) =>
      payments.findById(merchantId, paymentId).pipe(
        Effect.map(Option.some),
        Effect.catchTag("PaymentNotFound", () => Effect.succeedNone)
      )
  })

/**
 * How long an authorization holds the funds (`AUTHORIZATION_LIFETIME_MS`, within
 * `authorizationLifetimeBounds`; the server provides it from its configuration).
 */
export const AuthorizationLifetime = Context.Reference<number>("payments/AuthorizationLifetime", {
  defaultValue: () => AUTHORIZATION_TTL_MS_DEFAULT
})

export const makeAcquirerTransition = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const payments = yield* PaymentRepository
  const acquirer = yield* Acquirer
  const applyAndFinish = makeApplyAndFinish(sql, payments, yield* SettlementPosting)
  const exclusion = yield* makeAuthorizationExclusion
  const lifetime_ms = yield* AuthorizationLifetime
  if (!isWithin(lifetime_ms, authorizationLifetimeBounds)) {
    return yield* Effect.die(new Error(`authorization lifetime ${lifetime_ms} ms outside ${authorizationLifetimeBounds.min}..${authorizationLifetimeBounds.max}`))
  }

  const refuse = (execution: Execution<PaymentOutcome>, error: PaymentRefusal) =>
    sql.withTransaction(execution.finish(PaymentOutcome.Refused({ error })))

  /** Steps 3-4: ask the acquirer (the recovery point is committed), then apply and finish. */
  const askTheAcquirer = (
    step: AcquirerStep,
    merchantId: MerchantId,
    payment: Payment,
    amount_minor: AmountMinor,
    context: ChangeContext,
    execution: Execution<PaymentOutcome>,
    /** A settle's fee schedule as the gate read it (undefined: the posting reads it). */
    feeScheduleRead?: Option.Option<FeeSchedule>,
    /** The key's recovery point was committed by an earlier run (makeApplyAndFinish). */
    resumed = false
  ) =>
    Effect.gen(function* () {
      const answer = yield* step.ask(acquirer, payment, amount_minor).pipe(measureAcquirerCall(step.call))
      const command = commandAfter(step, answer, amount_minor, DateTime.add(yield* DateTime.now, { milliseconds: lifetime_ms }))
      if (command === "refuse") return yield* refuse(execution, refusalAfterAsking(step, payment, answer))
      return yield* applyAndFinish(merchantId, payment, command, context, execution, feeScheduleRead, resumed)
    })

  /** A cancel of a payment read CREATED (CancelBeforeAuthorization.ts): no acquirer call unless it was authorized meanwhile. */
  const cancelCreated = (merchantId: MerchantId, payment: Payment, context: ChangeContext, execution: Execution<PaymentOutcome>, resumed: boolean) =>
    exclusion.cancelCreated(merchantId, payment, {
      change: (current) => applyAndFinish(merchantId, current, { _tag: "cancel" }, context, execution, undefined, resumed),
      refuse: (error) => refuse(execution, error),
      voidAuthorized: (current) => askTheAcquirer(acquirerSteps.cancel, merchantId, current, current.amount_minor, context, execution, undefined, resumed)
    })

  /** Steps 3-4, or, for a cancel of a payment read CREATED, its change without the acquirer. */
  const askAndApply = (...args: Parameters<typeof askTheAcquirer>) => {
    const [step, merchantId, payment, , context, execution, , resumed] = args
    return step.command === "cancel" && payment.status === "CREATED"
      ? cancelCreated(merchantId, payment, context, execution, resumed ?? false)
      : askTheAcquirer(...args)
  }

  /** `requested_minor`: a settle's capture amount (absent: the whole authorized amount). */
  const transition = (
    step: AcquirerStep,
    merchantId: MerchantId,
    rawId: string,
    context: ChangeContext,
    execution: Execution<PaymentOutcome>,
    requested_minor?: AmountMinor
  ) =>
    Effect.gen(function* () {
      const found = yield* loadPayment(payments, merchantId, rawId)
      if (Option.isNone(found)) return yield* refuse(execution, new PaymentNotFound({ paymentId: rawId }))
      const payment = found.value
      const amount_minor = requested_minor ?? payment.amount_minor
      const resumed = execution.record.recoveryPoint !== RecoveryPoint.started
      const decided = resumed ? decidedWithoutAsking(step, payment) : undefined
      if (decided !== undefined) return yield* finishWithoutAsking(sql, execution, step, payment, decided)
      if (!resumed) {
        const refusal = refusalBeforeAsking(step, payment, amount_minor, yield* DateTime.now)
        if (refusal !== undefined) return yield* refuse(execution, refusal)
        const moved = step.command === "authorize"
          ? yield* exclusion.requestAuthorization(merchantId, payment, execution)
          : yield* Effect.as(execution.advance(step.recoveryPoint, { payment_id: payment.id }), undefined)
        if (moved !== undefined) return yield* refuse(execution, moved)
      }
      return yield* askAndApply(step, merchantId, payment, amount_minor, context, execution, undefined, resumed)
    })

  return { transition, askAndApply }
})
