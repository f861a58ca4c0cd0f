import { type AmountMinor, type MerchantId, type Payment, PaymentId, PaymentLocked, paymentStatuses, ruleFor } from "@pay/domain"
import type { GatedStart } from "@pay/idempotency"
import { DateTime, Effect, Option, Schema } from "effect"
import type { FeeSchedule } from "@pay/settlement"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { type AcquirerStep, refusalBeforeAsking } from "./AcquirerTransition.ts"
import { PaymentRepository } from "./PaymentRepository.ts"
import { paymentColumns, paymentFromRow } from "./PaymentRows.ts"

/** What the gate's statement read: the payment as it was, and the amount the step asks for. */
export interface GatedPayment {
  readonly payment: Payment
  readonly amount_minor: AmountMinor
  /**
   * A settle's fee schedule row for the payment's merchant and currency, read by the same
   * statement (None: no row, the platform default applies), so the settle's transaction does not
   * read it again; undefined for the other steps.
   */
  readonly feeScheduleRead?: Option.Option<FeeSchedule>
}

const FeeColumns = Schema.Struct({ fee_bps: Schema.NullOr(Schema.Int), fee_fixed_minor: Schema.NullOr(Schema.BigInt) })
const decodeFee = Schema.decodeUnknownEffect(FeeColumns)

/** The fee row the settle gate joined (both columns NULL: no row; the table's CHECKs fix the rest). */
const feeScheduleOf = (row: unknown) =>
  decodeFee(row).pipe(
    Effect.orDie,
    Effect.map(({ fee_bps, fee_fixed_minor }): Option.Option<FeeSchedule> =>
      fee_bps === null || fee_fixed_minor === null ? Option.none() : Option.some({ fee_bps, fee_fixed_minor })
    )
  )

const GateColumns = Schema.Struct({
  gate_id: Schema.NullOr(Schema.String),
  gate_lock_expires_at: Schema.NullOr(Schema.Date),
  gate_created_at: Schema.NullOr(Schema.Date)
})
const decodeGate = Schema.decodeUnknownEffect(GateColumns)
const decodePaymentId = Schema.decodeUnknownOption(PaymentId)
const statusPattern = /^[A-Z_]+$/

/** The statuses a step may start from, as a SQL list (constants of the state machine). */
const allowedFrom = (step: AcquirerStep): string => {
  const allowed = paymentStatuses.filter((status) => ruleFor(step.command, status) !== undefined)
  if (allowed.length === 0 || !allowed.every((status) => statusPattern.test(status))) {
    throw new Error(`no status ${step.command} may start from, or a malformed one: ${allowed.join(",")}`)
  }
  return allowed.map((status) => `'${status}'`).join(", ")
}

/**
 * A wait for the payment's row lock past the bound, before anything was written or asked:
 * `PaymentLocked` (503, nothing done; the same key goes on once the holder lets go).
 */
const lockedOut = <A>(paymentId: PaymentId, statement: Effect.Effect<A, SqlError>) =>
  statement.pipe(
    Effect.catchIf(
      (error) => error.reason._tag === "LockTimeoutError",
      () => Effect.fail(new PaymentLocked({ paymentId, reason: "lock_timeout" }))
    )
  )

/**
 * Steps 1-2 of an acquirer transition (AcquirerTransition.ts) in ONE autocommitted statement, for
 * `IdempotencyKeys.runGated`: read the payment and, when the step may go ahead, insert the key
 * leased at the step's recovery point. "May go ahead" is `refusalBeforeAsking` in SQL: the status
 * allows the command, the amount is within the authorization, a capture's authorization has not
 * expired (at the same instant, to the millisecond, as the code's check). Anything else (no such
 * payment, a refusal, the key exists) writes nothing and answers None: `run` then decides, and
 * stores the refusal, as before. The code's check runs again on what was read: a disagreement is a
 * bug in one of the two, and dies loudly. An authorize reads the payment FOR SHARE: a cancel
 * before authorization that is in progress is waited for and its CANCELED read, one that comes
 * after waits for this key and sees it (CancelBeforeAuthorization.ts, migrations/0078).
 */
export const makeAcquirerGate = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const payments = yield* PaymentRepository
  return (step: AcquirerStep, merchantId: MerchantId, rawId: string, requested_minor?: AmountMinor): GatedStart<GatedPayment, SqlError | PaymentLocked, never> =>
    (gate) =>
      Effect.gen(function* () {
        const paymentId = decodePaymentId(rawId)
        if (Option.isNone(paymentId)) return Option.none()
        const now = yield* DateTime.now
        const data = { payment_id: paymentId.value }
        // A settle's fee schedule is read here, not in its transaction (one round trip less).
        const settles = step.command === "settle"
        // An authorize reads the payment FOR SHARE, waiting at most the payments' lock bound
        // (set by the statement itself, as the repository's row lock does).
        const authorizes = step.command === "authorize"
        const rows = yield* lockedOut(paymentId.value, sql`
          WITH ${authorizes ? sql`lock_bound AS MATERIALIZED (SELECT set_config('lock_timeout', ${payments.lockTimeout}, true) AS lock_timeout),` : sql``}
          p AS (SELECT ${sql.literal(paymentColumns)} FROM payments ${authorizes ? sql`, lock_bound` : sql``}
                WHERE id = ${paymentId.value} AND merchant_id = ${merchantId} ${authorizes ? sql`FOR SHARE OF payments` : sql``}),
          allowed AS (
            SELECT 1 FROM p
            WHERE p.status IN (${sql.literal(allowedFrom(step))})
              AND COALESCE(${requested_minor ?? null}::bigint, p.amount_minor) <= p.amount_minor
              AND (${step.command !== "settle"}::boolean OR p.authorization_expires_at IS NULL
                   OR date_trunc('milliseconds', p.authorization_expires_at) > ${DateTime.toDateUtc(now)}::timestamptz)),
          gate AS (${gate.insertLeasedFrom("allowed", step.recoveryPoint, data)})
          SELECT p.*, gate.id AS gate_id, gate.lock_expires_at AS gate_lock_expires_at, gate.created_at AS gate_created_at
                 ${settles ? sql`, f.fee_bps, f.fee_fixed_minor` : sql``}
          FROM p LEFT JOIN gate ON true
          ${settles ? sql`LEFT JOIN merchant_fee_schedules f ON f.merchant_id = p.merchant_id AND f.currency = p.currency` : sql``}`)
        const row = rows[0]
        if (row === undefined) return Option.none()
        const payment = yield* paymentFromRow(row)
        const written = yield* decodeGate(row).pipe(Effect.orDie)
        if (written.gate_id === null || written.gate_lock_expires_at === null || written.gate_created_at === null) return Option.none()
        const amount_minor = requested_minor ?? payment.amount_minor
        const refusal = refusalBeforeAsking(step, payment, amount_minor, now)
        if (refusal !== undefined) {
          return yield* Effect.die(new Error(`the gate of ${step.command} let ${payment.id} through, the code refuses: ${refusal.message}`))
        }
        const record = gate.recordOf(
          { id: written.gate_id, lock_expires_at: written.gate_lock_expires_at, created_at: written.gate_created_at },
          step.recoveryPoint,
          data
        )
        const payload: GatedPayment = settles ? { payment, amount_minor, feeScheduleRead: yield* feeScheduleOf(row) } : { payment, amount_minor }
        return Option.some({ record, payload })
      }).pipe(Effect.withSpan("AcquirerGate.start", { attributes: { command: step.command, merchant_id: merchantId } }))
})
