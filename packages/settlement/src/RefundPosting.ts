import type { CurrencyCode, MerchantId, Refund } from "@pay/domain"
import { Ledger } from "@pay/ledger"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { acquirerReceivable, merchantPayable } from "./Accounts.ts"
import { SettlementUnavailable } from "./SettlementPosting.ts"

/** The refund's reversal posting reference: unique in the ledger, so a refund moves money once. */
export const refundReference = (paymentId: string, refundId: string): string => `payment:${paymentId}:refund:${refundId}`

const BalanceRow = Schema.Struct({ balance_minor: Schema.BigInt })
const decodeBalance = Schema.decodeUnknownEffect(Schema.Array(BalanceRow))

/**
 * What a succeeded refund does to the money (docs/refunds.md), inside the caller's transaction:
 * ONE balanced ledger transaction that reverses the refunded amount: the merchant's payable
 * debited, the acquirer receivable credited. **The fee is kept**: the platform's fee revenue is not
 * touched, so the merchant bears the whole refund; its payable never goes negative (the ledger
 * refuses it), which the use case checks before the acquirer is asked (`payableBalance`).
 */
export class RefundPosting extends Context.Service<RefundPosting, {
  readonly post: (refund: Refund) => Effect.Effect<bigint, SettlementUnavailable>
  /** The merchant's payable balance in the currency (0 before its first settlement). */
  readonly payableBalance: (merchantId: MerchantId, currency: CurrencyCode) => Effect.Effect<bigint, SettlementUnavailable>
}>()("settlement/RefundPosting") {
  static readonly layer = Layer.effect(
    RefundPosting,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const ledger = yield* Ledger

      const post = Effect.fn("RefundPosting.post")(function* (refund: Refund) {
        const [payable, receivable] = yield* Effect.all([
          ledger.ensureAccount(merchantPayable(refund.merchant_id, refund.currency)),
          ledger.ensureAccount(acquirerReceivable(refund.currency))
        ])
        const legs = (account: string) => [{ account, amount_minor: refund.amount_minor, currency: refund.currency }]
        const posted = yield* ledger.postTransaction({
          reference: refundReference(refund.payment_id, refund.id),
          description: `refund ${refund.id} of ${refund.payment_id} (fee kept)`,
          debits: legs(payable.code),
          credits: legs(receivable.code)
        })
        if (posted.replayed) {
          // A refund succeeds once (its row moves PENDING -> SUCCEEDED once): a replay is a bug upstream.
          return yield* Effect.die(new Error(`refund ${refund.id} was already posted (ledger transaction ${posted.transaction.id})`))
        }
        return posted.transaction.id
      }, (effect, refund) =>
        effect.pipe(
          Effect.catch((error) =>
            error._tag === "LedgerUnavailable"
              ? Effect.fail(new SettlementUnavailable({ paymentId: refund.payment_id, reason: error.message }))
              : Effect.die(error)
          )
        ))

      const payableBalance = (merchantId: MerchantId, currency: CurrencyCode) =>
        sql`
          SELECT b.balance_minor FROM accounts a JOIN account_balances b ON b.account_id = a.id
          WHERE a.code = ${merchantPayable(merchantId, currency).code}`.pipe(
          Effect.flatMap(decodeBalance),
          Effect.map((rows) => rows[0]?.balance_minor ?? 0n),
          Effect.catchTag("SchemaError", Effect.die),
          Effect.mapError((error) => new SettlementUnavailable({ paymentId: "-", reason: error.message }))
        )

      return RefundPosting.of({ post, payableBalance })
    })
  )
}
