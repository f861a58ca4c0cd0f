import type { MerchantId } from "@pay/domain"
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"

/**
 * A refund's share of the payment's fee under the proportional rule (docs/refunds.md, the same rule
 * as `migrations/0116_refund_fee_share_stored.sql`), decided at its reservation and stored on it
 * whether the merchant's fee is returned (the share goes back) or kept (0 goes back; the share
 * still counts as taken):
 *   clamp(floor(fee × (refunded_before + amount) / captured) − shares_before, 0, amount)
 * where `refunded_before` and `shares_before` are the amounts and the stored shares of the
 * payment's refunds not FAILED. Cumulative and rounded down: the shares of refunds totalling T sum
 * to floor(fee × T / captured) (they telescope), never above the proportional share, and to the
 * whole fee once the whole capture is refunded, whatever the split, also after a PENDING refund
 * FAILED (its share no longer counts: outside re-tests found 0062's form, which re-derived the
 * earlier shares from the amounts, returning 36 of a fee of 35 one way and 34 the other). Integer
 * minor units of the payment's currency (bigint: no overflow, no float), so every exponent (JPY 0,
 * EUR 2, KWD 3) alike.
 */
export const proportionalFeeShare = (input: {
  readonly fee_minor: bigint
  readonly captured_minor: bigint
  readonly refunded_before_minor: bigint
  readonly shares_before_minor: bigint
  readonly amount_minor: bigint
}): bigint => {
  const { fee_minor, captured_minor, refunded_before_minor, shares_before_minor, amount_minor } = input
  if (
    captured_minor <= 0n || fee_minor < 0n || refunded_before_minor < 0n || shares_before_minor < 0n || amount_minor <= 0n ||
    refunded_before_minor + amount_minor > captured_minor
  ) {
    throw new RangeError(`fee share of a refund out of bounds: ${JSON.stringify({ ...input }, (_, value: unknown) => (typeof value === "bigint" ? String(value) : value))}`)
  }
  const share = (fee_minor * (refunded_before_minor + amount_minor)) / captured_minor - shares_before_minor
  return share < 0n ? 0n : share > amount_minor ? amount_minor : share
}

/**
 * The advisory lock between a merchant's refund reservations (shared: they run side by side) and a
 * change of its setting (exclusive): a reservation reads the setting, and the refunds' insert
 * trigger reads it again (migration 0062), so a change between the two made the database refuse
 * the refund as breaking the rule: a 500 (outside refund attack). The change now waits for the
 * reservations in flight, and a new one for the change. The key as SQL, for the reservation's
 * own lock statement.
 */
export const refundSettingsLockKey = (merchantId: MerchantId): string => `refund-settings:${merchantId}`

/**
 * Per merchant: is the platform's fee returned on a refund (`merchant_refund_settings`)? Kept
 * (false) when the merchant has no row: the default (read by `RefundPosting.feeShare`). Set by an operator (`pnpm cli refunds
 * fee-returned <merchant id> true|false`); applies to refunds reserved after the change.
 */
export class RefundFeeSettings extends Context.Service<RefundFeeSettings, {
  readonly set: (merchantId: MerchantId, fee_returned: boolean) => Effect.Effect<void, SqlError>
}>()("settlement/RefundFeeSettings") {
  static readonly layer = Layer.effect(
    RefundFeeSettings,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      return RefundFeeSettings.of({
        set: (merchantId, fee_returned) =>
          sql.withTransaction(Effect.gen(function* () {
            yield* sql`SELECT pg_advisory_xact_lock(hashtextextended(${refundSettingsLockKey(merchantId)}, 0))`
            yield* sql`
              INSERT INTO merchant_refund_settings (merchant_id, fee_returned) VALUES (${merchantId}, ${fee_returned})
              ON CONFLICT (merchant_id) DO UPDATE SET fee_returned = EXCLUDED.fee_returned, updated_at = now()`
          }))
      })
    })
  )
}
