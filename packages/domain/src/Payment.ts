import { Schema } from "effect"
import { Currency } from "./Currency.ts"
import { MerchantId, PaymentId } from "./Ids.ts"
import { AmountMinorFromJsonNumber } from "./Money.ts"
import { cardNumberInTextReason, cardNumberLikePattern, looksLikeCardNumber, tokenHoldsCardDigits } from "./CardNumber.ts"
import { codePointLength, DisplayableText, displayable, displayablePattern, hiddenCharacterReason, StorableText, storableTextJsonSchema, storableTextProblem, unstorableReason } from "./StorableText.ts"

/**
 * The statuses of a payment (CANCELED: canceled by the merchant, before any authorization or by a
 * void of it; EXPIRED: an authorization that lapsed uncaptured; issue 19). Which status may follow which is NOT decided here: the
 * transition table in `PaymentStateMachine.ts` is the single source of that rule.
 */
export const paymentStatuses = ["CREATED", "AUTHORIZED", "SETTLED", "FAILED", "CANCELED", "EXPIRED"] as const
export const PaymentStatus = Schema.Literals(paymentStatuses)
export type PaymentStatus = typeof PaymentStatus.Type

const paymentMethodShape = Schema.isPattern(/^pm_[A-Za-z0-9_]{1,64}$/u, {
  message: "payment_method must be a payment method token: \"pm_\" followed by 1-64 letters, digits or _"
})

/**
 * A reference to a payment method held by the processor/vault (`pm_…`), never card data, as a
 * merchant may send it: 12 or more digits with nothing but separators (`_ - .` space) between them
 * ({@link cardNumberLikePattern}), or a card number in groups of four digits or more split by one
 * or two characters (`pm_4242x4242x4242x4242`: 13 to 19 digits passing the Luhn check) are refused,
 * so that a card number (PAN) pasted by mistake is never stored in our database or logs. The
 * database refuses the same (migration 0080's trigger on the column; 0076's CHECK, dropped by 0084).
 */
export const PaymentMethodToken = Schema.String.check(
  paymentMethodShape,
  Schema.makeFilter(
    (token: string) =>
      !tokenHoldsCardDigits(token) ||
      "payment_method must be a token, not a card number (12 or more digits with only _ - . or spaces between them, or a card number in groups of 4 or more digits split by one or two other characters, are rejected)",
    { toJsonSchema: () => ({ not: { pattern: cardNumberLikePattern } }) }
  )
).pipe(Schema.brand("PaymentMethodToken")).annotate({
  description: "A payment method token from the vault (`pm_card_visa`): \"pm_\" then 1-64 letters, digits or _. Never card data: 12 or more digits with only _ - . or spaces between them, " +
    "or a card number (13-19 digits passing the Luhn check) in groups of 4 or more digits split by one or two other characters (`pm_4242x4242x4242x4242`), are refused (400, field payment_method)"
})
export type PaymentMethodToken = typeof PaymentMethodToken.Type

/**
 * A payment method as the database holds it: its CHECK (migrations 0003, 0072) refused 12
 * consecutive digits only, so rows written before the separator rules (0076, 0080) may hold a
 * grouped number (`pm_4242_4242_4242_4242`, `pm_4242x4242x4242x4242`). Rows are read with this, so such a payment still reads back
 * (never a 500); every new value passes {@link PaymentMethodToken} first.
 */
export const StoredPaymentMethodToken = Schema.String.check(
  paymentMethodShape,
  Schema.makeFilter(
    (token: string) =>
      !/[0-9]{12}/.test(token) ||
      "payment_method must be a token, not a card number (12 or more consecutive digits are rejected)",
    { toJsonSchema: () => ({ not: { pattern: "[0-9]{12}" } }) }
  )
).pipe(Schema.brand("PaymentMethodToken"))

/** Machine-readable reason of a failure, e.g. `card_declined`, `insufficient_funds`. */
export const FailureCode = Schema.String.check(
  Schema.isPattern(/^[a-z][a-z0-9_]{0,63}$/u, {
    message: "failure_code must be snake_case: a lowercase letter then up to 63 of [a-z0-9_]"
  })
)
export type FailureCode = typeof FailureCode.Type

