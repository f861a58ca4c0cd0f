import {
  generateRefundId,
  InvalidCursor,
  type MerchantId,
  PAGE_LIMIT_MAX,
  PAGE_LIMIT_MIN,
  type Metadata,
  type Payment,
  PaymentId,
  PaymentNotFound,
  PaymentNotRefundable,
  Refund,
  RefundExceedsBalance,
  RefundExceedsCaptured,
  RefundId,
  RefundNotFound,
  type RefundReason
} from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { OutboxWriter } from "@pay/outbox"
import { type FeeShare, RefundPosting, refundSettingsLockKey, type SettlementUnavailable } from "@pay/settlement"
import { DateTime, Effect, Option, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import type { ChangeContext } from "./ChangeContext.ts"
import { paymentColumns, paymentFromRow } from "./PaymentRows.ts"
import { makeRefundEvents } from "./RefundEventsOut.ts"

const RefundRow = Schema.Struct({
  id: Schema.String,
  payment_id: Schema.String,
  merchant_id: Schema.String,
  amount_minor: Schema.BigInt,
  currency: Schema.String,
  status: Schema.String,
  reason: Schema.NullOr(Schema.String),
  metadata: Schema.Unknown,
  failure_code: Schema.NullOr(Schema.String),
  failure_message: Schema.NullOr(Schema.String),
  fee_returned_minor: Schema.BigInt,
  created_at: Schema.Date,
  updated_at: Schema.Date
})
const decodeRefundRow = Schema.decodeUnknownEffect(RefundRow)
const decodeRefund = Schema.decodeUnknownEffect(Refund)

/** Row → Refund; a row the domain cannot read is a broken database invariant: a defect. */
const refundFromRow = (row: unknown): Effect.Effect<Refund> =>
  decodeRefundRow(row).pipe(
    Effect.flatMap((decoded) =>
      decodeRefund({
        ...decoded,
        amount_minor: Number(decoded.amount_minor),
        fee_returned_minor: Number(decoded.fee_returned_minor),
        created_at: decoded.created_at.toISOString(),
        updated_at: decoded.updated_at.toISOString()
      })
    ),
    Effect.mapError((error) => new Error(`refunds row does not satisfy the Refund schema: ${error.message}`)),
    Effect.orDie
  )

const refundColumns =
  "id, payment_id, merchant_id, amount_minor, currency, status, reason, metadata, failure_code, failure_message, fee_returned_minor, created_at, updated_at"

const RefundedRow = Schema.Struct({ refunded_minor: Schema.BigInt, shares_minor: Schema.BigInt, pending_minor: Schema.BigInt })
const decodeRefunded = Schema.decodeUnknownEffect(Schema.Array(RefundedRow))

export interface RefundRequest {
  readonly amount_minor?: bigint | undefined
  readonly reason?: RefundReason | undefined
  readonly metadata?: Metadata | undefined
}

export type RefundRefusal = PaymentNotFound | PaymentNotRefundable | RefundExceedsCaptured | RefundExceedsBalance

/**
 * The refunds table (migrations/0047_refunds.sql). `reserve` is where the cap is decided: under
 * the merchant's refund lock (an advisory lock per merchant and currency: the balance check) and
 * the payment's row lock (the cap), the same order for everyone, it checks what the database's
 * INSERT trigger checks again, and inserts the PENDING refund. Must run inside the caller's
 * transaction (the idempotency key's recovery point commits with it).
 */
export const makeRefundStore = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const posting = yield* RefundPosting
  const events = makeRefundEvents(yield* OutboxWriter)
  return { ...makeReservation(sql, posting, events), ...makeCompletion(sql, posting, events), ...makeRefundReads(sql) }
})

type RefundEvents = ReturnType<typeof makeRefundEvents>

/**
 * One reservation of a merchant's currency at a time, and no completion committing in the middle of
 * one: the reservation reads the PENDING refunds and the payable in two statements, and a refund
 * completed between them was counted twice (outside re-test: a covered refund refused with
 * "available balance -20379", the refusal stored under its key).
 */
const refundsLockKey = (merchantId: string, currency: string) => `refunds:${merchantId}:${currency}`

/**
 * Σ of the payment's refunds that are not FAILED and of their fee shares (returned or kept), and what the merchant's
 * PENDING refunds in the currency will take from its payable: each its amount less its fee share,
 * as `RefundPosting` debits it (outside client review: the gross amounts refused a refund the
 * payable covered).
 */
