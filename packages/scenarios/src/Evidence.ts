import { decodeRows } from "@pay/infra"
import { ApiKeys, createMerchantWithKey, MerchantRepository } from "@pay/merchants"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"

/** What the books say, read with the owner's client: each helper is one question an auditor asks. */

const VerifyRow = Schema.Struct({ check_name: Schema.String, subject: Schema.String, detail: Schema.NullOr(Schema.String) })

/** `SELECT * FROM ledger_verify()`: every broken rule of double entry; empty when the books hold. */
export const ledgerVerify = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return yield* decodeRows(VerifyRow)(sql`SELECT check_name, subject, detail FROM ledger_verify()`)
})

const CurrencySum = Schema.Struct({ currency: Schema.String, debit_minus_credit_minor: Schema.String, entries: Schema.BigInt })

/** Per currency, debits minus credits over every entry, in one snapshot: zero when the ledger balances. */
export const currencySums = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return yield* decodeRows(CurrencySum)(sql`
    SELECT currency,
           sum(CASE side WHEN 'debit' THEN amount_minor::numeric ELSE -amount_minor::numeric END)::text AS debit_minus_credit_minor,
           count(*) AS entries
    FROM ledger_entries GROUP BY currency ORDER BY currency`)
})

const PaymentFacts = Schema.Struct({
  status: Schema.String,
  version: Schema.Number,
  settlements: Schema.BigInt,
  postings: Schema.BigInt,
  captures_performed: Schema.BigInt,
  capture_requests: Schema.BigInt,
  outbox_events: Schema.String
})

/**
 * One payment as the database has it: status and version, settlement rows, ledger transactions
 * with its settlement reference, captures the acquirer performed (and was asked for), and its
 * outbox events in order.
 */
export const paymentFacts = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* decodeRows(PaymentFacts)(sql`
      SELECT p.status, p.version,
        (SELECT count(*) FROM payment_settlements s WHERE s.payment_id = p.id) AS settlements,
        (SELECT count(*) FROM transactions t JOIN payment_settlements s ON s.ledger_transaction_id = t.id WHERE s.payment_id = p.id) AS postings,
        (SELECT coalesce(sum(o.performed_count), 0)::bigint FROM acquirer_sim.operations o WHERE o.payment_id = p.id AND o.operation = 'capture') AS captures_performed,
        (SELECT coalesce(sum(o.request_count), 0)::bigint FROM acquirer_sim.operations o WHERE o.payment_id = p.id AND o.operation = 'capture') AS capture_requests,
        (SELECT coalesce(string_agg(e.event_type, ',' ORDER BY e.position), '') FROM outbox_events e WHERE e.aggregate_id = p.id) AS outbox_events
      FROM payments p WHERE p.id = ${paymentId}`)
    const row = rows[0]
    return row === undefined
      ? undefined
      : { ...row, settlements: Number(row.settlements), postings: Number(row.postings), captures_performed: Number(row.captures_performed), capture_requests: Number(row.capture_requests) }
  })

const Count = Schema.Struct({ n: Schema.BigInt })

/** A `SELECT count(*) AS n …` statement's answer, as a number. */
export const countOf = <E, R>(statement: Effect.Effect<ReadonlyArray<unknown>, E, R>) =>
  decodeRows(Count)(statement).pipe(Effect.map((rows) => Number(rows[0]?.n ?? -1)))

/**
 * Runs a count statement (as countOf) again, `step_ms` apart, until `done(count)` holds or
 * `timeout_ms` has passed: a barrier on the database's records, not a sleep. The last count either
 * way; the caller's expectation says what it needed.
 */
export const countUntil = <E, R>(
  statement: Effect.Effect<ReadonlyArray<unknown>, E, R>,
  done: (count: number) => boolean,
  bound: { readonly timeout_ms: number; readonly step_ms: number }
) =>
  Effect.gen(function* () {
    const deadline = Date.now() + bound.timeout_ms
    let count = yield* countOf(statement)
    while (!done(count) && Date.now() < deadline) {
      yield* Effect.sleep(bound.step_ms)
      count = yield* countOf(statement)
    }
    return count
  })

export interface ScenarioMerchant {
  readonly merchantId: string
  readonly apiKey: string
}

/** A merchant and an API key, written as the operator's CLI does (the repositories, on the scenario's database). */
export const createMerchant = (name: string) =>
  Effect.gen(function* () {
    const { merchant, key } = yield* createMerchantWithKey(name)
    const created: ScenarioMerchant = { merchantId: merchant.id, apiKey: Redacted.value(key.secret) }
    return created
  }).pipe(Effect.provide(Layer.mergeAll(MerchantRepository.layer, ApiKeys.layer)))
