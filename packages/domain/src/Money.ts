import { Schema, SchemaTransformation } from "effect"
import { Currency, type CurrencyCode, minorUnitExponent } from "./Currency.ts"

/**
 * The largest amount of one payment, in minor units: 99 999 999 999 (just under 1e11).
 *
 * Why this number:
 * - It survives JSON as a plain number exactly (far below Number.MAX_SAFE_INTEGER, 2^53 - 1 ≈ 9e15),
 *   so the API, the events and every consumer can use JSON integers without a string encoding.
 * - It is a business limit, not a technical one: 999 999 999.99 in a two-decimal currency,
 *   99 999 999.999 KWD, 99 999 999 999 JPY (~ 650 M USD). Anything bigger is not a card payment
 *   and must go through a different (manual) process.
 * - 90 000 payments at the maximum still sum below 2^53, so even naive number arithmetic in a
 *   report cannot silently lose precision on realistic totals (the ledger uses bigint anyway).
 *
 * The same bound is the `amount_minor` CHECK in `migrations/0003_payments.sql`.
 */
export const AMOUNT_MINOR_MAX = 99_999_999_999n

/** A payment amount in minor units: a bigint, strictly positive, at most {@link AMOUNT_MINOR_MAX}. */
export const AmountMinor = Schema.BigInt.check(
  Schema.isBetweenBigInt(
    { minimum: 1n, maximum: AMOUNT_MINOR_MAX },
    { message: `amount_minor must be an integer between 1 and ${AMOUNT_MINOR_MAX} (minor units)` }
  )
).pipe(Schema.brand("AmountMinor"))
export type AmountMinor = typeof AmountMinor.Type

/**
 * The JSON form of {@link AmountMinor}: a JSON integer (never a float, never a string). Decoding
 * rejects 12.5, "1250", 0, negatives and anything above the maximum.
 */
export const AmountMinorFromJsonNumber = Schema.Int.check(
  Schema.isBetween(
    { minimum: 1, maximum: Number(AMOUNT_MINOR_MAX) },
    { message: `amount_minor must be an integer between 1 and ${AMOUNT_MINOR_MAX} (minor units)` }
  )
).pipe(
  Schema.decodeTo(
    AmountMinor,
    SchemaTransformation.transform({
      decode: (amount: number) => BigInt(amount),
      // Exact: the value is at most AMOUNT_MINOR_MAX, well inside the safe-integer range.
      encode: (amount: bigint) => Number(amount)
    })
  )
)

/** An amount with its currency. */
export const Money = Schema.Struct({
  amount_minor: AmountMinor,
  currency: Currency
})
export type Money = typeof Money.Type

/**
 * Human-readable rendering for logs and docs ("12.34 USD", "1234 JPY", "1.234 KWD"), computed
 * with bigint arithmetic only: never a float on the money path.
 */
export const formatMoney = (amount_minor: bigint, currency: CurrencyCode): string => {
  const exponent = minorUnitExponent(currency)
  const negative = amount_minor < 0n
  const digits = (negative ? -amount_minor : amount_minor).toString()
  if (exponent === 0) return `${negative ? "-" : ""}${digits} ${currency}`
  const padded = digits.padStart(exponent + 1, "0")
  const major = padded.slice(0, padded.length - exponent)
  const minor = padded.slice(padded.length - exponent)
  return `${negative ? "-" : ""}${major}.${minor} ${currency}`
}
