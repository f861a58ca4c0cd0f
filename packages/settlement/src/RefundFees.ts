import type { MerchantId } from "@pay/domain"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"

/**
 * The fee a refund gives back when the merchant's fee is returned (docs/refunds.md, the same rule
 * as `migrations/0062_refund_fee_returned.sql`): cumulative and rounded down,
 *   floor(fee × (before + amount) / captured) − floor(fee × before / captured)
 * where `before` is the payment's SUCCEEDED refunds so far. After refunds totalling T the fee
 * returned is exactly floor(fee × T / captured): never above the proportional share, the whole fee
 * once the whole capture is refunded, whatever the split. Integer minor units of the payment's
 * currency (bigint: no overflow, no float), so every exponent (JPY 0, EUR 2, KWD 3) alike.
 */
export const proportionalFeeReturned = (input: {
  readonly fee_minor: bigint
  readonly captured_minor: bigint
  readonly refunded_before_minor: bigint
  readonly amount_minor: bigint
  /**
   * The shares of the payment's refunds not FAILED so far (0 when absent). The rule's share is
   * capped at what is left of the fee: a share decided while a refund was PENDING, and that
   * refund FAILED later, left the next share computed on another base (outside re-test: fee 35,
   * captured 1,000, 1 pending, 999 returning 35, the 1 failed, a new 1 returned 1 more: 36).
   */
  readonly returned_before_minor?: bigint
}): bigint => {
  const { fee_minor, captured_minor, refunded_before_minor, amount_minor } = input
  if (captured_minor <= 0n || fee_minor < 0n || refunded_before_minor < 0n || amount_minor <= 0n || refunded_before_minor + amount_minor > captured_minor) {
    throw new RangeError(`fee share of a refund out of bounds: ${JSON.stringify({ ...input }, (_, value: unknown) => (typeof value === "bigint" ? String(value) : value))}`)
  }
  const rule = (fee_minor * (refunded_before_minor + amount_minor)) / captured_minor - (fee_minor * refunded_before_minor) / captured_minor
  const left = fee_minor - (input.returned_before_minor ?? 0n)
  return rule < left ? rule : left > 0n ? left : 0n
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

const SettingRow = Schema.Struct({ fee_returned: Schema.Boolean })
const decodeSetting = Schema.decodeUnknownEffect(Schema.Array(SettingRow))

/**
 * Per merchant: is the platform's fee returned on a refund (`merchant_refund_settings`)? Kept
 * (false) when the merchant has no row: the default. Set by an operator (`pnpm cli refunds
 * fee-returned <merchant id> true|false`); applies to refunds reserved after the change.
 */
export class RefundFeeSettings extends Context.Service<RefundFeeSettings, {
  readonly feeReturned: (merchantId: MerchantId) => Effect.Effect<boolean, SqlError>
  readonly set: (merchantId: MerchantId, fee_returned: boolean) => Effect.Effect<void, SqlError>
}>()("settlement/RefundFeeSettings") {
  static readonly layer = Layer.effect(
    RefundFeeSettings,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      return RefundFeeSettings.of({
        feeReturned: (merchantId) =>
          sql`SELECT fee_returned FROM merchant_refund_settings WHERE merchant_id = ${merchantId}`.pipe(
            Effect.flatMap(decodeSetting),
            Effect.map((rows) => rows[0]?.fee_returned ?? false),
            Effect.catchTag("SchemaError", Effect.die)
          ),
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
