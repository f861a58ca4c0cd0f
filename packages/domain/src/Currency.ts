import { Schema } from "effect"

/**
 * ISO 4217 currencies we accept, with their minor-unit exponent: an amount of `1234` minor units
 * means `12.34` in USD (exponent 2), `1234` in JPY (exponent 0) and `1.234` in KWD (exponent 3).
 *
 * The list is deliberately a table in code, not a lookup at runtime: the exponent decides how an
 * amount is displayed and rounded, so it must never depend on a network call or a library update.
 * Adding a currency is a reviewed change here AND in the `payments.currency` CHECK of the
 * migrations (a test compares the two).
 *
 * Exponents follow the ISO 4217 list. Where card networks commonly disagree with ISO (ISK, HUF,
 * TWD, UGX) we keep the ISO value; a processor adapter converts at its edge. BGN is absent on
 * purpose: Bulgaria adopted the euro on 2026-01-01.
 */
export const currencyExponents = {
  // Zero-decimal currencies
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0,
  VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  // Three-decimal currencies
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  // Two-decimal currencies (the common ones)
  AED: 2, ARS: 2, AUD: 2, BRL: 2, CAD: 2, CHF: 2, CNY: 2, COP: 2, CZK: 2, DKK: 2,
  EGP: 2, EUR: 2, GBP: 2, HKD: 2, HUF: 2, IDR: 2, ILS: 2, INR: 2, KES: 2, MAD: 2, MXN: 2,
  MYR: 2, NGN: 2, NOK: 2, NZD: 2, PEN: 2, PHP: 2, PKR: 2, PLN: 2, QAR: 2, RON: 2, RSD: 2,
  SAR: 2, SEK: 2, SGD: 2, THB: 2, TRY: 2, TWD: 2, UAH: 2, USD: 2, ZAR: 2
} as const satisfies Readonly<Record<string, 0 | 2 | 3>>

export type CurrencyCode = keyof typeof currencyExponents
export type MinorUnitExponent = (typeof currencyExponents)[CurrencyCode]

/** Every accepted code, sorted: the list the migration's CHECK must equal. */
export const currencyCodes: ReadonlyArray<CurrencyCode> = Object.keys(currencyExponents)
  .filter(isCurrencyCode)
  .sort()

export function isCurrencyCode(code: string): code is CurrencyCode {
  return Object.hasOwn(currencyExponents, code)
}

export const minorUnitExponent = (currency: CurrencyCode): MinorUnitExponent => currencyExponents[currency]

/**
 * A currency code accepted by the platform. Unknown codes (including lowercase spellings and
 * real ISO codes we do not support yet) are rejected with a message that names the input.
 */
export const Currency = Schema.String.check(
  Schema.makeFilter(
    (code: string) =>
      isCurrencyCode(code) ||
      `unknown currency ${JSON.stringify(code)}: expected an upper-case ISO 4217 code the platform supports (e.g. USD, EUR, JPY, KWD)`,
    { expected: "a supported ISO 4217 currency code", toJsonSchema: () => ({ enum: [...currencyCodes] }) },
    true
  )
).pipe(Schema.refine(isCurrencyCode, { expected: "a supported ISO 4217 currency code" }))
export type Currency = typeof Currency.Type
