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
