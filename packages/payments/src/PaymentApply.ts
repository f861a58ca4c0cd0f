import {
  ConcurrentModification,
  type MerchantId,
  type Payment,
  type PaymentCommand,
  type PaymentId,
  PaymentNotFound,
  transition
} from "@pay/domain"
import type { SettlementUnavailable } from "@pay/settlement"
import { DateTime, Effect, Option, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import { isSqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import type { ChangeContext } from "./ChangeContext.ts"
import { countTransition } from "./PaymentMetrics.ts"
import { type AnswerFrom, assertContext, decodeRows, type OnSettled, toDate, type Trail } from "./PaymentTrail.ts"
import { paymentColumns, paymentFromRow } from "./PaymentRows.ts"

const changedRows = decodeRows(Schema.Struct({ updated: Schema.Number, answered: Schema.Number }))

/** Whose payment, which command, in which context. */
interface Target {
  readonly merchantId: MerchantId
  readonly paymentId: PaymentId
  readonly command: PaymentCommand
  readonly context: ChangeContext
}

/** The caller's answer written with the change (applyInTransaction), or none (apply). */
type Reply<F, E> = ReturnType<AnswerFrom<F, E>>

/** The row lock; its row, or PaymentNotFound. */
const makeLockRow = (sql: SqlClient.SqlClient, lockTimeout: string) => (merchantId: MerchantId, paymentId: PaymentId) =>
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
    return yield* paymentFromRow(row)
  })

/**
 * The change's one statement. The version check is the second guard: with the lock it always
 * matches, but if the lock were ever dropped, two writers still could not both win. The answer
 * is written only when the update wrote its row.
 */
const makeChange = (sql: SqlClient.SqlClient, trail: Trail) =>
(current: Payment, next: Payment, event: Fragment | undefined, context: ChangeContext, reply: Fragment | undefined) =>
  changedRows(sql`
    WITH updated AS (
      UPDATE payments
      SET status = ${next.status}, failure_code = ${next.failure_code}, failure_message = ${next.failure_message},
          captured_amount_minor = ${next.captured_amount_minor}::bigint,
          -- Set by the authorization and kept as stored after it: written back from a JavaScript Date
          -- (milliseconds), a stored value with microseconds (a raw write) read as a change, which
          -- the database refuses (0049), and the payment could never settle (outside re-test).
          authorization_expires_at = coalesce(authorization_expires_at, ${next.authorization_expires_at === null ? null : toDate(next.authorization_expires_at)}::timestamptz),
          version = ${next.version}::int, updated_at = ${toDate(next.updated_at)}::timestamptz
      WHERE id = ${current.id} AND version = ${current.version}::int
      RETURNING id),
    history AS (${trail.historyFrom(next, current.status, context, "updated")})
    ${event === undefined ? sql`` : sql`, event AS (${event})`}
    ${reply === undefined ? sql`` : sql`, answered AS (${reply})`}
    SELECT count(*)::int AS updated, ${reply === undefined ? sql`0` : sql`(SELECT count(*) FROM answered)`}::int AS answered
    FROM updated`)

/**
 * `PaymentRepository.apply` and `applyInTransaction`: load (row lock) → transition (pure) →
 * update (version check) → history → outbox, atomically, in two statements inside the
 * transaction (three for a settle, whose posting comes between the change and its event):
 * 1. the row lock, with `lock_timeout` set by the same statement (a MATERIALIZED CTE, joined, so
 *    it is evaluated before the join's row reaches the lock);
 * 2. the update, its history row, (unless the settlement posting must come first) its outbox
 *    event and (applyInTransaction) the caller's stored answer, as CTEs of one statement written
 *    once per updated row;
 * 3. a settle's posting (`onSettled`), with its settlement row and its event in the same
 *    statement (the event carries the fee split the posting computed).
 */
