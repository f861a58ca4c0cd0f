import { decodeRows } from "@pay/infra"
import { assert } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"

/**
 * What every settlement scenario checks afterwards, read straight from PostgreSQL. The expected
 * fees are computed here from the fee rule written out a second way (quotient and remainder), not
 * with the code under test.
 */

export interface FeeTerms {
  readonly fee_bps: number
  readonly fee_fixed_minor: bigint
}

/**
 * The platform default when no schedule row exists (SETTLEMENT_FEE_BPS / SETTLEMENT_FEE_FIXED_MINOR
 * unset), as it applies to a two-decimal currency (USD, EUR, GBP…); see {@link defaultTermsIn}.
 */
export const defaultTerms: FeeTerms = { fee_bps: 290, fee_fixed_minor: 30n }

/**
 * The configured fixed fee (minor units of a two-decimal currency) in a currency of `exponent`,
 * written a second way: as a decimal string of the major unit ("0.30"), its point moved `exponent`
 * places, rounded half up by the first dropped digit. Not the code's integer division.
 */
export const scaledFixedFee = (fixed_minor: bigint, exponent: number): bigint => {
  const digits = fixed_minor.toString().padStart(3, "0")
  const whole = digits.slice(0, -2)
  const fraction = digits.slice(-2).padEnd(exponent, "0")
  const kept = fraction.slice(0, exponent)
  const dropped = fraction.slice(exponent)
  const minor = BigInt(whole + kept)
  return dropped.length > 0 && dropped.charAt(0) >= "5" ? minor + 1n : minor
}

/** The platform default's terms in a currency of `exponent` (0 for JPY/VND, 2 for USD, 3 for KWD). */
export const defaultTermsIn = (exponent: number, base: FeeTerms = defaultTerms): FeeTerms => ({
  fee_bps: base.fee_bps,
  fee_fixed_minor: scaledFixedFee(base.fee_fixed_minor, exponent)
})

/**
 * The fee rule, independently: the percentage part is gross × bps / 10 000 rounded half up (a
 * remainder of at least half of 10 000 rounds up), plus the fixed part, never more than gross.
 */
export const expectedFee = (gross_minor: bigint, terms: FeeTerms): bigint => {
  const product = gross_minor * BigInt(terms.fee_bps)
  const quotient = product / 10_000n
  const remainder = product % 10_000n
  const percentage_minor = remainder * 2n >= 10_000n ? quotient + 1n : quotient
  const uncapped = percentage_minor + terms.fee_fixed_minor
  return uncapped < gross_minor ? uncapped : gross_minor
}

export const expectedNet = (gross_minor: bigint, terms: FeeTerms): bigint => gross_minor - expectedFee(gross_minor, terms)

/** A payment the test expects to be settled, with the terms it expects to be applied. */
export interface ExpectedSettlement {
  readonly paymentId: string
  readonly gross_minor: bigint
  readonly currency: string
  readonly terms: FeeTerms
}

/** Σ(gross − fee) per currency, as `/v1/balance` lists it (sorted by currency). */
export const expectedPayable = (settled: ReadonlyArray<ExpectedSettlement>) => {
  const byCurrency = new Map<string, bigint>()
  for (const s of settled) byCurrency.set(s.currency, (byCurrency.get(s.currency) ?? 0n) + expectedNet(s.gross_minor, s.terms))
  return [...byCurrency.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([currency, amount]) => ({ currency, amount: Number(amount) }))
}

const settlementReference = (paymentId: string) => `payment:${paymentId}:settlement`

/** `ledger_verify()` returns nothing. */
export const assertLedgerVerifies = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* decodeRows(Schema.Struct({ check_name: Schema.String, subject: Schema.String, detail: Schema.String }))(sql`
    SELECT check_name, subject, detail FROM ledger_verify()`)
  assert.deepStrictEqual(rows.map((r) => `${r.check_name} ${r.subject}: ${r.detail}`), [], "ledger_verify() must return nothing")
})

/**
 * The payment is SETTLED, once: one ledger transaction with its settlement reference, one
 * `payment_settlements` row pointing at it with the expected split, the three legs as the docs
 * say, one history row and one `payment_settled` event.
 */
