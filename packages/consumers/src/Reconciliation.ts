import { decodeRows } from "@pay/infra"
import { Context, Effect, Layer, Metric, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { reconciliationDifferences } from "./ConsumerModel.ts"
import { comparedColumns, inFlightSource, payableSources, recordedSources } from "./ReconciliationSources.ts"
import { settlementConsumerName } from "./SettlementProjection.ts"

export { RECONCILIATION_LISTED_PAYMENTS_MAX } from "./ReconciliationSources.ts"

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
 * And what the merchant is owed (outside database review, 2026-12-05: money moved under other
 * references, and refunds past the capture, that every comparison above missed): the payable's
 * stored balance equals Σ settlements' net − Σ SUCCEEDED refunds' (amount − fee returned) + Σ
 * operators' corrections (listed: `corrections`); every payment's refunds not FAILED are within its
 * capture, and its SUCCEEDED refunds are what its reversals credited (ReconciliationSources.ts).
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
  in_flight_refund_count: Amount,
  /** The merchant's payable account, as the ledger stores it (0 without one). */
  payable_balance_minor: Amount,
  /** What the tables and the corrections justify: payments' net − refunds' (amount − fee returned) + corrections. */
  payable_expected_minor: Amount,
  /** The operators' `correction:<incident>` postings on the payable: credits − debits, and how many. */
  corrections_minor: Amount,
  correction_count: Amount,
  /** Payments whose refunds not FAILED exceed the capture, or whose SUCCEEDED refunds differ from their reversals. */
  refund_mismatched_payment_count: Amount,
  /** The first of them (RECONCILIATION_LISTED_PAYMENTS_MAX, by id): the count is exact, the list bounded. */
  refund_mismatched_payment_ids: Schema.Array(Schema.String)
})
export type ReconciliationRow = typeof ReconciliationRow.Type

/** An operator's corrections on one merchant's payable in one currency (never a difference: shown so that they are seen). */
export interface ReconciliationCorrections {
  readonly merchant_id: string
  readonly currency: string
  readonly correction_count: bigint
  readonly corrections_minor: bigint
}

export interface ReconciliationReport {
  readonly generation: number
  readonly rows: ReadonlyArray<ReconciliationRow>
  /**
   * The rows where any of the three sources disagrees on gross, fees, net or count, events in
   * flight counted; or where the payable's balance is not what is expected; or with a payment
   * whose refunds do not fit.
   */
  readonly differences: ReadonlyArray<ReconciliationRow>
  /** The rows with corrections on the payable, whether they agree or not. */
  readonly corrections: ReadonlyArray<ReconciliationCorrections>
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
    refundsAgree(row) && payableAgrees(row)
}

const refundsAgree = (row: ReconciliationRow): boolean => {
  const refunded = row.projection_refunded_minor + row.in_flight_refunded_minor
  const refundCount = row.projection_refund_count + row.in_flight_refund_count
  return refunded === row.ledger_refunded_minor && row.ledger_refunded_minor === row.refunds_refunded_minor &&
    refundCount === row.ledger_refund_count && row.ledger_refund_count === row.refunds_count &&
    row.projection_fee_returned_minor + row.in_flight_fee_returned_minor === row.ledger_fee_returned_minor
}

/** Neither side involves the projection (the ledger and the tables commit together): nothing is in flight here. */
const payableAgrees = (row: ReconciliationRow): boolean =>
  row.payable_balance_minor === row.payable_expected_minor && row.refund_mismatched_payment_count === 0n

const correctionsOf = (rows: ReadonlyArray<ReconciliationRow>): ReadonlyArray<ReconciliationCorrections> =>
  rows.filter((row) => row.correction_count > 0n).map(({ merchant_id, currency, correction_count, corrections_minor }) =>
    ({ merchant_id, currency, correction_count, corrections_minor }))

export const makeReconciliation = (sql: SqlClient.SqlClient) => {
  // One statement, one snapshot: an event is either applied (its claim and the projection's sums
  // commit together) or in flight, never both.
  const query = (generation: number, inFlightWindow_ms: number) =>
    decodeRows(ReconciliationRow)(sql`
      WITH projection AS (
        SELECT merchant_id, currency, settled_gross_minor AS gross, fees_minor AS fees, net_minor AS net, payment_count AS n,
          refunded_minor AS refunded, fee_returned_minor AS fee_returned, refund_count AS refunds_n
        FROM settlement_projection WHERE generation = ${generation}
      ), ${sql.literal(recordedSources)}, ${sql.literal(payableSources)}, ${inFlightSource(sql, settlementConsumerName(generation), inFlightWindow_ms)}
      SELECT merchant_id, currency, ${sql.literal(comparedColumns)}
      ORDER BY merchant_id, currency`)

  /**
   * Compares the sources for the live generation (or `generation`), events in flight for at
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
      const report: ReconciliationReport = { generation: live, rows, differences, corrections: correctionsOf(rows), in_flight_events }
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