const refundedOf = (sql: SqlClient.SqlClient, payment: Payment) =>
  sql`
    SELECT coalesce(sum(amount_minor), 0)::bigint AS refunded_minor, coalesce(sum(fee_share_minor), 0)::bigint AS shares_minor,
           (SELECT coalesce(sum(amount_minor - fee_returned_minor), 0) FROM refunds
            WHERE merchant_id = ${payment.merchant_id} AND currency = ${payment.currency} AND status = 'PENDING')::bigint AS pending_minor
    FROM refunds WHERE payment_id = ${payment.id} AND status <> 'FAILED'`.pipe(
    Effect.flatMap(decodeRefunded),
    Effect.map((rows) => rows[0] ?? { refunded_minor: 0n, shares_minor: 0n, pending_minor: 0n }),
    Effect.catchTag("SchemaError", Effect.die)
  )

const makeReservation = (sql: SqlClient.SqlClient, posting: RefundPosting["Service"], events: RefundEvents) => {
  const lockedPayment = (merchantId: MerchantId, paymentId: PaymentId) =>
    Effect.gen(function* () {
      const rows = yield* sql.unsafe(
        `SELECT ${paymentColumns} FROM payments WHERE id = $1 AND merchant_id = $2 FOR NO KEY UPDATE`,
        [paymentId, merchantId]
      )
      return rows[0] === undefined ? undefined : yield* paymentFromRow(rows[0])
    })

  /** The PENDING row and its `refund_created` event (the database refuses one without the other at COMMIT). */
  const insert = (
    payment: Payment,
    { amount_minor, fee_share_minor, fee_returned_minor }: { readonly amount_minor: bigint } & FeeShare,
    request: RefundRequest,
    context: ChangeContext
  ) =>
    Effect.gen(function* () {
      const id = yield* generateRefundId
      const now = DateTime.toDateUtc(yield* DateTime.now)
      const rows = yield* sql`
        INSERT INTO refunds (id, payment_id, merchant_id, amount_minor, currency, status, reason, metadata, fee_share_minor, fee_returned_minor, created_at, updated_at)
        VALUES (${id}, ${payment.id}, ${payment.merchant_id}, ${amount_minor}, ${payment.currency}, 'PENDING',
                ${request.reason ?? null}, ${JSON.stringify(request.metadata ?? {})}::jsonb, ${fee_share_minor}, ${fee_returned_minor}, ${now}, ${now})
        RETURNING ${sql.literal(refundColumns)}`
      const refund = yield* refundFromRow(rows[0])
      yield* events.publish(refund, context)
      return refund
    })

  const reserve = (
    merchantId: MerchantId,
    paymentId: PaymentId,
    request: RefundRequest,
    context: ChangeContext
  ): Effect.Effect<Refund, RefundRefusal | SettlementUnavailable | SqlError> =>
    Effect.gen(function* () {
      const found = yield* sql`SELECT currency FROM payments WHERE id = ${paymentId} AND merchant_id = ${merchantId}`
      const currency = found[0]?.["currency"]
      if (typeof currency !== "string") return yield* new PaymentNotFound({ paymentId })
      // One refund of a merchant's currency at a time; and its fee setting held still until this
      // transaction ends (the insert trigger reads it again: RefundFees.ts, refundSettingsLockKey).
      yield* sql`SELECT pg_advisory_xact_lock(hashtextextended(${refundsLockKey(merchantId, currency)}, 0)),
        pg_advisory_xact_lock_shared(hashtextextended(${refundSettingsLockKey(merchantId)}, 0))`
      const payment = yield* lockedPayment(merchantId, paymentId)
      if (payment === undefined) return yield* new PaymentNotFound({ paymentId })
      if (payment.status !== "SETTLED" || payment.captured_amount_minor === null) {
        return yield* new PaymentNotRefundable({ paymentId, status: payment.status })
      }
      const captured_minor = payment.captured_amount_minor
      const sums = yield* refundedOf(sql, payment)
      const amount_minor = request.amount_minor ?? captured_minor - sums.refunded_minor
      if (amount_minor <= 0n || sums.refunded_minor + amount_minor > captured_minor) {
        return yield* new RefundExceedsCaptured({ paymentId, requested_minor: amount_minor, captured_minor, refunded_minor: sums.refunded_minor })
      }
      // The merchant's payable bears the refund less the fee share it returns (0 when the fee is kept).
      const share = yield* posting.feeShare(merchantId, paymentId, sums, amount_minor)
      const available_minor = (yield* posting.payableBalance(merchantId, payment.currency)) - sums.pending_minor
      if (amount_minor - share.fee_returned_minor > available_minor) {
        return yield* new RefundExceedsBalance({ paymentId, requested_minor: amount_minor, available_minor })
      }
      return yield* insert(payment, { amount_minor, ...share }, request, context)
    })
  return { reserve }
}