/** Human-readable explanation of a failure, shown to the merchant. */
export const FailureMessage = Schema.String.check(
  Schema.isBetweenLength(1, 500, { message: "failure_message must be 1 to 500 characters" })
)
export type FailureMessage = typeof FailureMessage.Type

/** No card number in free text: the field is named, the text never echoed (it would be card data). */
const noCardNumber = (subject: string) =>
  Schema.makeFilter(
    (text: string) => !looksLikeCardNumber(text) || cardNumberInTextReason(subject),
    { toJsonSchema: () => [{}, true] }
  )

/**
 * A description as the database holds it. Rows written before migration 0080 may hold a card
 * number, before 0083 a hidden character (the rules of {@link Description}); they still read back
 * (never a 500), every new value passes {@link Description} first.
 */
export const StoredDescription = StorableText("description", { min: 0, max: 500 })

/**
 * A description as a merchant may send it: storable text, no character its reader would not see
 * (controls other than tab and line breaks, bidirectional overrides: StorableText.ts), and no
 * card number in it.
 */
export const Description = StoredDescription.check(displayable("description"), noCardNumber("description")).annotate({
  description: "Free text, at most 500 characters; no control character other than tab, line feed and carriage return, no bidirectional override or isolate (U+202A-U+202E, U+2066-U+2069), no card number (13-19 digits, grouped or not, that pass the Luhn check)"
})

export const METADATA_KEYS_MAX = 20
/** The database's bound on the stored form (`octet_length(metadata::text)`, migration 0003). */
export const METADATA_STORED_BYTES_MAX = 32_768

/**
 * The size of metadata as PostgreSQL prints `jsonb` (`metadata::text`): JSON.stringify's escapes
 * (`\u0001` is 6 bytes, `"` is 2) are PostgreSQL's, and jsonb adds a space after each `:` and
 * each `,` (2 per member, counted for every member: an upper bound).
 */
export const metadataStoredBytes = (metadata: Readonly<Record<string, string>>): number =>
  new TextEncoder().encode(JSON.stringify(metadata)).length + 2 * Object.keys(metadata).length

/**
 * Free-form merchant data (order ids, customer refs). Bounded like everything else: at most 20
 * keys of 1-40 characters, values of at most 500 characters, strings only, text PostgreSQL can
 * store, and at most 32,768 bytes in its stored form (the database's CHECK, checked here first).
 */
const metadataKeyLength = { min: 1, max: 40 }

/**
 * Every key checked by the record's own check, not as the record's key schema: a key the key
 * schema refused would not be a key of the record at all, so a decode refusing excess properties
 * (the API's) called it "Expected no excess property" and any other decode dropped it silently.
 * Here it is `metadata: metadata keys must be 1 to 40 characters (a key of 41 characters)` (or what
 * is unstorable), the key not echoed.
 */
const metadataKeysValid = (rule: TextRule) =>
  Schema.makeFilter(
    (metadata: Readonly<Record<string, string>>) => {
      for (const key of Object.keys(metadata)) {
        // A key PostgreSQL cannot store (NUL, a lone surrogate) is not echoed either: a lone
        // surrogate in the answer's `field` is JSON that strict parsers refuse.
        const unstorable = unstorableKeyProblem(key)
        if (unstorable !== undefined) return unstorable
        // Named `metadata`, the key not echoed, as every other key's problem (outside contract fuzz:
        // `metadata.<41 characters>` read as a value's problem and echoed the key whole; an empty one
        // was `metadata[""]`).
        const problem = keyLengthProblem(key)
        if (problem !== undefined) return problem
        // A key with a hidden character is not echoed as a field name (it would hide in it too).
        const hidden = rule === "sent" ? hiddenKeyProblem(key) : undefined
        if (hidden !== undefined) return hidden
      }
      return true
    },
    { toJsonSchema: () => ({ propertyNames: { type: "string", ...textJsonSchema(rule, metadataKeyLength) } }) }
  )

