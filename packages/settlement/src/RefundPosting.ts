import type { CurrencyCode, MerchantId, Refund } from "@pay/domain"
import { Ledger } from "@pay/ledger"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { acquirerReceivable, merchantPayable, platformFees } from "./Accounts.ts"
import { proportionalFeeShare } from "./RefundFees.ts"
import { SettlementUnavailable, unavailableOrDefect } from "./SettlementPosting.ts"

/** The refund's reversal posting reference: unique in the ledger, so a refund moves money once. */
export const refundReference = (paymentId: string, refundId: string): string => `payment:${paymentId}:refund:${refundId}`

const BalanceRow = Schema.Struct({ balance_minor: Schema.BigInt })
const decodeBalance = Schema.decodeUnknownEffect(Schema.Array(BalanceRow))
const FeeBasisRow = Schema.Struct({ fee_minor: Schema.BigInt, captured_minor: Schema.BigInt, fee_returned: Schema.Boolean })
const decodeFeeBasis = Schema.decodeUnknownEffect(Schema.Array(FeeBasisRow))

/** A refund's share of the payment's fee, and what of it goes back (the share, or 0 when the fee is kept). */
export interface FeeShare {
  readonly fee_share_minor: bigint
  readonly fee_returned_minor: bigint
}

/** What a posted refund did: its ledger transaction, and the fee it gave back (0 when kept). */
export interface PostedRefund {
  readonly ledgerTransactionId: bigint
  readonly fee_returned_minor: bigint
}

/**
 * What a succeeded refund does to the money (docs/refunds.md), inside the caller's transaction
 * (which holds the payment's row lock: the fee basis below is stable): ONE balanced ledger
 * transaction that reverses the refunded amount, the acquirer receivable credited. **By default the
 * fee is kept**: the merchant's payable is debited the whole refund. A merchant whose fee is
 * returned (`RefundFeeSettings`) is debited the refund less its fee share (`feeShare`, decided at
 * the reservation and stored on the refund: `proportionalFeeShare`), the platform's fees the share. The payable never goes negative
 * (the ledger refuses it), which the use case checks before the acquirer is asked (`payableBalance`).
 */
export class RefundPosting extends Context.Service<RefundPosting, {
  readonly post: (refund: Refund) => Effect.Effect<PostedRefund, SettlementUnavailable>
  /** A refund's fee share and what of it it returns (0 when the merchant's fee is kept), decided at its reservation. */
  readonly feeShare: (
    merchantId: MerchantId,
    paymentId: string,
    before: { readonly refunded_minor: bigint; readonly shares_minor: bigint },
    amount_minor: bigint
  ) => Effect.Effect<FeeShare, SettlementUnavailable>
  /** The merchant's payable balance in the currency (0 before its first settlement). */
  readonly payableBalance: (merchantId: MerchantId, currency: CurrencyCode) => Effect.Effect<bigint, SettlementUnavailable>
}>()("settlement/RefundPosting") {
  static readonly layer = Layer.effect(
    RefundPosting,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const ledger = yield* Ledger

      /**
       * A refund of `amount_minor`'s fee share, decided at its reservation (under the payment's row
       * lock and the merchant's setting lock): the cumulative rule over the payment's refunds not
       * FAILED so far (`before`: their amounts and their stored shares), returned when the
       * merchant's fee is, else kept (0 returned, the share still counted as taken). One statement
       * reads the setting and the fee basis.
       */
      const feeShare = (merchantId: MerchantId, paymentId: string, before: { readonly refunded_minor: bigint; readonly shares_minor: bigint }, amount_minor: bigint) =>
        Effect.gen(function* () {
          const rows = yield* sql`
            SELECT ps.fee_minor, p.captured_amount_minor AS captured_minor,
                   coalesce((SELECT s.fee_returned FROM merchant_refund_settings s WHERE s.merchant_id = ${merchantId}), false) AS fee_returned
            FROM payments p JOIN payment_settlements ps ON ps.payment_id = p.id WHERE p.id = ${paymentId}`.pipe(
            Effect.flatMap(decodeFeeBasis),
            Effect.catchTag("SchemaError", Effect.die)
          )
          const basis = rows[0]
          if (basis === undefined) return yield* Effect.die(new Error(`payment ${paymentId} has no settlement`))
          const fee_share_minor = proportionalFeeShare({
            fee_minor: basis.fee_minor,
            captured_minor: basis.captured_minor,
            refunded_before_minor: before.refunded_minor,
            shares_before_minor: before.shares_minor,
            amount_minor
          })
          return { fee_share_minor, fee_returned_minor: basis.fee_returned ? fee_share_minor : 0n }
        }).pipe(Effect.catchTag("SqlError", unavailableOrDefect(paymentId)))

      const post = Effect.fn("RefundPosting.post")(function* (refund: Refund) {
        const fee_returned_minor = refund.fee_returned_minor
        const [payable, receivable, fees] = yield* Effect.all([
          ledger.ensureAccount(merchantPayable(refund.merchant_id, refund.currency)),
          ledger.ensureAccount(acquirerReceivable(refund.currency)),
          ledger.ensureAccount(platformFees(refund.currency))
        ])
        const leg = (account: string, amount_minor: bigint) => ({ account, amount_minor, currency: refund.currency })
        const payable_minor = refund.amount_minor - fee_returned_minor
        const posted = yield* ledger.postTransaction({
          reference: refundReference(refund.payment_id, refund.id),
          description: `refund ${refund.id} of ${refund.payment_id} (${fee_returned_minor === 0n ? "fee kept" : `fee returned ${fee_returned_minor}`})`,
          debits: [
            ...(payable_minor > 0n ? [leg(payable.code, payable_minor)] : []),
            ...(fee_returned_minor > 0n ? [leg(fees.code, fee_returned_minor)] : [])
          ],
          credits: [leg(receivable.code, refund.amount_minor)]
        })
        if (posted.replayed) {
          // A refund succeeds once (its row moves PENDING -> SUCCEEDED once): a replay is a bug upstream.
          return yield* Effect.die(new Error(`refund ${refund.id} was already posted (ledger transaction ${posted.transaction.id})`))
        }
        return { ledgerTransactionId: posted.transaction.id, fee_returned_minor }
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
          Effect.catchTag("SqlError", unavailableOrDefect("-"))
        )

      return RefundPosting.of({ post, payableBalance, feeShare })
    })
  )
}