export const assertSettledOnce = (expected: ExpectedSettlement) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const reference = settlementReference(expected.paymentId)
    // The money is the captured amount (partial capture, issue 19); a full capture is the amount.
    const [payment] = yield* decodeRows(Schema.Struct({ status: Schema.String, amount_minor: Schema.NullOr(Schema.BigInt), currency: Schema.String }))(sql`
      SELECT status, captured_amount_minor AS amount_minor, currency FROM payments WHERE id = ${expected.paymentId}`)
    assert.strictEqual(payment?.status, "SETTLED", `payment ${expected.paymentId}`)
    assert.strictEqual(payment?.amount_minor, expected.gross_minor)
    assert.strictEqual(payment?.currency, expected.currency)

    const transactions = yield* decodeRows(Schema.Struct({ id: Schema.BigInt }))(sql`SELECT id FROM transactions WHERE reference = ${reference}`)
    assert.strictEqual(transactions.length, 1, `exactly one ledger transaction ${reference}`)
    const settlements = yield* decodeRows(Schema.Struct({ ledger_transaction_id: Schema.BigInt, gross_minor: Schema.BigInt, fee_minor: Schema.BigInt, net_minor: Schema.BigInt, fee_bps: Schema.Number, fee_fixed_minor: Schema.BigInt }))(sql`
      SELECT ledger_transaction_id, gross_minor, fee_minor, net_minor, fee_bps, fee_fixed_minor
      FROM payment_settlements WHERE payment_id = ${expected.paymentId}`)
    const fee_minor = expectedFee(expected.gross_minor, expected.terms)
    assert.deepStrictEqual(settlements, [{
      ledger_transaction_id: transactions[0]?.id ?? -1n,
      gross_minor: expected.gross_minor,
      fee_minor,
      net_minor: expected.gross_minor - fee_minor,
      fee_bps: expected.terms.fee_bps,
      fee_fixed_minor: expected.terms.fee_fixed_minor
    }])

    // The legs: receivable debited gross; merchant payable credited net; fees credited fee (a
    // zero leg is left out).
    const legs = yield* decodeRows(Schema.Struct({ code: Schema.String, side: Schema.String, amount_minor: Schema.BigInt }))(sql`
      SELECT a.code, e.side::text AS side, e.amount_minor
      FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
      WHERE e.transaction_id = ${transactions[0]?.id ?? -1n}
      ORDER BY e.side::text, a.code`)
    const [merchant] = yield* decodeRows(Schema.Struct({ merchant_id: Schema.String }))(sql`SELECT merchant_id FROM payments WHERE id = ${expected.paymentId}`)
    const net_minor = expected.gross_minor - fee_minor
    const expectedLegs = [
      ...(net_minor > 0n ? [{ code: `merchant:${merchant?.merchant_id}:payable:${expected.currency}`, side: "credit", amount_minor: net_minor }] : []),
      ...(fee_minor > 0n ? [{ code: `platform:fees:${expected.currency}`, side: "credit", amount_minor: fee_minor }] : []),
      { code: `acquirer:receivable:${expected.currency}`, side: "debit", amount_minor: expected.gross_minor }
    ].sort((a, b) => (`${a.side} ${a.code}` < `${b.side} ${b.code}` ? -1 : 1))
    assert.deepStrictEqual(legs, expectedLegs)

    const [trail] = yield* decodeRows(Schema.Struct({ history: Schema.BigInt, events: Schema.BigInt }))(sql`
      SELECT (SELECT count(*) FROM payment_status_history WHERE payment_id = ${expected.paymentId} AND to_status = 'SETTLED') AS history,
             (SELECT count(*) FROM outbox_events WHERE aggregate_id = ${expected.paymentId} AND event_type = 'payment_settled') AS events`)
    assert.deepStrictEqual(trail, { history: 1n, events: 1n }, "one SETTLED history row and one payment_settled event")
  })

/** Nothing of a settlement exists for the payment: still AUTHORIZED, no posting, no row, no history, no event. */
export const assertNotSettled = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ status: Schema.String, transactions: Schema.BigInt, settlements: Schema.BigInt, history: Schema.BigInt, events: Schema.BigInt }))(sql`
      SELECT p.status,
             (SELECT count(*) FROM transactions WHERE reference = ${settlementReference(paymentId)}) AS transactions,
             (SELECT count(*) FROM payment_settlements WHERE payment_id = ${paymentId}) AS settlements,
             (SELECT count(*) FROM payment_status_history WHERE payment_id = ${paymentId} AND to_status = 'SETTLED') AS history,
             (SELECT count(*) FROM outbox_events WHERE aggregate_id = ${paymentId} AND event_type = 'payment_settled') AS events
      FROM payments p WHERE p.id = ${paymentId}`)
    assert.deepStrictEqual(row, { status: "AUTHORIZED", transactions: 0n, settlements: 0n, history: 0n, events: 0n })
  })

