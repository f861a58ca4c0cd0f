import { Currency, currencyCodes, type CurrencyCode, type MerchantId } from "@pay/domain"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient, SqlSchema } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { merchantPayable } from "./Accounts.ts"

export interface CurrencyBalance {
  readonly currency: CurrencyCode
  /** What the platform owes the merchant in this currency: Σ(gross − fee) of its settled payments. */
  readonly balance_minor: bigint
}

const BalanceRow = Schema.Struct({ currency: Currency, balance_minor: Schema.BigInt })

/** The codes of a merchant's payable accounts, one per supported currency. */
export const merchantPayableCodes = (merchantId: MerchantId): ReadonlyArray<string> =>
  currencyCodes.map((currency) => merchantPayable(merchantId, currency).code)

/** The balance read (exported so that its plan can be checked: an index probe per code). */
export const payableBalancesStatement = (sql: SqlClient.SqlClient, codes: ReadonlyArray<string>) => sql`
  SELECT a.currency, b.balance_minor
  FROM accounts a JOIN account_balances b ON b.account_id = a.id
  WHERE ${sql.in("a.code", codes)}
  ORDER BY a.currency`

/**
 * The merchant's payable balances, read from the ledger's stored balances (`GET /v1/balance`).
 *
 * The accounts are named by their codes (`merchant:<id>:payable:<CUR>`, one per supported
 * currency), so the read is a probe of the unique index on `accounts.code` per currency, however
 * many accounts the ledger holds. (It used to compare `a.code` with an expression of the row's own
 * currency, which no index can serve: a scan of every account on each request. The plan is checked
 * by `packages/settlement/test/merchant-balances.test.ts`.)
 */
export class MerchantBalances extends Context.Service<MerchantBalances, {
  /** One entry per currency the merchant has been paid in, sorted by currency. */
  readonly payable: (merchantId: MerchantId) => Effect.Effect<ReadonlyArray<CurrencyBalance>, SqlError>
}>()("settlement/MerchantBalances") {
  static readonly layer = Layer.effect(
    MerchantBalances,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payable = SqlSchema.findAll({
        Request: Schema.Array(Schema.String),
        Result: BalanceRow,
        execute: (codes) => payableBalancesStatement(sql, codes)
      })
      return MerchantBalances.of({
        payable: (merchantId) =>
          payable(merchantPayableCodes(merchantId)).pipe(
            // The ledger's CHECKs guarantee the row's shape: a mismatch is a bug.
            Effect.catchTag("SchemaError", Effect.die),
            Effect.withSpan("MerchantBalances.payable", { attributes: { merchant_id: merchantId } })
          )
      })
    })
  )
}
