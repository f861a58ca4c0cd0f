import {
  type CaptureExceedsAuthorized,
  ConcurrentModification,
  type Created,
  type CreatePaymentInput,
  createPayment,
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
  type PaymentCommand,
  type PaymentId,
  PaymentNotFound
} from "@pay/domain"
import { assertWithin } from "@pay/infra"
import { OutboxWriter } from "@pay/outbox"
import type { SettlementUnavailable } from "@pay/settlement"
import { Context, DateTime, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import type { Fragment } from "effect/sql/Statement"
import type { ChangeContext } from "./ChangeContext.ts"
import { countTransition } from "./PaymentMetrics.ts"
import { makeApply } from "./PaymentApply.ts"
import { type AnswerFrom, assertContext, decodeRows, ids, makeTrail, type OnSettled, toDate, type Trail } from "./PaymentTrail.ts"
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

export type { AnswerFrom, OnSettled, SettledSplit } from "./PaymentTrail.ts"

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
  /** How long a wait for a payment's row lock may last (`PaymentRepositoryOptions`), as `lock_timeout` spells it. */
  readonly lockTimeout: string
  /**
   * The payment under its row lock (FOR NO KEY UPDATE, waiting at most `lockTimeout_ms`), in the
   * caller's transaction (dies outside one): a decision read here holds until the caller commits.
   */
  readonly lockForChange: (merchantId: MerchantId, paymentId: PaymentId) => Effect.Effect<Payment, PaymentNotFound | ConcurrentModification | SqlError>
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
    onSettled?: OnSettled<SettlementUnavailable>
  ) => Effect.Effect<Payment, ApplyError | SettlementUnavailable>
  /**
   * `apply` for a caller that holds a transaction open and lets any failure of this call end it
   * (AcquirerTransition: a refusal is decided before anything is written; any other failure rolls
   * the whole transaction back). No savepoint: two round trips fewer than `apply` there. The
   * caller's stored answer (`Execution.finishFrom`) is written by the change's own statement, one
   * round trip fewer again; `answered` is its proof. Dies outside a transaction.
   */
  readonly applyInTransaction: <F, EA, ES = never>(
    merchantId: MerchantId,
    paymentId: PaymentId,
    command: PaymentCommand,
    context: ChangeContext,
    answer: AnswerFrom<F, EA>,
    /** As `apply`'s, with its own error type. */
    onSettled?: OnSettled<ES>
  ) => Effect.Effect<{ readonly payment: Payment; readonly answered: F }, ApplyError | EA | ES>
  readonly list: (merchantId: MerchantId, options?: ListPaymentsOptions) => Effect.Effect<PaymentPage, InvalidCursor | SqlError>
}>()("payments/PaymentRepository") {
  /** Needs only `SqlClient`; the outbox writer is built on the same client. */
  static readonly layerWith = (options: PaymentRepositoryOptions) => Layer.effect(
    PaymentRepository,
    Effect.gen(function* () {
      assertWithin("payment repository", options, { lockTimeout_ms: paymentLockTimeoutBounds })
      const sql = yield* SqlClient.SqlClient
      const trail = makeTrail(sql, yield* OutboxWriter)
      const lockTimeout = `${options.lockTimeout_ms}ms`
      return PaymentRepository.of({
        create: makeCreate(sql, trail),
        ...makeCreateGated(sql, trail),
        lockTimeout,
        ...makeApply(sql, trail, lockTimeout),
        ...makeReads(sql)
      })
    })
  ).pipe(Layer.provide(OutboxWriter.layer))

  static readonly layer = PaymentRepository.layerWith({ lockTimeout_ms: PAYMENT_LOCK_TIMEOUT_MS_DEFAULT })
}

/** created_at travels as text: a JavaScript Date would drop its microseconds (rows written by an import skipped). */
const cursors = decodeRows(Schema.Struct({ created_at: Schema.String, id: Schema.String }))

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
        SELECT created_at::text AS created_at, id FROM payments WHERE id = ${startingAfter} AND merchant_id = ${merchantId}`)
      if (position === undefined) return yield* new InvalidCursor({ startingAfter, of: "payments" })
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