/**
 * The whole database agrees with itself: `ledger_verify()` is empty; settlement postings,
 * settlement rows and SETTLED payments are the same set; per currency the receivable holds the
 * gross of every SETTLED payment and equals Σ payables + fees.
 */
export const assertBooksConsistent = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* assertLedgerVerifies
  const mismatched = yield* decodeRows(Schema.Struct({ id: Schema.String, status: Schema.String, transactions: Schema.BigInt, settlements: Schema.BigInt }))(sql`
    SELECT p.id, p.status,
           (SELECT count(*) FROM transactions t WHERE t.reference = 'payment:' || p.id || ':settlement') AS transactions,
           (SELECT count(*) FROM payment_settlements s WHERE s.payment_id = p.id) AS settlements
    FROM payments p
    WHERE (p.status = 'SETTLED') IS DISTINCT FROM (
            (SELECT count(*) FROM transactions t WHERE t.reference = 'payment:' || p.id || ':settlement') = 1
            AND (SELECT count(*) FROM payment_settlements s WHERE s.payment_id = p.id) = 1)
       OR (SELECT count(*) FROM transactions t WHERE t.reference = 'payment:' || p.id || ':settlement') > 1`)
  assert.deepStrictEqual(mismatched, [], "every SETTLED payment has one posting and one settlement row; no other payment has any")
  const [orphans] = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`
    SELECT count(*) AS n FROM transactions t
    WHERE t.reference LIKE 'payment:%:settlement'
      AND NOT EXISTS (SELECT 1 FROM payments p WHERE 'payment:' || p.id || ':settlement' = t.reference AND p.status = 'SETTLED')`)
  assert.strictEqual(orphans?.n, 0n, "no settlement posting without its SETTLED payment")

  const perCurrency = yield* decodeRows(Schema.Struct({ currency: Schema.String, settled_gross: Schema.String, receivable: Schema.String, payables: Schema.String, fees: Schema.String }))(sql`
    WITH c AS (SELECT DISTINCT currency FROM accounts WHERE code LIKE 'acquirer:receivable:%')
    SELECT c.currency,
           (SELECT coalesce(sum(captured_amount_minor), 0) FROM payments WHERE status = 'SETTLED' AND currency = c.currency)::text AS settled_gross,
           (SELECT coalesce(sum(b.balance_minor), 0) FROM accounts a JOIN account_balances b ON b.account_id = a.id
             WHERE a.code = 'acquirer:receivable:' || c.currency)::text AS receivable,
           (SELECT coalesce(sum(b.balance_minor), 0) FROM accounts a JOIN account_balances b ON b.account_id = a.id
             WHERE a.code LIKE 'merchant:%:payable:' || c.currency)::text AS payables,
           (SELECT coalesce(sum(b.balance_minor), 0) FROM accounts a JOIN account_balances b ON b.account_id = a.id
             WHERE a.code = 'platform:fees:' || c.currency)::text AS fees
    FROM c ORDER BY c.currency`)
  for (const row of perCurrency) {
    assert.strictEqual(row.receivable, row.settled_gross, `${row.currency}: receivable = Σ gross of SETTLED payments`)
    assert.strictEqual(BigInt(row.payables) + BigInt(row.fees), BigInt(row.receivable), `${row.currency}: receivable = payables + fees`)
  }
})

/** `performed_count` and `request_count` of an acquirer reference (none when never asked). */
export const acquirerOperation = (reference: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* decodeRows(Schema.Struct({ performed_count: Schema.Number, request_count: Schema.Number }))(sql`
      SELECT performed_count, request_count FROM acquirer_sim.operations WHERE reference = ${reference}`)
    return rows
  })

/** How many capture operations the acquirer holds for a payment (a second one would be a double charge). */
export const acquirerCaptures = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ n: Schema.BigInt, performed: Schema.NullOr(Schema.BigInt) }))(sql`
      SELECT count(*) AS n, sum(performed_count) AS performed FROM acquirer_sim.operations
      WHERE payment_id = ${paymentId} AND operation = 'capture'`)
    return { operations: Number(row?.n ?? -1n), performed: Number(row?.performed ?? 0n) }
  })
