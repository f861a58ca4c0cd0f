import {
  AuthorizationInProgress,
  commandTarget,
  ConcurrentModification as ConcurrentModificationClass,
  type ConcurrentModification,
  InvalidTransition,
  type MerchantId,
  type Payment,
  type PaymentLocked,
  type PaymentNotFound
} from "@pay/domain"
import type { Execution, IdempotencyLockLost } from "@pay/idempotency"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { lockWaitUnfinished, type PaymentOutcome, type PaymentRefusal, RecoveryPoint } from "./PaymentOperation.ts"
import { PaymentRepository } from "./PaymentRepository.ts"
import { decodeRows } from "./PaymentTrail.ts"

const inFlightRows = decodeRows(Schema.Struct({ id: Schema.String }))

/** `PaymentLocked` for the row lock's lost wait, before anything was written or asked (`lockWaitUnfinished`). */
const unfinishedOnLockWait = <A, E>(effect: Effect.Effect<A, E | ConcurrentModification>) =>
  effect.pipe(
    Effect.catchIf(
      (error): error is ConcurrentModification => error instanceof ConcurrentModificationClass,
      (error) => Effect.fail(lockWaitUnfinished(error))
    )
  )

/** What the cancel needs of its caller (AcquirerTransition.ts), each ending in the key's answer. */
export interface CancelCreatedSteps<A, E> {
  /** The change (CREATED → CANCELED, or the refusal of the status it finds) and its stored answer. */
  readonly change: (current: Payment) => Effect.Effect<A, E>
  /** A refusal decided before anything was written (the authorization in flight), stored. */
  readonly refuse: (error: PaymentNotFound | AuthorizationInProgress) => Effect.Effect<A, E>
  /** The void of a payment whose authorization finished between the read and the lock. */
  readonly voidAuthorized: (current: Payment) => Effect.Effect<A, E>
}

/**
 * The two sides of one exclusion (docs/payments.md, "Cancel before authorization"): a CREATED
 * payment is canceled without the acquirer (nothing was reserved at the issuer), and an
 * authorization in flight (an authorize's key committed at `authorization_requested`, its answer
 * not in yet) must never be overtaken by it: its approval would leave the funds held behind a
 * CANCELED payment. Both serialize on the payment's row lock; the authorize's gate takes it FOR
 * SHARE in the statement that commits its key (AcquirerGate.ts). The database refuses the same two
 * ways against raw SQL (migrations/0078).
 */
export const makeAuthorizationExclusion = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const payments = yield* PaymentRepository

  /** The unfinished authorize key of the payment, if any: the index `idempotency_keys_authorization_in_flight`. */
  const authorizationInFlight = (payment: Payment) =>
    inFlightRows(sql`
      SELECT id FROM idempotency_keys
      WHERE recovery_data ->> 'payment_id' = ${payment.id} AND finished_at IS NULL
        AND recovery_point = ${RecoveryPoint.authorizationRequested}
      LIMIT 1`)

  /**
   * In ONE transaction: the row lock; moved on (authorized, declined, canceled by another key since
   * it was read) → `Moved`, nothing written; an authorization in flight → `Refused` with
   * `AuthorizationInProgress` (nothing written: the caller stores it, a final answer for this key,
   * so no cancel is left pending to take effect after the authorization the merchant then sees);
   * else `change` (the transition, its history row, `payment_canceled`, the stored answer).
   */
  const lockedCancel = <A, E>(merchantId: MerchantId, payment: Payment, change: (current: Payment) => Effect.Effect<A, E>) =>
    sql.withTransaction(
      Effect.gen(function* () {
        const locked = yield* payments.lockForChange(merchantId, payment.id).pipe(
          unfinishedOnLockWait,
          Effect.map((current) => ({ _tag: "Locked", current }) as const),
          Effect.catchTag("PaymentNotFound", (error) => Effect.succeed({ _tag: "Refused", error } as const))
        )
        if (locked._tag === "Refused") return locked
        const current = locked.current
        if (current.status !== "CREATED") return { _tag: "Moved", payment: current } as const
        const [inFlight] = yield* authorizationInFlight(current)
        if (inFlight !== undefined) {
          yield* Effect.logInfo("cancel refused: the payment's authorization is in flight").pipe(
            Effect.annotateLogs({ payment_id: current.id, idempotency_key_id: inFlight.id })
          )
          return { _tag: "Refused", error: new AuthorizationInProgress({ paymentId: current.id }) } as const
        }
        return { _tag: "Done", value: yield* change(current) } as const
      })
    )

  /**
   * The cancel of a payment read CREATED. When it moved on before the lock: AUTHORIZED is voided
   * like any authorized payment; any other status is the change's own refusal (a stored 409, or,
   * for a resumed key, the payment it already canceled).
   */
  const cancelCreated = <A, E>(merchantId: MerchantId, payment: Payment, steps: CancelCreatedSteps<A, E>) =>
    Effect.gen(function* () {
      const result = yield* lockedCancel(merchantId, payment, steps.change)
      switch (result._tag) {
        case "Done":
          return result.value
        case "Refused":
          return yield* steps.refuse(result.error)
        case "Moved":
          return yield* (result.payment.status === "AUTHORIZED" ? steps.voidAuthorized(result.payment) : steps.change(result.payment))
      }
    }).pipe(Effect.withSpan("CancelBeforeAuthorization", { attributes: { payment_id: payment.id, merchant_id: merchantId } }))

  /**
   * The other side, for an authorize without the gate: its recovery point committed under the row
   * lock, the status read again. A cancel that committed since the payment was read is seen (the
   * refusal, stored by the caller; undefined when the point was committed), one in progress waited for.
   */
  const requestAuthorization = (merchantId: MerchantId, payment: Payment, execution: Execution<PaymentOutcome>) =>
    sql.withTransaction(Effect.gen(function* (): Effect.fn.Return<PaymentRefusal | undefined, IdempotencyLockLost | PaymentNotFound | PaymentLocked | SqlError> {
      const current = yield* payments.lockForChange(merchantId, payment.id).pipe(unfinishedOnLockWait)
      if (current.status !== "CREATED") {
        return new InvalidTransition({ paymentId: current.id, from: current.status, to: commandTarget.authorize, command: "authorize" })
      }
      yield* execution.advance(RecoveryPoint.authorizationRequested, { payment_id: payment.id })
      return undefined
    })).pipe(Effect.catchTag("PaymentNotFound", (error): Effect.Effect<PaymentRefusal> => Effect.succeed(error)))

  return { cancelCreated, requestAuthorization }
})
