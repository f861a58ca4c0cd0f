import type { MerchantId } from "@pay/domain"
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"

export interface CurrencyBalance {
  readonly currency: string
  /** Minor units; exact (bounded by the ledger's bigint). */
  readonly amount: number
}

const toSafeNumber = (value: bigint): number => {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`balance ${value} does not fit a JSON number exactly`)
  }
  return Number(value)
}

/** The merchant's payable balance per currency, read from the ledger's stored balances. */
export class BalanceReader extends Context.Service<BalanceReader, {
  readonly payable: (merchantId: MerchantId) => Effect.Effect<ReadonlyArray<CurrencyBalance>, SqlError>
}>()("server/BalanceReader") {
  static readonly layer = Layer.effect(
    BalanceReader,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      return BalanceReader.of({
        payable: (merchantId) =>
          sql<{ currency: string; balance_minor: bigint }>`
            SELECT a.currency, b.balance_minor
            FROM accounts a JOIN account_balances b ON b.account_id = a.id
            WHERE a.code = 'merchant:' || ${merchantId} || ':payable:' || a.currency
            ORDER BY a.currency`.pipe(
            Effect.map((rows) =>
              rows.map((row): CurrencyBalance => ({
                currency: row.currency,
                // Exact while the balance is below 2^53 minor units; beyond that JSON numbers lose
                // digits, so it is refused loudly rather than rounded.
                amount: toSafeNumber(row.balance_minor)
              }))
            )
          )
      })
    })
  )
}
