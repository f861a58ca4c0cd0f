import { Effect, Schema } from "effect"

/**
 * Ids are `<prefix>_<24 chars>`: a readable prefix says what the id names (`pay_`, `mer_`), so an
 * id pasted into a support ticket or a log line explains itself, and an id of the wrong kind is
 * rejected at the edge instead of producing a confusing "not found".
 *
 * The body is 120 random bits (15 bytes from the platform CSPRNG) written in lowercase Crockford
 * base32 (`0-9a-z` without `i l o u`, which are easily confused when read aloud or copied by hand).
 * Random rather than sequential: ids are not guessable and leak no volume information.
 *
 * The same patterns are CHECK constraints in `migrations/0003_payments.sql`.
 */
const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
const bodyLength = 24
const body_bytes = 15 // 15 bytes * 8 bits = 120 bits = 24 symbols * 5 bits

export const paymentIdPattern = /^pay_[0-9a-hjkmnp-tv-z]{24}$/u
export const merchantIdPattern = /^mer_[0-9a-hjkmnp-tv-z]{24}$/u

/**
 * A UUID as PostgreSQL's `uuid` reads it (hyphenated, either case): ids that are UUIDs (outbox
 * events, deliveries, API keys, idempotency keys) are checked with it before they reach a `uuid`
 * column, where any other text is an SQL error (22P02), not a "not found".
 */
export const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const randomBody = (): string => {
  const bytes = new Uint8Array(body_bytes)
  globalThis.crypto.getRandomValues(bytes)
  let body = ""
  let buffer = 0
  let bufferedBits = 0
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte
    bufferedBits += 8
    while (bufferedBits >= 5) {
      bufferedBits -= 5
      body += alphabet.charAt((buffer >> bufferedBits) & 31)
    }
    buffer &= (1 << bufferedBits) - 1 // keep only the bits not yet written
  }
  if (body.length !== bodyLength) throw new Error(`id body has ${body.length} symbols, expected ${bodyLength}`)
  return body
}

export const PaymentId = Schema.String.check(
  Schema.isPattern(paymentIdPattern, {
    message: "a payment id is \"pay_\" followed by 24 lowercase base32 characters"
  })
).pipe(Schema.brand("PaymentId"))
export type PaymentId = typeof PaymentId.Type

export const MerchantId = Schema.String.check(
  Schema.isPattern(merchantIdPattern, {
    message: "a merchant id is \"mer_\" followed by 24 lowercase base32 characters"
  })
).pipe(Schema.brand("MerchantId"))
export type MerchantId = typeof MerchantId.Type

/** A fresh payment id. An Effect because it draws randomness (not referentially transparent). */
export const generatePaymentId: Effect.Effect<PaymentId> = Effect.sync(() => PaymentId.make(`pay_${randomBody()}`))

/** A fresh merchant id. */
export const generateMerchantId: Effect.Effect<MerchantId> = Effect.sync(() => MerchantId.make(`mer_${randomBody()}`))
