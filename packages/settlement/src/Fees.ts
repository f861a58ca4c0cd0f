/**
 * The fee a merchant pays on a settled payment: a percentage in basis points (1 bp = 0.01 %) plus
 * a fixed amount in minor units of the payment's currency.
 *
 * The one rounding rule: the percentage part is rounded half up to a whole minor unit
 * (`(gross × bps + 5 000) ÷ 10 000`, integer division), then the fixed part is added, and the fee
 * is capped at the gross amount so the merchant's net is never negative. Integers only: no float
 * ever touches an amount.
 */
export interface FeeSchedule {
  /** 0..10 000 (0 % to 100 %). */
  readonly fee_bps: number
  readonly fee_fixed_minor: bigint
}

export interface FeeSplit {
  readonly gross_minor: bigint
  readonly fee_minor: bigint
  readonly net_minor: bigint
}

export const BPS_PER_UNIT = 10_000n

export const computeFee = (gross_minor: bigint, schedule: FeeSchedule): FeeSplit => {
  if (gross_minor <= 0n) throw new RangeError(`gross must be positive, got ${gross_minor}`)
  if (!Number.isInteger(schedule.fee_bps) || schedule.fee_bps < 0 || schedule.fee_bps > 10_000) {
    throw new RangeError(`fee_bps must be an integer within 0..10000, got ${schedule.fee_bps}`)
  }
  if (schedule.fee_fixed_minor < 0n) throw new RangeError(`fee_fixed_minor must be >= 0, got ${schedule.fee_fixed_minor}`)
  const percentage_minor = (gross_minor * BigInt(schedule.fee_bps) + BPS_PER_UNIT / 2n) / BPS_PER_UNIT
  const uncapped = percentage_minor + schedule.fee_fixed_minor
  const fee_minor = uncapped > gross_minor ? gross_minor : uncapped
  return { gross_minor, fee_minor, net_minor: gross_minor - fee_minor }
}

/** The exponent the configured default fixed fee is written for: minor units of a two-decimal currency. */
export const DEFAULT_FIXED_FEE_EXPONENT = 2

/**
 * The platform default's fixed part in a currency of the given exponent. The default is
 * configured once (`SETTLEMENT_FEE_FIXED_MINOR`), in minor units of a two-decimal currency (30 =
 * 0.30 of the major unit). Charging "30 minor units" everywhere would be 30 fils in KWD and 30 đồng
 * in VND (issue 11); instead the same fraction of the major unit is charged, scaled by
 * 10^(exponent − 2) and rounded half up to a whole minor unit: KWD 0.300 (300 fils), JPY and VND
 * 0.3 → 0 (no fixed part at all). A merchant's own schedule for a currency (`fees set`) replaces
 * the default entirely.
 */
export const scaleFixedFeeToExponent = (fixed_minor: bigint, exponent: number): bigint => {
  if (fixed_minor < 0n) throw new RangeError(`fixed fee must be >= 0, got ${fixed_minor}`)
  if (!Number.isInteger(exponent) || exponent < 0 || exponent > 4) throw new RangeError(`exponent must be an integer within 0..4, got ${exponent}`)
  if (exponent >= DEFAULT_FIXED_FEE_EXPONENT) return fixed_minor * 10n ** BigInt(exponent - DEFAULT_FIXED_FEE_EXPONENT)
  const divisor = 10n ** BigInt(DEFAULT_FIXED_FEE_EXPONENT - exponent)
  return (fixed_minor + divisor / 2n) / divisor
}

/** The platform default in a currency of the given exponent: the same bps, the fixed part scaled. */
export const defaultScheduleForExponent = (base: FeeSchedule, exponent: number): FeeSchedule => ({
  fee_bps: base.fee_bps,
  fee_fixed_minor: scaleFixedFeeToExponent(base.fee_fixed_minor, exponent)
})
