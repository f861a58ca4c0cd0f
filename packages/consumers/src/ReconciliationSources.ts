import type { SqlClient } from "effect/sql"

/**
 * The SQL of the reconciliation (Reconciliation.ts), by source: common table expressions of ONE
 * statement (one snapshot), joined per merchant and currency by `comparedColumns`. It reads the
 * other capabilities' tables by name (SQL only, no import): a read, never a write.
 */

/** The payments of one merchant and currency whose refunds do not fit, named in a row: at most this many (the count is exact). */
export const RECONCILIATION_LISTED_PAYMENTS_MAX = 10

/**
 * The ledger's and the tables' accounts of the settled and refunded money (no parameter):
 * settlement transactions, their entries, the SETTLED payments, the refunds' reversal postings and
 * the SUCCEEDED refunds, per merchant and currency. `refund_reversals` is per reversal, so that
 * the refunds' check below compares them payment by payment.
 */
export const recordedSources = `settlement_transactions AS (
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
      ), refund_reversals AS (
        SELECT t.id, r.merchant_id, r.payment_id, e.currency,
          coalesce(sum(e.amount_minor) FILTER (WHERE e.side = 'credit' AND a.code LIKE 'acquirer:receivable:%'), 0) AS refunded,
          coalesce(sum(e.amount_minor) FILTER (WHERE e.side = 'debit' AND a.code LIKE 'platform:fees:%'), 0) AS fee_returned
        FROM transactions t
        JOIN refunds r ON t.reference = 'payment:' || r.payment_id || ':refund:' || r.id
        JOIN ledger_entries e ON e.transaction_id = t.id
        JOIN accounts a ON a.id = e.account_id
        WHERE t.reference LIKE 'payment:%:refund:%'
        GROUP BY t.id, r.merchant_id, r.payment_id, e.currency
      ), reversals AS (
        SELECT merchant_id, currency, sum(refunded) AS refunded, sum(fee_returned) AS fee_returned, count(DISTINCT id) AS n
        FROM refund_reversals
        GROUP BY merchant_id, currency
      ), refunded AS (
        SELECT merchant_id, currency, sum(amount_minor) AS refunded, count(*) AS n,
          sum(amount_minor - fee_returned_minor) AS payable_debited
        FROM refunds WHERE status = 'SUCCEEDED'
        GROUP BY merchant_id, currency
      )`

/**
 * What the merchants' payables hold and what justifies it (no parameter; after `recordedSources`):
 * - `payables`: each merchant's payable account (`merchant:mer_…:payable:<CUR>`, the code the
 *   guards of 0087/0090 treat as a merchant's money) and its stored balance (`account_balances`,
 *   signed in the liability's direction: what `GET /v1/balance` shows);
 * - `corrections`: the operators' postings (`correction:<incident>`, 0091) on those accounts,
 *   credits less debits: legitimate, and therefore listed, never hidden in a total (an outside
 *   review put 1,000,000 on a payable under such a reference and no check showed it);
 * - `refund_mismatches`: the payments whose refunds not FAILED exceed the capture (the cap a
 *   REPEATABLE READ race once broke, before 0103), or whose SUCCEEDED refunds are not what their
 *   reversal postings credited the acquirer's receivable.
 * The expected balance (`comparedColumns`) is Σ settlements' net (payment_settlements) − Σ
 * SUCCEEDED refunds' (amount − fee returned) + Σ corrections.
 */
export const payableSources = `payables AS (
        SELECT a.id AS account_id, substring(a.code FROM '^merchant:(.+):payable:[^:]+$') AS merchant_id, a.currency,
          b.balance_minor AS balance
        FROM accounts a JOIN account_balances b ON b.account_id = a.id
        WHERE a.code LIKE 'merchant:mer\\_%:payable:%'
      ), corrections AS (
        SELECT pa.merchant_id, pa.currency,
          sum(CASE WHEN e.side = 'credit' THEN e.amount_minor ELSE -e.amount_minor END) AS amount,
          count(DISTINCT t.id) AS n
        FROM transactions t
        JOIN ledger_entries e ON e.transaction_id = t.id
        JOIN payables pa ON pa.account_id = e.account_id
        WHERE t.reference LIKE 'correction:%'
        GROUP BY pa.merchant_id, pa.currency
      ), refund_mismatches AS (
        SELECT p.merchant_id, p.currency, p.id AS payment_id
        FROM (
          SELECT payment_id, coalesce(sum(amount_minor) FILTER (WHERE status <> 'FAILED'), 0) AS held,
            coalesce(sum(amount_minor) FILTER (WHERE status = 'SUCCEEDED'), 0) AS succeeded
          FROM refunds GROUP BY payment_id
        ) held
        JOIN payments p ON p.id = held.payment_id
        LEFT JOIN (SELECT payment_id, sum(refunded) AS reversed FROM refund_reversals GROUP BY payment_id) rv
          ON rv.payment_id = held.payment_id
        WHERE held.held > coalesce(p.captured_amount_minor, 0) OR held.succeeded <> coalesce(rv.reversed, 0)
      ), refund_mismatch_counts AS (
        SELECT merchant_id, currency, count(*) AS n,
          (array_agg(payment_id ORDER BY payment_id))[1:${RECONCILIATION_LISTED_PAYMENTS_MAX}] AS payment_ids
        FROM refund_mismatches
        GROUP BY merchant_id, currency
      )`

/**
 * The events in flight for `consumer`: a settlement or a refund committed less than `window_ms` ago
 * with the money (same transaction), not yet seen by the projection's consumer: its amounts from
 * the outbox payload (which says what the rows say: 0098, 0099). Only the `payment` aggregate's:
 * the guards that make a payload tell the truth fire for it alone, and the consumers park any other
 * (an outside review's row of aggregate `paymentx`, 198,000,000 "in flight", paged for 5 minutes).
 */
export const inFlightSource = (sql: SqlClient.SqlClient, consumer: string, window_ms: number) => sql`
      unapplied AS (
        SELECT o.event_type, o.payload
        FROM outbox_events o
        WHERE o.event_type IN ('payment_settled', 'refund_succeeded')
          AND o.aggregate_type = 'payment'
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
export const comparedColumns = `
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
        coalesce(in_flight.refunds_n, 0)::bigint AS in_flight_refund_count,
        coalesce(payables.balance, 0)::bigint AS payable_balance_minor,
        (coalesce(paid.net, 0) - coalesce(refunded.payable_debited, 0) + coalesce(corrections.amount, 0))::bigint AS payable_expected_minor,
        coalesce(corrections.amount, 0)::bigint AS corrections_minor, coalesce(corrections.n, 0)::bigint AS correction_count,
        coalesce(refund_mismatch_counts.n, 0)::bigint AS refund_mismatched_payment_count,
        coalesce(refund_mismatch_counts.payment_ids, '{}'::text[]) AS refund_mismatched_payment_ids
      FROM projection
      FULL JOIN ledger USING (merchant_id, currency)
      FULL JOIN paid USING (merchant_id, currency)
      FULL JOIN reversals USING (merchant_id, currency)
      FULL JOIN refunded USING (merchant_id, currency)
      FULL JOIN in_flight USING (merchant_id, currency)
      FULL JOIN payables USING (merchant_id, currency)
      FULL JOIN corrections USING (merchant_id, currency)
      FULL JOIN refund_mismatch_counts USING (merchant_id, currency)`