export const makeApply = (sql: SqlClient.SqlClient, trail: Trail, lockTimeout: string) => {
  const lockRow = makeLockRow(sql, lockTimeout)
  const change = makeChange(sql, trail)

  const applyInOpenTransaction = <F, EA, ES>(
    { command, context, merchantId, paymentId }: Target,
    onSettled: OnSettled<ES> | undefined,
    answer: AnswerFrom<F, EA> | undefined
  ) =>
    Effect.gen(function* () {
      const current = yield* lockRow(merchantId, paymentId)
      const now = yield* DateTime.now
      const { payment: next, event } = yield* Effect.fromResult(transition(current, command, now))
      const settling = event.type === "payment_settled" && onSettled !== undefined
      const reply: Reply<F, EA> | undefined = answer?.(next)
      const published = settling ? undefined : trail.publishFrom(event, context, "updated")
      const [changed] = yield* change(current, next, published, context, reply?.statement("updated"))
      if ((changed?.updated ?? 0) !== 1) return yield* new ConcurrentModification({ paymentId, reason: "version_mismatch" })
      const answered = reply === undefined ? undefined : yield* reply.confirm(changed?.answered ?? 0)
      // Counted once the change commits: a rolled-back change counts nothing.
      yield* sql.afterCommit(countTransition(next, current.status))
      if (settling) {
        // The event carries the split: written with the settlement row, in its statement (an
        // event missing at COMMIT is refused by the outbox guard, migrations/0010).
        yield* onSettled(next, (split, source) =>
          trail.publishFrom({ ...event, fee_minor: split.fee_minor, net_minor: split.net_minor }, context, source))
      }
      return { payment: next, answered }
    })

  const entry = <F, EA, ES>(name: string, savepoint: boolean, target: Target, onSettled: OnSettled<ES> | undefined, answer: AnswerFrom<F, EA> | undefined) =>
    Effect.gen(function* () {
      yield* assertContext(target.context)
      yield* Effect.annotateCurrentSpan({ payment_id: target.paymentId, merchant_id: target.merchantId, command: target.command._tag })
      const work = applyInOpenTransaction(target, onSettled, answer)
      if (savepoint) return yield* sql.withTransaction(work)
      if (Option.isNone(yield* Effect.serviceOption(sql.transactionService))) {
        return yield* Effect.die(new Error("PaymentRepository.applyInTransaction needs the caller's transaction"))
      }
      return yield* work
    }).pipe(
      Effect.mapError((error) => conflictAsTyped(error, target.paymentId)),
      Effect.withSpan(name)
    )

  return {
    lockForChange: (merchantId: MerchantId, paymentId: PaymentId) =>
      Effect.gen(function* () {
        if (Option.isNone(yield* Effect.serviceOption(sql.transactionService))) {
          return yield* Effect.die(new Error("PaymentRepository.lockForChange needs the caller's transaction"))
        }
        return yield* lockRow(merchantId, paymentId)
      }).pipe(Effect.mapError((error) => conflictAsTyped(error, paymentId)), Effect.withSpan("PaymentRepository.lockForChange")),
    apply: (merchantId: MerchantId, paymentId: PaymentId, command: PaymentCommand, context: ChangeContext, onSettled?: OnSettled<SettlementUnavailable>) =>
      entry<never, never, SettlementUnavailable>("PaymentRepository.apply", true, { merchantId, paymentId, command, context }, onSettled, undefined)
        .pipe(Effect.map(({ payment }) => payment)),
    applyInTransaction: <F, EA, ES = never>(
      merchantId: MerchantId,
      paymentId: PaymentId,
      command: PaymentCommand,
      context: ChangeContext,
      answer: AnswerFrom<F, EA>,
      onSettled?: OnSettled<ES>
    ) =>
      entry("PaymentRepository.applyInTransaction", false, { merchantId, paymentId, command, context }, onSettled, answer).pipe(
        Effect.flatMap(({ payment, answered }) =>
          answered === undefined ? Effect.die(new Error("applyInTransaction: the answer was not written")) : Effect.succeed({ payment, answered })
        )
      )
  }
}

/**
 * Database conflicts between concurrent transactions become the typed, retryable
 * `ConcurrentModification`; every other SQL error stays a `SqlError` (an outage, not a conflict).
 * Serialization failures happen when a caller runs `apply` inside a REPEATABLE READ or
 * SERIALIZABLE transaction that started before a concurrent transition committed.
 */
const conflictAsTyped = <E>(error: E, paymentId: PaymentId): E | ConcurrentModification => {
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
