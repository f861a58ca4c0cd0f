import {
  ConcurrentModification,
  type MerchantId,
  type Payment,
  type PaymentCommand,
  type PaymentId,
  PaymentNotFound,
  transition
} from "@pay/domain"
import type { SettlementAlongside, SettlementUnavailable } from "@pay/settlement"
import { DateTime, Effect, Option, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import type { ChangeContext } from "./ChangeContext.ts"
import { countTransition } from "./PaymentMetrics.ts"
import { assertContext, decodeRows, type SettledSplit, toDate, type Trail } from "./PaymentTrail.ts"
import { paymentColumns, paymentFromRow } from "./PaymentRows.ts"

const updatedCount = decodeRows(Schema.Struct({ updated: Schema.Number }))

/** The settlement posting; it writes `alongside` (the payment_settled event) with its settlement row. */
type OnSettled = (payment: Payment, alongside: SettlementAlongside) => Effect.Effect<SettledSplit, SettlementUnavailable>

/**
 * `PaymentRepository.apply` and `applyInTransaction`: load (row lock) → transition (pure) →
 * update (version check) → history → outbox, atomically, in three statements inside the
 * transaction (four for a settle, whose posting comes between the change and its event):
 * 1. the row lock, with `lock_timeout` set by the same statement (a MATERIALIZED CTE, joined, so
 *    it is evaluated before the join's row reaches the lock);
 * 2. the update, its history row and (unless the settlement posting must come first) its outbox
 *    event, as CTEs of one statement written once per updated row;
 * 3. a settle's posting (`onSettled`), then its settlement row with its event (one statement:
 *    the event carries the fee split the posting computed).
 */
export const makeApply = (sql: SqlClient.SqlClient, trail: Trail, lockTimeout: string) => {
  const applyInOpenTransaction = (
    merchantId: MerchantId,
    paymentId: PaymentId,
    command: PaymentCommand,
    context: ChangeContext,
    onSettled: OnSettled | undefined
  ) =>
    Effect.gen(function* () {
      // The row lock serializes concurrent transitions of one payment: a second caller waits
      // here (at most lock_timeout), then reads the winner's committed status and gets a typed
      // InvalidTransition instead of a spurious failure. FOR NO KEY UPDATE is the lock an UPDATE
      // of non-key columns takes anyway; unlike FOR UPDATE it does not block rows elsewhere that
      // merely reference this payment (history, ledger) from being inserted. lock_timeout is
      // SET LOCAL (`set_config(…, true)`): this transaction only.
      const rows = yield* sql.unsafe(
        `WITH lock_bound AS MATERIALIZED (SELECT set_config('lock_timeout', $3, true) AS lock_timeout)
         SELECT ${paymentColumns} FROM payments, lock_bound
         WHERE id = $1 AND merchant_id = $2 FOR NO KEY UPDATE OF payments`,
        [paymentId, merchantId, lockTimeout]
      )
      const row = rows[0]
      if (row === undefined) return yield* new PaymentNotFound({ paymentId })
      const current = yield* paymentFromRow(row)
      const now = yield* DateTime.now
      const { payment: next, event } = yield* Effect.fromResult(transition(current, command, now))
      const settling = event.type === "payment_settled" && onSettled !== undefined
      // The version check is the second guard: with the lock it always matches, but if the
      // lock were ever dropped from the query above, two writers still could not both win.
      const [changed] = yield* updatedCount(sql`
        WITH updated AS (
          UPDATE payments
          SET status = ${next.status}, failure_code = ${next.failure_code}, failure_message = ${next.failure_message},
              captured_amount_minor = ${next.captured_amount_minor}::bigint,
              authorization_expires_at = ${next.authorization_expires_at === null ? null : toDate(next.authorization_expires_at)}::timestamptz,
              version = ${next.version}::int, updated_at = ${toDate(next.updated_at)}::timestamptz
          WHERE id = ${current.id} AND version = ${current.version}::int
          RETURNING id),
        history AS (${trail.historyFrom(next, current.status, context, "updated")})
        ${settling ? sql`` : sql`, event AS (${trail.publishFrom(event, context, "updated")})`}
        SELECT count(*)::int AS updated FROM updated`)
      if ((changed?.updated ?? 0) !== 1) return yield* new ConcurrentModification({ paymentId, reason: "version_mismatch" })
      // Counted once the change commits: a rolled-back change counts nothing.
      yield* sql.afterCommit(countTransition(next, current.status))
      if (settling) {
        // The event carries the split: written with the settlement row, in its statement (an
        // event missing at COMMIT is refused by the outbox guard, migrations/0010).
        yield* onSettled(next, (split, source) =>
          trail.publishFrom({ ...event, fee_minor: split.fee_minor, net_minor: split.net_minor }, context, source))
      }
      return next
    })

  const entry = (name: string, savepoint: boolean) =>
    Effect.fn(name)(
      function* (merchantId: MerchantId, paymentId: PaymentId, command: PaymentCommand, context: ChangeContext, onSettled?: OnSettled) {
        yield* assertContext(context)
        yield* Effect.annotateCurrentSpan({ payment_id: paymentId, merchant_id: merchantId, command: command._tag })
        const work = applyInOpenTransaction(merchantId, paymentId, command, context, onSettled)
        if (savepoint) return yield* sql.withTransaction(work)
        if (Option.isNone(yield* Effect.serviceOption(sql.transactionService))) {
          return yield* Effect.die(new Error("PaymentRepository.applyInTransaction needs the caller's transaction"))
        }
        return yield* work
      },
      (effect, _merchantId, paymentId) => Effect.mapError(effect, (error) => conflictAsTyped(error, paymentId))
    )

  return { apply: entry("PaymentRepository.apply", true), applyInTransaction: entry("PaymentRepository.applyInTransaction", false) }
}

/**
 * Database conflicts between concurrent transactions become the typed, retryable
 * `ConcurrentModification`; every other SQL error stays a `SqlError` (an outage, not a conflict).
 * Serialization failures happen when a caller runs `apply` inside a REPEATABLE READ or
 * SERIALIZABLE transaction that started before a concurrent transition committed.
 */
const conflictAsTyped = <E>(error: E | SqlError, paymentId: PaymentId): E | SqlError | ConcurrentModification => {
  if (!isSqlError(error)) return error
  switch (error.reason._tag) {
    case "SerializationError":
      return new ConcurrentModification({ paymentId, reason: "serialization_failure" })
    case "DeadlockError":
      return new ConcurrentModification({ paymentId, reason: "deadlock" })
    case "LockTimeoutError":
      return new ConcurrentModification({ paymentId, reason: "lock_timeout" })
    default:
      return error
  }
}