/** "stored": what the database holds (rows from before a rule read back); "sent": what a merchant may send now. */
type TextRule = "stored" | "sent"

const textJsonSchema = (rule: TextRule, length: { readonly min: number; readonly max: number }) =>
  rule === "sent" ? { ...storableTextJsonSchema(length), pattern: displayablePattern.source } : storableTextJsonSchema(length)

const metadataValueLength = { min: 0, max: 500 }
const metadataValue = (rule: TextRule) =>
  rule === "sent" ? DisplayableText("metadata values", metadataValueLength) : StorableText("metadata values", metadataValueLength)

const unstorableKeyProblem = (key: string): string | undefined => {
  const reason = unstorableReason(key)
  return reason === undefined ? undefined : `metadata keys ${reason}`
}

const hiddenKeyProblem = (key: string): string | undefined => {
  const hidden = hiddenCharacterReason(key)
  return hidden === undefined ? undefined : `metadata keys ${hidden}`
}

const keyLengthProblem = (key: string): string | undefined => {
  const problem = storableTextProblem("metadata keys", metadataKeyLength, key)
  return problem === undefined ? undefined : `${problem} (a key of ${codePointLength(key)} characters)`
}

const cardKeyProblem = (key: string): string | undefined =>
  looksLikeCardNumber(key) ? cardNumberInTextReason("a metadata key") : undefined

/**
 * Why a key a merchant sends is not echoed back as a field name (an unstorable character, its length, a
 * hidden character, then a card number: the order and the words of the checks below), or undefined. For the HTTP edge, where a
 * value's issue is named by its key: the schema checks values before these.
 */
export const metadataKeyNotEchoed = (key: string): string | undefined =>
  unstorableKeyProblem(key) ?? keyLengthProblem(key) ?? hiddenKeyProblem(key) ?? cardKeyProblem(key)

/**
 * No card number in a key or a value. A value is named by its key (`metadata.card`); a key that is
 * a card number is not echoed back as a field name: the problem is `metadata`'s.
 */
const metadataHoldsNoCardNumber = Schema.makeFilter(
  (metadata: Readonly<Record<string, string>>) => {
    for (const [key, value] of Object.entries(metadata)) {
      const cardKey = cardKeyProblem(key)
      if (cardKey !== undefined) return cardKey
      if (looksLikeCardNumber(value)) return { path: [key], issue: cardNumberInTextReason("a metadata value") }
    }
    return true
  },
  { toJsonSchema: () => [{}, true] }
)

const metadataDescription = `At most ${METADATA_KEYS_MAX} keys of 1-40 characters, string values of at most 500 characters, and at most ` +
  `${METADATA_STORED_BYTES_MAX} bytes as stored (JSON-escaped UTF-8: a tab, a line break or a quote takes 2 bytes, an emoji 4)`

const metadataShape = (rule: TextRule) => Schema.Record(Schema.String, metadataValue(rule)).check(
  metadataKeysValid(rule),
  Schema.isMaxProperties(METADATA_KEYS_MAX, { message: `metadata may hold at most ${METADATA_KEYS_MAX} keys` }),
  Schema.makeFilter(
    (metadata: Readonly<Record<string, string>>) =>
      metadataStoredBytes(metadata) <= METADATA_STORED_BYTES_MAX ||
      `metadata is ${metadataStoredBytes(metadata)} bytes as stored; at most ${METADATA_STORED_BYTES_MAX} are accepted`,
    { toJsonSchema: () => [{}, true] }
  )
)

/**
 * Metadata as the database holds it: rows written before migration 0080 may hold a card number,
 * before 0083 a hidden character (the rules of {@link Metadata}); they still read back, every new
 * value passes {@link Metadata}.
 */
export const StoredMetadata = metadataShape("stored").annotate({ description: metadataDescription })

/**
 * Metadata as a merchant may send it: bounded, storable, no hidden character (as a description),
 * and no card number in a key or a value.
 */
