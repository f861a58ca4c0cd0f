import {
  type CaptureExceedsAuthorized,
  ConcurrentModification,
  type Created,
  type CreatePaymentInput,
  createPayment,
  encodePaymentEvent,
  generatePaymentId,
  InvalidCursor,
  type InvalidTransition,
  MerchantNotFound,
  type MerchantId,
  PAGE_LIMIT_DEFAULT,
  PAGE_LIMIT_MAX,
  PAGE_LIMIT_MIN,
  type PageLimit,
  type Payment,
  PAYMENT_EVENT_SCHEMA_VERSION,
  type PaymentCommand,
  type PaymentEvent,
  type PaymentId,
  PaymentNotFound,
  type PaymentStatus,
  transition
} from "@pay/domain"
import { assertWithin } from "@pay/infra"
import { OutboxWriter } from "@pay/outbox"
import type { SettlementUnavailable } from "@pay/settlement"
import { Context, DateTime, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import { type ChangeContext, isChangeContext } from "./ChangeContext.ts"
import { countTransition } from "./PaymentMetrics.ts"
import { paymentColumns, paymentFromRow } from "./PaymentRows.ts"

export interface PaymentRepositoryOptions {
  /**
   * Upper bound on how long a transition waits for another transaction's lock on the same
   * payment. Waiting is the point of the row lock (concurrent transitions serialize instead of
   * failing), but never unboundedly: past this the call fails with `ConcurrentModification`
   * (`lock_timeout`, retryable). Applied with `SET LOCAL`, i.e. for the rest of the enclosing
   * transaction (a caller's outer transaction included).
   */
  readonly lockTimeout_ms: number
}

/** Production default: long enough to queue behind a settlement batch, short enough for an HTTP request. */
export const PAYMENT_LOCK_TIMEOUT_MS_DEFAULT = 5_000

/** The bound `lockTimeout_ms` must respect. */
export const paymentLockTimeoutBounds = { min: 1, max: 60_000 } as const

export interface ListPaymentsOptions {
  /** 1..100, default 10. */
  readonly limit?: PageLimit | undefined
  /** Cursor: the id of the last payment of the previous page. */
  readonly startingAfter?: PaymentId | undefined
}

export interface PaymentPage {
  /** Newest first (created_at DESC, id DESC). */
  readonly data: ReadonlyArray<Payment>
  readonly hasMore: boolean
}

/** What the settlement posted: the event carries it. */
export interface SettledSplit {
  readonly fee_minor: bigint
  readonly net_minor: bigint
}

export type ApplyError =
  | PaymentNotFound
  | InvalidTransition
  | CaptureExceedsAuthorized
  | ConcurrentModification
  | SqlError

/**
 * Payments in Postgres. Every write runs in `sql.withTransaction` together with its status-history
 * row and its outbox event, so a change, its audit and its event commit or vanish together.
 *
 * Composable: when a caller already has a transaction open (settlement posting to the ledger,
 * idempotency storing the response), `withTransaction` here becomes a SAVEPOINT inside it and
 * the caller's COMMIT decides for everything.
 */
export class PaymentRepository extends Context.Service<PaymentRepository, {
  readonly create: (input: CreatePaymentInput, context: ChangeContext) => Effect.Effect<Payment, MerchantNotFound | SqlError>
  /** The new payment and its event, not yet written (ids and clock drawn here). */
  readonly prepareCreate: (input: CreatePaymentInput) => Effect.Effect<Created>
  /**
   * Writes a prepared payment, its history row and its outbox event in ONE autocommitted
   * statement whose first CTE is `gate` (the idempotency key's INSERT): they are written only for
   * the row the gate returns. True when written, false when the gate returned none (nothing written).
   */
  readonly createGated: (gate: Fragment, created: Created, context: ChangeContext) => Effect.Effect<boolean, SqlError>
  /** `PaymentNotFound` both for an unknown id and for another merchant's payment. */
  readonly findById: (merchantId: MerchantId, paymentId: PaymentId) => Effect.Effect<Payment, PaymentNotFound | SqlError>
  /** Load (row lock) → transition (pure) → update (version check) → history → outbox, atomically. */
  readonly apply: (
    merchantId: MerchantId,
    paymentId: PaymentId,
    command: PaymentCommand,
    context: ChangeContext,
    /**
     * Runs after the status change and before the event is written, in the same transaction,
     * when the payment became SETTLED: the settlement posting. Its fee split goes into the
     * `payment_settled` event (fee_minor, net_minor), so consumers never read the ledger.
     */
    onSettled?: (payment: Payment) => Effect.Effect<SettledSplit, SettlementUnavailable>
  ) => Effect.Effect<Payment, ApplyError | SettlementUnavailable>
  readonly list: (merchantId: MerchantId, options?: ListPaymentsOptions) => Effect.Effect<PaymentPage, InvalidCursor | SqlError>
}>()("payments/PaymentRepository") {
  /** Needs only `SqlClient`; the outbox writer is built on the same client. */
  static readonly layerWith = (options: PaymentRepositoryOptions) => Layer.effect(
    PaymentRepository,
    Effect.gen(function* () {
      assertWithin("payment repository", options, { lockTimeout_ms: paymentLockTimeoutBounds })
      const sql = yield* SqlClient.SqlClient
      const trail = makeTrail(sql, yield* OutboxWriter)
      return PaymentRepository.of({
        create: makeCreate(sql, trail),
        ...makeCreateGated(sql, trail),
        apply: makeApply(sql, trail, `${options.lockTimeout_ms}ms`),
        ...makeReads(sql)
      })
    })
  ).pipe(Layer.provide(OutboxWriter.layer))

  static readonly layer = PaymentRepository.layerWith({ lockTimeout_ms: PAYMENT_LOCK_TIMEOUT_MS_DEFAULT })
}

const toDate = (instant: DateTime.Utc): Date => DateTime.toDateUtc(instant)

const assertContext = (context: ChangeContext) =>
  isChangeContext(context)
    ? Effect.void
    : Effect.die(new Error("ChangeContext violates its schema: validate it at the edge (ChangeContext)"))

/** Rows whose shape the statement's RETURNING (or select list) fixes: a mismatch is a bug. */
const decodeRows = <S extends Schema.Top & { readonly DecodingServices: never }>(row: S) => {
  const decode = Schema.decodeUnknownEffect(Schema.Array(row))
  return (effect: Effect.Effect<ReadonlyArray<unknown>, SqlError>) =>
    effect.pipe(Effect.flatMap(decode), Effect.catchTag("SchemaError", Effect.die))
}
const ids = decodeRows(Schema.Struct({ id: Schema.String }))
const cursors = decodeRows(Schema.Struct({ created_at: Schema.Date, id: Schema.String }))

/** What every change writes with it: its status-history row and its outbox event. */
const makeTrail = (sql: SqlClient.SqlClient, outbox: OutboxWriter["Service"]) => ({
  recordHistory: (payment: Payment, from: PaymentStatus | null, context: ChangeContext) =>
    sql`
      INSERT INTO payment_status_history
        (payment_id, version, from_status, to_status, actor, reason, correlation_id, traceparent, occurred_at)
      VALUES (${payment.id}, ${payment.version}, ${from}, ${payment.status}, ${context.actor},
              ${context.reason ?? null}, ${context.correlationId}, ${context.traceparent ?? null},
              ${toDate(payment.updated_at)}::timestamptz)`.pipe(
      // Counted once the change commits: a rolled-back change counts nothing.
      Effect.tap(() => sql.afterCommit(countTransition(payment, from)))
    ),
  publish: (event: PaymentEvent, context: ChangeContext) =>
    outbox.append({
      aggregateType: "payment",
      aggregateId: event.payment_id,
      eventType: event.type,
      eventVersion: PAYMENT_EVENT_SCHEMA_VERSION,
      payload: encodePaymentEvent(event),
      headers: context.traceparent === undefined
        ? { correlation_id: context.correlationId }
        : { correlation_id: context.correlationId, traceparent: context.traceparent }
    }),
  /** `recordHistory` and `publish` as CTEs of one statement, written once per row of `source`. */
  historyFrom: (payment: Payment, from: PaymentStatus | null, context: ChangeContext, source: string) =>
    sql`
      INSERT INTO payment_status_history
        (payment_id, version, from_status, to_status, actor, reason, correlation_id, traceparent, occurred_at)
      SELECT ${payment.id}, ${payment.version}, ${from}, ${payment.status}, ${context.actor},
             ${context.reason ?? null}, ${context.correlationId}, ${context.traceparent ?? null},
             ${toDate(payment.updated_at)}::timestamptz
      FROM ${sql.literal(source)}`,
  publishFrom: (event: PaymentEvent, context: ChangeContext, source: string) => outbox.appendFrom(outboxEventOf(event, context), source)
})

const outboxEventOf = (event: PaymentEvent, context: ChangeContext) => ({
  aggregateType: "payment",
  aggregateId: event.payment_id,
  eventType: event.type,
  eventVersion: PAYMENT_EVENT_SCHEMA_VERSION,
  payload: encodePaymentEvent(event),
  headers: context.traceparent === undefined
    ? { correlation_id: context.correlationId }
    : { correlation_id: context.correlationId, traceparent: context.traceparent }
})

type Trail = ReturnType<typeof makeTrail>

const makeCreate = (sql: SqlClient.SqlClient, trail: Trail) =>
  Effect.fn("PaymentRepository.create")(function* (input: CreatePaymentInput, context: ChangeContext) {
    yield* assertContext(context)
    const id = yield* generatePaymentId
    const now = yield* DateTime.now
    const { payment, event } = createPayment(input, { id, now })
    yield* Effect.annotateCurrentSpan({ payment_id: payment.id, merchant_id: payment.merchant_id })
    return yield* sql.withTransaction(
      Effect.gen(function* () {
        // INSERT … SELECT … WHERE EXISTS: an unknown merchant inserts nothing (a typed 404)
        // instead of a foreign-key error, in one round trip.
        const inserted = yield* ids(sql`
          INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, description, metadata,
                                status, failure_code, failure_message, version, created_at, updated_at)
          SELECT ${payment.id}, m.id, ${payment.amount_minor}::bigint, ${payment.currency},
                 ${payment.payment_method}, ${payment.description}::text, ${JSON.stringify(payment.metadata)}::jsonb,
                 ${payment.status}, NULL, NULL, ${payment.version}::int,
                 ${toDate(payment.created_at)}::timestamptz, ${toDate(payment.updated_at)}::timestamptz
          FROM merchants m WHERE m.id = ${payment.merchant_id}
          RETURNING id`)
        if (inserted.length === 0) return yield* new MerchantNotFound({ merchantId: input.merchant_id })
        yield* trail.recordHistory(payment, null, context)
        yield* trail.publish(event, context)
        return payment
      })
    )
  })

const createdCount = decodeRows(Schema.Struct({ created: Schema.Number }))

/**
 * create as one statement (one round trip, one durable commit with the idempotency key): the gate
 * (the key's INSERT … ON CONFLICT DO NOTHING RETURNING id), then the payment FROM the gate, its
 * history row and outbox event FROM the payment. Data-modifying CTEs all run to completion; the
 * deferred history trigger and the foreign keys check at the statement's end and commit, as for
 * `create`. An unknown merchant fails the key's foreign key: the whole statement rolls back.
 */
const makeCreateGated = (sql: SqlClient.SqlClient, trail: Trail) => ({
  prepareCreate: (input: CreatePaymentInput) =>
    Effect.gen(function* () {
      const id = yield* generatePaymentId
      const now = yield* DateTime.now
      return createPayment(input, { id, now })
    }),
  createGated: Effect.fn("PaymentRepository.createGated")(function* (gate: Fragment, created: Created, context: ChangeContext) {
    yield* assertContext(context)
    const { payment, event } = created
    yield* Effect.annotateCurrentSpan({ payment_id: payment.id, merchant_id: payment.merchant_id })
    const [row] = yield* createdCount(sql`
      WITH gate AS (${gate}),
      created AS (
        INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, description, metadata,
                              status, failure_code, failure_message, version, created_at, updated_at)
        SELECT ${payment.id}, ${payment.merchant_id}, ${payment.amount_minor}::bigint, ${payment.currency},
               ${payment.payment_method}, ${payment.description}::text, ${JSON.stringify(payment.metadata)}::jsonb,
               ${payment.status}, NULL, NULL, ${payment.version}::int,
               ${toDate(payment.created_at)}::timestamptz, ${toDate(payment.updated_at)}::timestamptz
        FROM gate
        RETURNING id),
      history AS (${trail.historyFrom(payment, null, context, "created")}),
      event AS (${trail.publishFrom(event, context, "created")})
      SELECT count(*)::int AS created FROM created`)
    const written = (row?.created ?? 0) === 1
    // The statement committed on its own (runAtOnce refuses a caller's transaction): count it now.
    if (written) yield* countTransition(payment, null)
    return written
  })
})

const makeApply = (sql: SqlClient.SqlClient, trail: Trail, lockTimeout: string) => {
  const applyInTransaction = (
    merchantId: MerchantId,
    paymentId: PaymentId,
    command: PaymentCommand,
    context: ChangeContext,
    onSettled: ((payment: Payment) => Effect.Effect<SettledSplit, SettlementUnavailable>) | undefined
  ) =>
    Effect.gen(function* () {
      yield* sql`SELECT set_config('lock_timeout', ${lockTimeout}, true)`
      // The row lock serializes concurrent transitions of one payment: a second caller waits
      // here, then reads the winner's committed status and gets a typed InvalidTransition
      // instead of a spurious failure. FOR NO KEY UPDATE is the lock an UPDATE of non-key
      // columns takes anyway; unlike FOR UPDATE it does not block rows elsewhere that merely
      // reference this payment (history, ledger) from being inserted.
      const rows = yield* sql.unsafe(
        `SELECT ${paymentColumns} FROM payments WHERE id = $1 AND merchant_id = $2 FOR NO KEY UPDATE`,
        [paymentId, merchantId]
      )
      const row = rows[0]
      if (row === undefined) return yield* new PaymentNotFound({ paymentId })
      const current = yield* paymentFromRow(row)
      const now = yield* DateTime.now
      const { payment: next, event } = yield* Effect.fromResult(transition(current, command, now))
      // The version check is the second guard: with the lock it always matches, but if the
      // lock were ever dropped from the query above, two writers still could not both win.
      const updated = yield* ids(sql`
        UPDATE payments
        SET status = ${next.status}, failure_code = ${next.failure_code}, failure_message = ${next.failure_message},
            captured_amount_minor = ${next.captured_amount_minor}::bigint,
            authorization_expires_at = ${next.authorization_expires_at === null ? null : toDate(next.authorization_expires_at)}::timestamptz,
            version = ${next.version}::int, updated_at = ${toDate(next.updated_at)}::timestamptz
        WHERE id = ${current.id} AND version = ${current.version}::int
        RETURNING id`)
      if (updated.length !== 1) return yield* new ConcurrentModification({ paymentId, reason: "version_mismatch" })
      yield* trail.recordHistory(next, current.status, context)
      if (event.type === "payment_settled" && onSettled !== undefined) {
        const split = yield* onSettled(next)
        yield* trail.publish({ ...event, fee_minor: split.fee_minor, net_minor: split.net_minor }, context)
      } else {
        yield* trail.publish(event, context)
      }
      return next
    })

  return Effect.fn("PaymentRepository.apply")(
    function* (
      merchantId: MerchantId,
      paymentId: PaymentId,
      command: PaymentCommand,
      context: ChangeContext,
      onSettled?: (payment: Payment) => Effect.Effect<SettledSplit, SettlementUnavailable>
    ) {
      yield* assertContext(context)
      yield* Effect.annotateCurrentSpan({ payment_id: paymentId, merchant_id: merchantId, command: command._tag })
      return yield* sql.withTransaction(applyInTransaction(merchantId, paymentId, command, context, onSettled))
    },
    (effect, _merchantId, paymentId) => Effect.mapError(effect, (error) => conflictAsTyped(error, paymentId))
  )
}

const makeReads = (sql: SqlClient.SqlClient) => {
  const findById = Effect.fn("PaymentRepository.findById")(function* (merchantId: MerchantId, paymentId: PaymentId) {
    yield* Effect.annotateCurrentSpan({ payment_id: paymentId, merchant_id: merchantId })
    // One query with both predicates: an unknown id and a foreign id take the same path.
    const rows = yield* sql.unsafe(`SELECT ${paymentColumns} FROM payments WHERE id = $1 AND merchant_id = $2`, [paymentId, merchantId])
    const row = rows[0]
    if (row === undefined) return yield* new PaymentNotFound({ paymentId })
    return yield* paymentFromRow(row)
  })

  const listAfter = (merchantId: MerchantId, startingAfter: PaymentId, fetch: number) =>
    Effect.gen(function* () {
      const [position] = yield* cursors(sql`
        SELECT created_at, id FROM payments WHERE id = ${startingAfter} AND merchant_id = ${merchantId}`)
      if (position === undefined) return yield* new InvalidCursor({ startingAfter })
      // Row comparison on (created_at, id) walks the (merchant_id, created_at DESC, id DESC)
      // index from the cursor on: each page costs O(limit), whatever its depth.
      return yield* sql.unsafe(
        `SELECT ${paymentColumns} FROM payments
         WHERE merchant_id = $1 AND (created_at, id) < ($2::timestamptz, $3::text)
         ORDER BY created_at DESC, id DESC LIMIT $4`,
        [merchantId, position.created_at, position.id, fetch]
      )
    })

  const list = Effect.fn("PaymentRepository.list")(function* (merchantId: MerchantId, options: ListPaymentsOptions = {}) {
    const limit = options.limit ?? PAGE_LIMIT_DEFAULT
    if (!Number.isInteger(limit) || limit < PAGE_LIMIT_MIN || limit > PAGE_LIMIT_MAX) {
      return yield* Effect.die(new Error(`page limit ${limit} outside ${PAGE_LIMIT_MIN}..${PAGE_LIMIT_MAX}: decode it with PageLimit`))
    }
    // One row more than asked tells whether another page exists, without a COUNT.
    const fetch = limit + 1
    const rows = options.startingAfter === undefined
      ? yield* sql.unsafe(
        `SELECT ${paymentColumns} FROM payments WHERE merchant_id = $1
         ORDER BY created_at DESC, id DESC LIMIT $2`,
        [merchantId, fetch]
      )
      : yield* listAfter(merchantId, options.startingAfter, fetch)
    const payments = yield* Effect.forEach(rows.slice(0, limit), paymentFromRow)
    return { data: payments, hasMore: rows.length > limit }
  })

  return { findById, list }
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