const makeCompletion = (sql: SqlClient.SqlClient, posting: RefundPosting["Service"], events: RefundEvents) => {
  /** The refund, locked (the completion's row lock). */
  const lockedRefund = (refundId: RefundId) =>
    sql.unsafe(`SELECT ${refundColumns} FROM refunds WHERE id = $1 FOR UPDATE`, [refundId]).pipe(
      Effect.flatMap((rows) => (rows[0] === undefined ? Effect.die(new Error(`refund ${refundId} vanished`)) : refundFromRow(rows[0])))
    )

  /**
   * PENDING → SUCCEEDED (the reversal posted first, in this transaction) or FAILED. A refund that
   * is no longer PENDING is returned as it is (an earlier run finished it).
   */
  const complete = (
    refundId: RefundId,
    outcome: { readonly _tag: "Approved" } | { readonly _tag: "Declined"; readonly code: string; readonly message: string },
    context: ChangeContext
  ) =>
    Effect.gen(function* () {
      const refund = yield* lockedRefund(refundId)
      if (refund.status !== "PENDING") return refund
      // The reservations' lock (refundsLockKey), after the refund's row: a reservation never waits on a refund's row.
      yield* sql`SELECT pg_advisory_xact_lock(hashtextextended(${refundsLockKey(refund.merchant_id, refund.currency)}, 0))`
      const now = DateTime.toDateUtc(DateTime.max(refund.updated_at, yield* DateTime.now))
      const rows = outcome._tag === "Approved"
        ? yield* posting.post(refund).pipe(Effect.flatMap((posted) => sql`
            UPDATE refunds SET status = 'SUCCEEDED', ledger_transaction_id = ${posted.ledgerTransactionId}, updated_at = ${now}
            WHERE id = ${refundId} RETURNING ${sql.literal(refundColumns)}`))
        : yield* sql`
            UPDATE refunds SET status = 'FAILED', failure_code = ${outcome.code}, failure_message = ${outcome.message}, updated_at = ${now}
            WHERE id = ${refundId} RETURNING ${sql.literal(refundColumns)}`
      const completed = yield* refundFromRow(rows[0])
      // The payment's row lock, taken only now (after the posting: the lock is held for the event's
      // insert and the COMMIT, not the ledger's work), keeps the payment's outbox rows in commit
      // order, as every writer of them does (docs/events.md, "Ordered per payment"). Lock order:
      // refund, the merchant's refunds lock, ledger accounts, payment; nothing holds a SETTLED
      // payment's lock while it waits for those accounts (the reservation reads the balance
      // without locking it).
      yield* sql`SELECT 1 AS one FROM payments WHERE id = ${completed.payment_id} FOR NO KEY UPDATE`
      yield* events.publish(completed, context)
      return completed
    })
  return { complete }
}

const decodePaymentId = Schema.decodeUnknownOption(PaymentId)
const decodeRefundId = Schema.decodeUnknownOption(RefundId)
const cursorRows = decodeRows(Schema.Struct({ created_at: Schema.String, id: Schema.String }))

export interface RefundPageRequest {
  /** 1..100 (the caller decodes it with PageLimit; anything else is a defect). */
  readonly limit: number
  /** Cursor: the id of the last refund of the previous page; must be one of this payment's. */
  readonly startingAfter?: string | undefined
}

export interface RefundPage {
  /** Oldest first (created_at, id). */
  readonly data: ReadonlyArray<Refund>
  readonly hasMore: boolean
}

