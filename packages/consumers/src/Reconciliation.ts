import { decodeRows } from "@pay/infra"
import { Context, Effect, Layer, Metric, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { reconciliationDifferences } from "./ConsumerModel.ts"
import { settlementConsumerName } from "./SettlementProjection.ts"

/**
 * Reconciliation: per merchant and currency, three independent accounts of the same settled money
 * must agree (docs/consumers.md):
 * - the settlement projection (live generation), built from `payment_settled` events only;
 * - the ledger: the settlement transactions (`payment:<id>:settlement`), gross on the acquirer
 *   receivable, net on the merchant payable, fee on platform fees;
 * - the payments table: SETTLED payments (gross, count) and their `payment_settlements` rows (fee, net).
 * And the refunded money the same way (issue 19): the projection's refunded / fee returned / count
 * (from `refund_succeeded` events only), the ledger's reversal postings (`payment:<id>:refund:<id>`:
 * the refund credited to the acquirer receivable, the fee returned debited to platform fees), and
 * the SUCCEEDED rows of the refunds table.
 * It reads the other capabilities' tables by name (SQL only, no import): a read, never a write.
 */
const Amount = Schema.BigInt
export const ReconciliationRow = Schema.Struct({
  merchant_id: Schema.String,
  currency: Schema.String,
  projection_gross_minor: Amount,
  projection_fees_minor: Amount,
  projection_net_minor: Amount,
  projection_count: Amount,
  ledger_gross_minor: Amount,
  ledger_fees_minor: Amount,
  ledger_net_minor: Amount,
  ledger_count: Amount,
  payments_gross_minor: Amount,
  payments_fees_minor: Amount,
  payments_net_minor: Amount,
  payments_count: Amount,
  projection_refunded_minor: Amount,
  projection_fee_returned_minor: Amount,
  projection_refund_count: Amount,
  ledger_refunded_minor: Amount,
  ledger_fee_returned_minor: Amount,
  ledger_refund_count: Amount,
  refunds_refunded_minor: Amount,
  refunds_count: Amount,
  in_flight_gross_minor: Amount,
  in_flight_fees_minor: Amount,
  in_flight_net_minor: Amount,
  in_flight_count: Amount,
  in_flight_refunded_minor: Amount,
  in_flight_fee_returned_minor: Amount,
  in_flight_refund_count: Amount
})
export type ReconciliationRow = typeof ReconciliationRow.Type

export interface ReconciliationReport {
  readonly generation: number
  readonly rows: ReadonlyArray<ReconciliationRow>
  /** The rows where any of the three sources disagrees on gross, fees, net or count, events in flight counted. */
  readonly differences: ReadonlyArray<ReconciliationRow>
  /** `payment_settled` and `refund_succeeded` events committed within the window and not yet applied by the projection. */
  readonly in_flight_events: number
}

/**
 * How long a committed event may stay unapplied and still count as in flight: its amounts are added
 * to the projection's. Older, it is a difference (lost, parked, or a consumer far behind: the lag
 * alerts say which). Five minutes: a steady stream's ~100 ms from commit to projection, a publisher
 * or consumer restart, a short Kafka blip.
 */
export const RECONCILIATION_IN_FLIGHT_WINDOW_MS = 5 * 60 * 1_000

/** The projection plus what is in flight, against the ledger and the payments/refunds tables. */
const agrees = (row: ReconciliationRow): boolean => {
  const gross = row.projection_gross_minor + row.in_flight_gross_minor
  const fees = row.projection_fees_minor + row.in_flight_fees_minor
  const net = row.projection_net_minor + row.in_flight_net_minor
  const count = row.projection_count + row.in_flight_count
  return gross === row.ledger_gross_minor && row.ledger_gross_minor === row.payments_gross_minor &&
    fees === row.ledger_fees_minor && row.ledger_fees_minor === row.payments_fees_minor &&
    net === row.ledger_net_minor && row.ledger_net_minor === row.payments_net_minor &&
    count === row.ledger_count && row.ledger_count === row.payments_count &&
    refundsAgree(row)
}

const refundsAgree = (row: ReconciliationRow): boolean => {
  const refunded = row.projection_refunded_minor + row.in_flight_refunded_minor
  const refundCount = row.projection_refund_count + row.in_flight_refund_count
  return refunded === row.ledger_refunded_minor && row.ledger_refunded_minor === row.refunds_refunded_minor &&
    refundCount === row.ledger_refund_count && row.ledger_refund_count === row.refunds_count &&
    row.projection_fee_returned_minor + row.in_flight_fee_returned_minor === row.ledger_fee_returned_minor
}

/**
 * The ledger's and the tables' accounts (no parameter): settlement transactions, their entries, the
 * SETTLED payments, the refunds' reversal postings and the SUCCEEDED refunds, per merchant and currency.
 */
const recordedSources = `settlement_transactions AS (
        SELECT t.id, p.merchant_id
        FROM transactions t
        JOIN payments p ON p.id = substring(t.reference FROM '^payment:(.+):settlement$')
        WHERE t.reference LIKE 'payment:%:settlement'
      ), ledger AS (
        SELECT st.merchant_id, e.currency,
          coalesce(sum(e.amount_minor) FILTER (WHERE e.side = 'debit' AND a.code LIKE 'acquirer:receivable:%'), 0) AS gross,
          coalesce(sum(e.amount_minor) FILTER (WHERE e.side = 'credit' AND a.code LIKE 'platform:fees:%'), 0) AS fees,
          coalesce(sum(e.amount_minor) FILTER (WHERE e.side = 'credit' AND a.code LIKE 'merchant:%:payable:%'), 0) AS net,
          count(DISTINCT st.id) AS n
        FROM settlement_transactions st
        JOIN ledger_entries e ON e.transaction_id = st.id
        JOIN accounts a ON a.id = e.account_id
        GROUP BY st.merchant_id, e.currency
      ), paid AS (
        SELECT p.merchant_id, p.currency, sum(p.captured_amount_minor) AS gross,
          coalesce(sum(s.fee_minor), 0) AS fees, coalesce(sum(s.net_minor), 0) AS net, count(*) AS n
        FROM payments p LEFT JOIN payment_settlements s ON s.payment_id = p.id
        WHERE p.status = 'SETTLED'
        GROUP BY p.merchant_id, p.currency
      ), reversals AS (
        SELECT r.merchant_id, e.currency,
          coalesce(sum(e.amount_minor) FILTER (WHERE e.side = 'credit' AND a.code LIKE 'acquirer:receivable:%'), 0) AS refunded,
          coalesce(sum(e.amount_minor) FILTER (WHERE e.side = 'debit' AND a.code LIKE 'platform:fees:%'), 0) AS fee_returned,
          count(DISTINCT t.id) AS n
        FROM transactions t
        JOIN refunds r ON t.reference = 'payment:' || r.payment_id || ':refund:' || r.id
        JOIN ledger_entries e ON e.transaction_id = t.id
        JOIN accounts a ON a.id = e.account_id
        WHERE t.reference LIKE 'payment:%:refund:%'
        GROUP BY r.merchant_id, e.currency
      ), refunded AS (
        SELECT merchant_id, currency, sum(amount_minor) AS refunded, count(*) AS n
        FROM refunds WHERE status = 'SUCCEEDED'
        GROUP BY merchant_id, currency
      )`

/**
 * The events in flight for `consumer`: a settlement or a refund committed less than `window_ms` ago
 * with the money (same transaction), not yet seen by the projection's consumer: its amounts from
 * the outbox payload (which says what the rows say: 0098, 0099).
 */
const inFlightSource = (sql: SqlClient.SqlClient, consumer: string, window_ms: number) => sql`
      unapplied AS (
        SELECT o.event_type, o.payload
        FROM outbox_events o
        WHERE o.event_type IN ('payment_settled', 'refund_succeeded')
          AND o.created_at > now() - make_interval(secs => ${window_ms} / 1000.0)
          -- Implied by the line above (published after created), and what the outbox's partial
          -- indexes answer: the retained outbox is not scanned whole at every run.
          AND (o.published_at IS NULL OR o.published_at > now() - make_interval(secs => ${window_ms} / 1000.0))
          AND NOT EXISTS (SELECT 1 FROM processed_events pe WHERE pe.consumer = ${consumer} AND pe.event_id = o.id)
      ), in_flight AS (
        SELECT payload->>'merchant_id' AS merchant_id, payload->>'currency' AS currency,
          coalesce(sum(coalesce((payload->>'captured_amount_minor')::bigint, (payload->>'amount_minor')::bigint))
            FILTER (WHERE event_type = 'payment_settled'), 0) AS gross,
          coalesce(sum((payload->>'fee_minor')::bigint) FILTER (WHERE event_type = 'payment_settled'), 0) AS fees,
          coalesce(sum((payload->>'net_minor')::bigint) FILTER (WHERE event_type = 'payment_settled'), 0) AS net,
          count(*) FILTER (WHERE event_type = 'payment_settled') AS n,
          coalesce(sum((payload->>'amount_minor')::bigint) FILTER (WHERE event_type = 'refund_succeeded'), 0) AS refunded,
          coalesce(sum(coalesce((payload->>'fee_returned_minor')::bigint, 0)) FILTER (WHERE event_type = 'refund_succeeded'), 0) AS fee_returned,
          count(*) FILTER (WHERE event_type = 'refund_succeeded') AS refunds_n
        FROM unapplied
        GROUP BY 1, 2
      )`

/** Each source's sums side by side (0 where a source has no row). */
const comparedColumns = `
        coalesce(projection.gross, 0)::bigint AS projection_gross_minor, coalesce(projection.fees, 0)::bigint AS projection_fees_minor,
        coalesce(projection.net, 0)::bigint AS projection_net_minor, coalesce(projection.n, 0)::bigint AS projection_count,
        coalesce(ledger.gross, 0)::bigint AS ledger_gross_minor, coalesce(ledger.fees, 0)::bigint AS ledger_fees_minor,
        coalesce(ledger.net, 0)::bigint AS ledger_net_minor, coalesce(ledger.n, 0)::bigint AS ledger_count,
        coalesce(paid.gross, 0)::bigint AS payments_gross_minor, coalesce(paid.fees, 0)::bigint AS payments_fees_minor,
        coalesce(paid.net, 0)::bigint AS payments_net_minor, coalesce(paid.n, 0)::bigint AS payments_count,
        coalesce(projection.refunded, 0)::bigint AS projection_refunded_minor,
        coalesce(projection.fee_returned, 0)::bigint AS projection_fee_returned_minor,
        coalesce(projection.refunds_n, 0)::bigint AS projection_refund_count,
        coalesce(reversals.refunded, 0)::bigint AS ledger_refunded_minor,
        coalesce(reversals.fee_returned, 0)::bigint AS ledger_fee_returned_minor,
        coalesce(reversals.n, 0)::bigint AS ledger_refund_count,
        coalesce(refunded.refunded, 0)::bigint AS refunds_refunded_minor, coalesce(refunded.n, 0)::bigint AS refunds_count,
        coalesce(in_flight.gross, 0)::bigint AS in_flight_gross_minor, coalesce(in_flight.fees, 0)::bigint AS in_flight_fees_minor,
        coalesce(in_flight.net, 0)::bigint AS in_flight_net_minor, coalesce(in_flight.n, 0)::bigint AS in_flight_count,
        coalesce(in_flight.refunded, 0)::bigint AS in_flight_refunded_minor,
        coalesce(in_flight.fee_returned, 0)::bigint AS in_flight_fee_returned_minor,
        coalesce(in_flight.refunds_n, 0)::bigint AS in_flight_refund_count
      FROM projection
      FULL JOIN ledger USING (merchant_id, currency)
      FULL JOIN paid USING (merchant_id, currency)
      FULL JOIN reversals USING (merchant_id, currency)
      FULL JOIN refunded USING (merchant_id, currency)
      FULL JOIN in_flight USING (merchant_id, currency)`

export const makeReconciliation = (sql: SqlClient.SqlClient) => {
  // One statement, one snapshot: an event is either applied (its claim and the projection's sums
  // commit together) or in flight, never both.
  const query = (generation: number, inFlightWindow_ms: number) =>
    decodeRows(ReconciliationRow)(sql`
      WITH projection AS (
        SELECT merchant_id, currency, settled_gross_minor AS gross, fees_minor AS fees, net_minor AS net, payment_count AS n,
          refunded_minor AS refunded, fee_returned_minor AS fee_returned, refund_count AS refunds_n
        FROM settlement_projection WHERE generation = ${generation}
      ), ${sql.literal(recordedSources)}, ${inFlightSource(sql, settlementConsumerName(generation), inFlightWindow_ms)}
      SELECT merchant_id, currency, ${sql.literal(comparedColumns)}
      ORDER BY merchant_id, currency`)

  /**
   * Compares the three sources for the live generation (or `generation`), events in flight for at
   * most `inFlightWindow_ms` counted with the projection, and sets the gauge.
   */
  const reconcile = (options: { readonly generation?: number; readonly inFlightWindow_ms?: number } = {}) =>
    Effect.gen(function* () {
      const live = options.generation ?? (yield* decodeRows(Schema.Struct({ generation: Schema.Int }))(
        sql`SELECT generation FROM settlement_projection_live`
      ))[0]?.generation ?? 1
      const rows = yield* query(live, options.inFlightWindow_ms ?? RECONCILIATION_IN_FLIGHT_WINDOW_MS)
      const differences = rows.filter((row) => !agrees(row))
      yield* Metric.update(reconciliationDifferences, differences.length)
      const in_flight_events = rows.reduce((events, row) => events + Number(row.in_flight_count + row.in_flight_refund_count), 0)
      const report: ReconciliationReport = { generation: live, rows, differences, in_flight_events }
      return report
    })

  return { reconcile }
}

/** The projection compared with the ledger and the payments table (`reconcile`). */
export class Reconciliation extends Context.Service<Reconciliation, ReturnType<typeof makeReconciliation>>()("consumers/Reconciliation") {
  static readonly layer: Layer.Layer<Reconciliation, never, SqlClient.SqlClient> = Layer.effect(
    Reconciliation,
    Effect.gen(function* () {
      return makeReconciliation(yield* SqlClient.SqlClient)
    })
  )
}
