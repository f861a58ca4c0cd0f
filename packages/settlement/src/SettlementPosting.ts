import { CodedError, type Payment } from "@pay/domain"
import { sqlFailureKind } from "@pay/infra"
import { type AccountSpec, Ledger, type Leg, type PostingAlongside, postedCte } from "@pay/ledger"
import { Context, Effect, Layer, type Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { acquirerReceivable, merchantPayable, platformFees, settlementReference } from "./Accounts.ts"
import { computeFee, type FeeSchedule, type FeeSplit } from "./Fees.ts"
import { FeeSchedules } from "./FeeSchedules.ts"

/**
 * The ledger (or the database under it) did not complete the posting. Nothing was committed:
 * the settle transaction rolls back whole, and a retry with the same Idempotency-Key resumes.
 */
export class SettlementUnavailable extends CodedError<SettlementUnavailable>()(
  "settlement_unavailable",
  "SettlementUnavailable",
  { paymentId: Schema.String, reason: Schema.String },
  (e) => `settlement of ${e.paymentId} did not complete: ${e.reason}`
) {}

/**
 * A failed statement of a settlement or refund posting: SettlementUnavailable (503, retry with the
 * same key) only when the database did not complete it (`@pay/infra` SqlFailure.ts); a write it
 * refused (a constraint or a guard trigger) is a defect, which the HTTP edge answers 500
 * `invariant_violation` by its SQLSTATE: the code's own check missed it, so it is a bug, not an
 * outage. The transaction rolls back whole either way.
 */
export const unavailableOrDefect = (paymentId: string) => (error: SqlError): Effect.Effect<never, SettlementUnavailable> =>
  sqlFailureKind(error) === "unavailable"
    ? Effect.fail(new SettlementUnavailable({ paymentId, reason: error.message }))
    : Effect.die(error)

/**
 * The `payment_settlements` row, as CTEs of the posting's own statement (`Ledger.postTransactionWith`):
 * inserted from the posting's row when it was posted (a replayed posting inserts none, and the
 * settle dies), with the caller's `alongside` writes (the event) from the row it inserted.
 */
const settlementRowAlongside = (
  sql: SqlClient.SqlClient,
  payment: Payment,
  split: FeeSplit,
  schedule: FeeSchedule,
  alongside: SettlementAlongside | undefined
): PostingAlongside => {
  const settlement = sql`
    settlement AS (
      INSERT INTO payment_settlements
        (payment_id, ledger_transaction_id, currency, gross_minor, fee_minor, net_minor, fee_bps, fee_fixed_minor)
      SELECT ${payment.id}, p.transaction_id, ${payment.currency}, ${split.gross_minor}, ${split.fee_minor},
             ${split.net_minor}, ${schedule.fee_bps}, ${schedule.fee_fixed_minor}
      FROM ${sql.literal(postedCte)} p WHERE p.outcome = 'posted'
      RETURNING payment_id)`
  return {
    ctes: alongside === undefined ? settlement : sql`${settlement}, alongside AS (${alongside(split, "settlement")})`,
    counted: "settlement"
  }
}

/** Bound on the account codes a process remembers as existing. */
const knownAccounts_max = 10_000

export interface SettlementRecord extends FeeSplit {
  readonly ledger_transaction_id: bigint
}

/**
 * What the caller writes in the settlement row's own statement, once per row of the CTE `source`
 * (the settlement row just inserted): the `payment_settled` event, which needs the split.
 */
export type SettlementAlongside = (split: FeeSplit, source: string) => Fragment

/**
 * What a settlement does to the money, inside the settle transaction (after the status change,
 * before the stored response): one balanced ledger transaction and one `payment_settlements`
 * row. Must run inside the caller's `sql.withTransaction` — the status change, its history, the
 * posting and the settlement row commit together or not at all.
 */
export class SettlementPosting extends Context.Service<SettlementPosting, {
  /**
   * `feeScheduleRead`: the merchant's schedule for the payment's currency as the caller's own
   * statement already read it (None: no row, the default applies), which saves the read here; a
   * settle's gate reads it (AcquirerGate.ts). Absent: read now.
   */
  readonly post: (
    payment: Payment,
    feeScheduleRead?: Option.Option<FeeSchedule>,
    /** Written in the same statement as the settlement row (one round trip less than after it). */
    alongside?: SettlementAlongside
  ) => Effect.Effect<SettlementRecord, SettlementUnavailable>
}>()("settlement/SettlementPosting") {
  static readonly layer = Layer.effect(
    SettlementPosting,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const ledger = yield* Ledger
      const fees = yield* FeeSchedules
      // Accounts are append-only (never updated or deleted: migrations/0002): once one is known to
      // exist as specified, asking again (an INSERT … ON CONFLICT and a SELECT, per account, per
      // settle) learns nothing. Known only once the transaction that saw it commits (a rolled-back
      // creation is not known); bounded (a full set is cleared and learnt again).
      const known = new Set<string>()
      const ensureAccounts = (specs: readonly [AccountSpec, AccountSpec, AccountSpec]) =>
        Effect.gen(function* () {
          const codes = [specs[0].code, specs[1].code, specs[2].code] as const
          if (codes.every((code) => known.has(code))) return codes
          yield* Effect.all(specs.map((spec) => ledger.ensureAccount(spec)))
          yield* sql.afterCommit(Effect.sync(() => {
            if (known.size + codes.length > knownAccounts_max) known.clear()
            for (const code of codes) known.add(code)
          }))
          return codes
        })

      const post = Effect.fn("SettlementPosting.post")(function* (
        payment: Payment,
        feeScheduleRead?: Option.Option<FeeSchedule>,
        alongside?: SettlementAlongside
      ) {
        const currency = payment.currency
        const schedule = feeScheduleRead === undefined
          ? yield* fees.get(payment.merchant_id, currency)
          : yield* fees.resolve(feeScheduleRead, currency)
        // What was captured (partial capture, issue 19): the fee is on it, and only it moves.
        const captured_minor = payment.captured_amount_minor
        if (captured_minor === null) {
          return yield* Effect.die(new Error(`settlement of ${payment.id}: the payment is ${payment.status} with no captured amount`))
        }
        const split = computeFee(captured_minor, schedule)
        const [receivable, payable, revenue] = yield* ensureAccounts([
          acquirerReceivable(currency),
          merchantPayable(payment.merchant_id, currency),
          platformFees(currency)
        ])
        const leg = (account: string, amount_minor: bigint): ReadonlyArray<Leg> =>
          amount_minor > 0n ? [{ account, amount_minor, currency }] : []
        // No savepoint: any failure here fails the settle's whole transaction (SettlementUnavailable
        // or a defect), so there is nothing to keep usable after a refused posting. The settlement
        // row and its event go in the posting's own statement (one round trip fewer, and one
        // fewer while the posting holds the shared balance rows: docs/performance.md).
        const { result: posted, alongsideRows } = yield* ledger.postTransactionWith({
          reference: settlementReference(payment.id),
          description: `settlement of ${payment.id} (fee ${schedule.fee_bps} bps + ${schedule.fee_fixed_minor})`,
          debits: leg(receivable, split.gross_minor),
          credits: [...leg(payable, split.net_minor), ...leg(revenue, split.fee_minor)]
        }, settlementRowAlongside(sql, payment, split, schedule, alongside))
        if (posted.replayed) {
          // The state machine lets a payment settle once; a second posting means a bug upstream.
          return yield* Effect.die(new Error(`settlement of ${payment.id} was already posted (ledger transaction ${posted.transaction.id})`))
        }
        if (alongsideRows !== 1) return yield* Effect.die(new Error(`settlement of ${payment.id}: the settlement row was not written`))
        return { ...split, ledger_transaction_id: posted.transaction.id } satisfies SettlementRecord
      }, (effect, payment) =>
        effect.pipe(
          // One decision per error: the database did not answer (typed, 503, retry) or the code
          // computed a wrong posting (unbalanced, unknown account, a refused settlement row, …: a
          // defect, loud, and the whole transaction rolls back). A `catchTags` followed by a
          // catch-all would turn the SettlementUnavailable it just made into a defect too.
          Effect.catch((error) =>
            error._tag === "LedgerUnavailable"
              ? Effect.fail(new SettlementUnavailable({ paymentId: payment.id, reason: error.message }))
              : error._tag === "SqlError"
              ? unavailableOrDefect(payment.id)(error)
              : Effect.die(error)
          )
        ))

      return SettlementPosting.of({ post })
    })
  )
}