const makeRefundReads = (sql: SqlClient.SqlClient) => {
  /** PaymentNotFound unless the payment is this merchant's (the same answer for unknown and foreign). */
  const ownedPayment = (merchantId: MerchantId, paymentId: string) =>
    Effect.gen(function* () {
      const owner = yield* sql`SELECT 1 AS one FROM payments WHERE id = ${paymentId} AND merchant_id = ${merchantId}`
      if (owner.length === 0) return yield* new PaymentNotFound({ paymentId })
    })

  /**
   * One refund of one of the merchant's payments. Payment first, as the list answers: an unknown
   * or foreign payment is PaymentNotFound, a refund that is not this payment's RefundNotFound.
   * A found refund is one statement (its row names its payment and merchant); the payment is read
   * only to tell the two 404s apart. Ids not of their kind's shape name nothing: refused before a
   * statement that would take them (a NUL would be a 500 from the database).
   */
  const findById = (merchantId: MerchantId, paymentId: string, refundId: string) =>
    Effect.gen(function* () {
      if (Option.isNone(decodePaymentId(paymentId))) return yield* new PaymentNotFound({ paymentId: paymentId.slice(0, 100) })
      const notFound = ownedPayment(merchantId, paymentId).pipe(
        Effect.andThen(Effect.fail(new RefundNotFound({ refundId: refundId.slice(0, 100) })))
      )
      if (Option.isNone(decodeRefundId(refundId))) return yield* notFound
      const [row] = yield* sql.unsafe(`SELECT ${refundColumns} FROM refunds WHERE id = $1 AND payment_id = $2 AND merchant_id = $3`, [refundId, paymentId, merchantId])
      return row === undefined ? yield* notFound : yield* refundFromRow(row)
    })

  /**
   * Where the page starts: the cursor's (created_at, id), read only among THIS payment's refunds of
   * this merchant. created_at travels as text: a JavaScript Date would drop its microseconds
   * (a refund written by SQL's now() has them) and the page would repeat rows.
   */
  const cursorOf = (merchantId: MerchantId, paymentId: string, startingAfter: string) =>
    Effect.gen(function* () {
      const refused = new InvalidCursor({ startingAfter: startingAfter.slice(0, 100), of: "refunds of this payment" })
      if (Option.isNone(decodeRefundId(startingAfter))) return yield* refused
      const [position] = yield* cursorRows(sql`
        SELECT created_at::text AS created_at, id FROM refunds
        WHERE id = ${startingAfter} AND payment_id = ${paymentId} AND merchant_id = ${merchantId}`)
      return position === undefined ? yield* refused : position
    })

  /**
   * A payment's refunds, oldest first (created_at, then id: refunds created in the same
   * microsecond keep one order across pages), `limit` at a time after `startingAfter`. Payment
   * first (404), then the cursor (400). The row comparison walks the index refunds_payment
   * (payment_id, created_at, id) from the cursor on: each page costs O(limit).
   */
  const list = (merchantId: MerchantId, paymentId: string, page: RefundPageRequest) =>
    Option.isNone(decodePaymentId(paymentId))
      ? Effect.fail(new PaymentNotFound({ paymentId: paymentId.slice(0, 100) }))
      : Effect.gen(function* () {
        if (!Number.isInteger(page.limit) || page.limit < PAGE_LIMIT_MIN || page.limit > PAGE_LIMIT_MAX) {
          return yield* Effect.die(new Error(`page limit ${page.limit} outside ${PAGE_LIMIT_MIN}..${PAGE_LIMIT_MAX}: decode it with PageLimit`))
        }
        yield* ownedPayment(merchantId, paymentId)
        // One row more than asked tells whether another page exists, without a COUNT.
        const fetch = page.limit + 1
        const rows = page.startingAfter === undefined
          ? yield* sql.unsafe(
            `SELECT ${refundColumns} FROM refunds WHERE payment_id = $1 AND merchant_id = $2 ORDER BY created_at, id LIMIT $3`,
            [paymentId, merchantId, fetch]
          )
          : yield* cursorOf(merchantId, paymentId, page.startingAfter).pipe(Effect.flatMap((position) =>
            sql.unsafe(
              `SELECT ${refundColumns} FROM refunds
               WHERE payment_id = $1 AND merchant_id = $2 AND (created_at, id) > ($3::timestamptz, $4::text)
               ORDER BY created_at, id LIMIT $5`,
              [paymentId, merchantId, position.created_at, position.id, fetch]
            )
          ))
        const data = yield* Effect.forEach(rows.slice(0, page.limit), refundFromRow)
        return { data, hasMore: rows.length > page.limit }
      })

  return { findById, list }
}
