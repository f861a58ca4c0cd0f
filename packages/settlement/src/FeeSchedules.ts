import type { MerchantId } from "@pay/domain"
import { Config, Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { computeFee, type FeeSchedule } from "./Fees.ts"

/** The platform's default when a merchant has no schedule for the currency: 2.90 % + 30 minor units. */
export const DefaultFeeScheduleConfig: Config.Config<FeeSchedule> = Config.all({
  fee_bps: Config.Int("SETTLEMENT_FEE_BPS").pipe(Config.withDefault(290)),
  fee_fixed_minor: Config.Int("SETTLEMENT_FEE_FIXED_MINOR").pipe(Config.withDefault(30), Config.map(BigInt))
})

/** Per-merchant, per-currency fees (`merchant_fee_schedules`), with the platform default behind. */
export class FeeSchedules extends Context.Service<FeeSchedules, {
  readonly get: (merchantId: MerchantId, currency: string) => Effect.Effect<FeeSchedule, SqlError>
  readonly set: (merchantId: MerchantId, currency: string, schedule: FeeSchedule) => Effect.Effect<void, SqlError>
}>()("settlement/FeeSchedules") {
  static readonly layerWith = (fallback: FeeSchedule) =>
    Layer.effect(
      FeeSchedules,
      Effect.gen(function* () {
        // Validates the default once, at start-up: a bad configuration fails loudly here.
        computeFee(1n, fallback)
        const sql = yield* SqlClient.SqlClient
        return FeeSchedules.of({
          get: (merchantId, currency) =>
            sql<{ fee_bps: number; fee_fixed_minor: bigint }>`
              SELECT fee_bps, fee_fixed_minor FROM merchant_fee_schedules
              WHERE merchant_id = ${merchantId} AND currency = ${currency}`.pipe(
              Effect.map((rows) => rows[0] ?? fallback)
            ),
          set: (merchantId, currency, schedule) =>
            sql`
              INSERT INTO merchant_fee_schedules (merchant_id, currency, fee_bps, fee_fixed_minor)
              VALUES (${merchantId}, ${currency}, ${schedule.fee_bps}, ${schedule.fee_fixed_minor})
              ON CONFLICT (merchant_id, currency) DO UPDATE
                SET fee_bps = EXCLUDED.fee_bps, fee_fixed_minor = EXCLUDED.fee_fixed_minor, updated_at = now()`.pipe(
              Effect.asVoid
            )
        })
      })
    )

  static readonly layer = Layer.unwrap(Effect.map(DefaultFeeScheduleConfig, FeeSchedules.layerWith))
}