export const Metadata = metadataShape("sent").check(metadataHoldsNoCardNumber).annotate({
  description: `${metadataDescription}; no control character other than tab, line feed and carriage return and no bidirectional override or isolate in a key or a value; ` +
    "no card number in a key or a value (13-19 digits, grouped or not, that pass the Luhn check)"
})
export type Metadata = typeof Metadata.Type

/** Optimistic-concurrency version: 1 at creation, +1 on every transition (SQL `int`). */
export const PaymentVersion = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 2_147_483_647 }))

/**
 * A payment, as the domain sees it. Field names are the wire names (snake_case, units last) so the
 * JSON form, the SQL columns and the events all use the same words.
 *
 * The encoded form is JSON-safe: `amount_minor` is a JSON integer, instants are ISO-8601 strings.
 *
 * Invariants checked on every construction and decode (and again by CHECKs in the database):
 * - `failure_code` and `failure_message` are present if and only if the status is FAILED;
 * - `captured_amount_minor` is set if and only if the status is SETTLED, and ≤ `amount_minor`;
 * - `updated_at` is not before `created_at`.
 */
export class Payment extends Schema.Class<Payment>("Payment")(
  Schema.Struct({
    id: PaymentId,
    merchant_id: MerchantId,
    amount_minor: AmountMinorFromJsonNumber,
    currency: Currency,
    payment_method: StoredPaymentMethodToken,
    description: Schema.NullOr(StoredDescription),
    metadata: StoredMetadata,
    status: PaymentStatus,
    failure_code: Schema.NullOr(FailureCode),
    failure_message: Schema.NullOr(FailureMessage),
    /**
     * What was captured (issue 19, partial capture): set exactly when the payment is SETTLED, at
     * most `amount_minor` (the authorized amount); the rest of the authorization was released.
     */
    captured_amount_minor: Schema.NullOr(AmountMinorFromJsonNumber),
    /** When the authorization lapses (set by authorize, never changed after): no capture from then on. */
    authorization_expires_at: Schema.NullOr(Schema.DateTimeUtcFromString),
    version: PaymentVersion,
    created_at: Schema.DateTimeUtcFromString,
    updated_at: Schema.DateTimeUtcFromString
  }).check(
    Schema.makeFilter((payment) => {
      const failed = payment.status === "FAILED"
      const hasFailure = payment.failure_code !== null && payment.failure_message !== null
      const hasNoFailure = payment.failure_code === null && payment.failure_message === null
      if (failed && !hasFailure) return "a FAILED payment must carry failure_code and failure_message"
      if (!failed && !hasNoFailure) return `a ${payment.status} payment must not carry a failure_code or failure_message`
      if (payment.status === "AUTHORIZED" && payment.authorization_expires_at === null) return "an AUTHORIZED payment has authorization_expires_at"
      if (payment.status === "CREATED" && payment.authorization_expires_at !== null) return "a CREATED payment has no authorization_expires_at"
      const settled = payment.status === "SETTLED"
      if (settled !== (payment.captured_amount_minor !== null)) return "captured_amount_minor is set exactly when the payment is SETTLED"
      if (payment.captured_amount_minor !== null && payment.captured_amount_minor > payment.amount_minor) {
        return "captured_amount_minor must not exceed amount_minor (the authorized amount)"
      }
      if (payment.updated_at.epochMilliseconds < payment.created_at.epochMilliseconds) {
        return "updated_at must not be before created_at"
      }
      return true
    })
  )
) {}

/**
 * What a merchant asks for when it creates a payment, besides the amount (whose wire form is the
 * API's own: `amount` in the request body, `amount_minor` everywhere else). The id, status,
 * version and instants are never chosen by the caller, and the merchant is who asks, not a field.
 */
export const paymentRequestFields = {
  currency: Currency,
  payment_method: PaymentMethodToken,
  description: Schema.optionalKey(Description),
  metadata: Schema.optionalKey(Metadata)
}

/** What a caller supplies to create a payment: the merchant, the amount and the request fields. */
export const CreatePaymentInput = Schema.Struct({
  merchant_id: MerchantId,
  amount_minor: AmountMinorFromJsonNumber,
  ...paymentRequestFields
})
export type CreatePaymentInput = typeof CreatePaymentInput.Type
