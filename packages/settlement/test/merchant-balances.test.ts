// GET /v1/balance's read (MerchantBalances): the merchant's payable balances per currency, read
// by probing the unique index on accounts.code, never by scanning every account.
import { assert, layer } from "@effect/vitest"
import { generateMerchantId } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { Ledger } from "@pay/ledger"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { acquirerReceivable, merchantPayable } from "../src/Accounts.ts"
import { MerchantBalances, merchantPayableCodes, payableBalancesStatement } from "../src/MerchantBalances.ts"

const Live = Layer.mergeAll(MerchantBalances.layer, Ledger.layer).pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 4 })))

const planLines = decodeRows(Schema.Struct({ "QUERY PLAN": Schema.String }))

/**
 * A merchant with a payable in `currency`, credited `amount_minor` against the receivable. Only a
 * settlement or a refund may move a merchant's payable (migrations/0087); what is read here is the
 * ledger's balances however they were posted, so this test database (its own) lets a plain
 * posting through by switching that one trigger off, as its owner.
 */
const credit = (merchantId: string, currency: "USD" | "EUR" | "JPY", amount_minor: bigint) =>
  Effect.gen(function* () {
    yield* (yield* SqlClient.SqlClient)`ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_merchant_payable_reference`
    const ledger = yield* Ledger
    const receivable = yield* ledger.ensureAccount(acquirerReceivable(currency))
    const payable = yield* ledger.ensureAccount(merchantPayable(merchantId, currency))
    yield* ledger.postTransaction({
      reference: `test:${merchantId}:${currency}:${amount_minor}`,
      description: "test credit",
      debits: [{ account: receivable.code, amount_minor, currency }],
      credits: [{ account: payable.code, amount_minor, currency }]
    })
  })

layer(Live, { excludeTestServices: true })("MerchantBalances (real Postgres)", (it) => {
  it.effect("one entry per currency the merchant was paid in, sorted; another merchant's accounts are not read", () =>
    Effect.gen(function* () {
      const balances = yield* MerchantBalances
      const merchant = yield* generateMerchantId
      const other = yield* generateMerchantId
      yield* credit(merchant, "USD", 990n)
      yield* credit(merchant, "USD", 10n)
      yield* credit(merchant, "JPY", 1_234n)
      yield* credit(other, "EUR", 5n)
      assert.deepStrictEqual(yield* balances.payable(merchant), [
        { currency: "JPY", balance_minor: 1_234n },
        { currency: "USD", balance_minor: 1_000n }
      ])
      assert.deepStrictEqual(yield* balances.payable(yield* generateMerchantId), [])
    }))

  it.effect("the plan probes accounts by code through its unique index (the old expression scanned every account)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchant = yield* generateMerchantId
      const plan = (statement: Effect.Effect<ReadonlyArray<unknown>, unknown>) =>
        sql.withTransaction(Effect.gen(function* () {
          // Whatever the statistics of this small table: can an index serve the query at all?
          yield* sql`SET LOCAL enable_seqscan = off`
          return (yield* planLines(statement.pipe(Effect.orDie))).map((row) => row["QUERY PLAN"]).join("\n")
        }))
      const now = yield* plan(sql`EXPLAIN ${payableBalancesStatement(sql, merchantPayableCodes(merchant))}`)
      assert.match(now, /Index (Only )?Scan using accounts_code_key on accounts|Bitmap Index Scan on accounts_code_key/, now)
      assert.match(now, /Index Cond: \(code = /, now)
      assert.notMatch(now, /Seq Scan on accounts/, now)
      const before = yield* plan(sql`
        EXPLAIN SELECT a.currency, b.balance_minor
        FROM accounts a JOIN account_balances b ON b.account_id = a.id
        WHERE a.code = 'merchant:' || ${merchant} || ':payable:' || a.currency
        ORDER BY a.currency`)
      // The expression depends on the row's own currency: no index condition on code is possible,
      // only a walk over every account (a sequential or a full index scan).
      assert.notMatch(before, /Index Cond: \(code = /, before)
    }))
})
