import { isCurrencyCode, type MerchantId, minorUnitExponent } from "@pay/domain"
import { boundedInt } from "@pay/infra"
import { Config, Context, Effect, Layer, Option, Schema } from "effect"
import { SqlClient, SqlSchema } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { computeFee, defaultScheduleForExponent, type FeeSchedule } from "./Fees.ts"

/** Bounds of a fee schedule, the same as the `merchant_fee_schedules` CHECKs. */
export const feeScheduleBounds = {
  fee_bps: { min: 0, max: 10_000 },
  fee_fixed_minor: { min: 0, max: 99_999_999_999 }
} as const

/**
 * The platform's default when a merchant has no schedule for the currency: 2.90 % + 0.30 of the
 * major unit (`SETTLEMENT_FEE_BPS` 0..10000; `SETTLEMENT_FEE_FIXED_MINOR` 0..99999999999, in minor
 * units of a two-decimal currency, scaled to each currency's exponent by
 * `scaleFixedFeeToExponent`: USD 30, KWD 300, JPY and VND 0).
 */
export const DefaultFeeScheduleConfig: Config.Config<FeeSchedule> = Config.all({
  fee_bps: boundedInt("SETTLEMENT_FEE_BPS", feeScheduleBounds.fee_bps, 290),
  fee_fixed_minor: boundedInt("SETTLEMENT_FEE_FIXED_MINOR", feeScheduleBounds.fee_fixed_minor, 30).pipe(Config.map(BigInt))
})

const FeeScheduleRow = Schema.Struct({ fee_bps: Schema.Int, fee_fixed_minor: Schema.BigInt })

/** Per-merchant, per-currency fees (`merchant_fee_schedules`), with the platform default behind. */
export class FeeSchedules extends Context.Service<FeeSchedules, {
  readonly get: (merchantId: MerchantId, currency: string) => Effect.Effect<FeeSchedule, SqlError>
  /**
   * The schedule that applies, given what a caller's own statement read from
   * `merchant_fee_schedules` for the merchant and currency (None: no row, the platform default).
   * `get` without its round trip, for a statement that read the row already (the settle's gate).
   */
  readonly resolve: (found: Option.Option<FeeSchedule>, currency: string) => Effect.Effect<FeeSchedule>
  readonly set: (merchantId: MerchantId, currency: string, schedule: FeeSchedule) => Effect.Effect<void, SqlError>
}>()("settlement/FeeSchedules") {
  /** `fallback`: the platform default as configured, for a two-decimal currency (scaled per currency on read). */
  static readonly layerWith = (fallback: FeeSchedule) =>
    Layer.effect(
      FeeSchedules,
      Effect.gen(function* () {
        // Validates the default once, at start-up: a bad configuration fails loudly here.
        computeFee(1n, fallback)
        const sql = yield* SqlClient.SqlClient
        const find = SqlSchema.findOneOption({
          Request: Schema.Struct({ merchantId: Schema.String, currency: Schema.String }),
          Result: FeeScheduleRow,
          execute: ({ merchantId, currency }) => sql`
            SELECT fee_bps, fee_fixed_minor FROM merchant_fee_schedules
            WHERE merchant_id = ${merchantId} AND currency = ${currency}`
        })
        const resolve = (found: Option.Option<FeeSchedule>, currency: string) =>
          Option.match(found, {
            onSome: Effect.succeed,
            onNone: () =>
              isCurrencyCode(currency)
                ? Effect.succeed(defaultScheduleForExponent(fallback, minorUnitExponent(currency)))
                // Every caller passes a validated payment's currency: anything else is a bug.
                : Effect.die(new Error(`no default fee for ${JSON.stringify(currency)}: not a supported currency`))
          })
        return FeeSchedules.of({
          resolve,
          get: (merchantId, currency) =>
            find({ merchantId, currency }).pipe(
              // The table's CHECKs guarantee the row's shape: a mismatch is a bug.
              Effect.catchTag("SchemaError", Effect.die),
              Effect.flatMap((found) => resolve(found, currency))
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
