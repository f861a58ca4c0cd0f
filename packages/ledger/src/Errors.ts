import { DescribedError } from "@pay/domain"
import { Schema } from "effect"

/**
 * Every way a posting can be refused, as a tagged value that explains itself (`message`).
 * Rejections of malformed input are found in code before anything is sent; the rest are found by
 * the database and translated here. None is an API answer (the settlement posting turns an outage
 * into its own `SettlementUnavailable` and anything else into a defect), so none carries an HTTP
 * status: statuses belong to the error catalog (`@pay/domain` ErrorCatalog.ts).
 */

/** A field is out of its format or bounds (reference, description, account code, currency, batch). */
export class InvalidPosting extends DescribedError<InvalidPosting>()("InvalidPosting", {
  reference: Schema.String,
  reason: Schema.String
}, (e) =>
  `posting ${e.reference} is invalid: ${e.reason}`
) {}

export class TooFewLegs extends DescribedError<TooFewLegs>()("TooFewLegs", {
  reference: Schema.String,
  legCount: Schema.Int
}, (e) =>
  `posting ${e.reference} has ${e.legCount} leg(s); double entry needs at least two`
) {}

export class TooManyLegs extends DescribedError<TooManyLegs>()("TooManyLegs", {
  reference: Schema.String,
  legCount: Schema.Int,
  legCount_max: Schema.Int
}, (e) =>
  `posting ${e.reference} has ${e.legCount} legs; at most ${e.legCount_max} are accepted`
) {}

export class NonPositiveAmount extends DescribedError<NonPositiveAmount>()("NonPositiveAmount", {
  reference: Schema.String,
  account: Schema.String,
  amount_minor: Schema.BigInt
}, (e) =>
  `posting ${e.reference} has a leg of ${e.amount_minor} on ${e.account}; amounts must be > 0`
) {}

export class AmountTooLarge extends DescribedError<AmountTooLarge>()("AmountTooLarge", {
  reference: Schema.String,
  account: Schema.String,
  amount_minor: Schema.BigInt,
  amount_minor_max: Schema.BigInt
}, (e) =>
  `posting ${e.reference} has a leg of ${e.amount_minor} on ${e.account}; the largest amount is ${e.amount_minor_max}`
) {}

export class Unbalanced extends DescribedError<Unbalanced>()("Unbalanced", {
  reference: Schema.String,
  currency: Schema.String,
  debits_minor: Schema.BigInt,
  credits_minor: Schema.BigInt
}, (e) =>
  `posting ${e.reference} is unbalanced in ${e.currency}: debits ${e.debits_minor} <> credits ${e.credits_minor}`
) {}

/** `reference` is absent when the account was named by a read (balance, entries). */
export class UnknownAccount extends DescribedError<UnknownAccount>()("UnknownAccount", {
  account: Schema.String,
  reference: Schema.optional(Schema.String)
}, (e) =>
  e.reference === undefined
    ? `account ${e.account} does not exist`
    : `posting ${e.reference} names account ${e.account}, which does not exist`
) {}

export class CurrencyMismatch extends DescribedError<CurrencyMismatch>()("CurrencyMismatch", {
  reference: Schema.String,
  account: Schema.String,
  accountCurrency: Schema.String,
  legCurrency: Schema.String
}, (e) =>
  `posting ${e.reference} has a ${e.legCurrency} leg on ${e.account}, which holds ${e.accountCurrency}`
) {}

export class InsufficientFunds extends DescribedError<InsufficientFunds>()("InsufficientFunds", {
  reference: Schema.String,
  account: Schema.String,
  balance_minor: Schema.BigInt,
  shortfall_minor: Schema.BigInt
}, (e) =>
  `posting ${e.reference} would take ${e.account} below zero: balance ${e.balance_minor}, short by ${e.shortfall_minor}`
) {}

/** The account's balance would leave the `bigint` range. */
export class BalanceOverflow extends DescribedError<BalanceOverflow>()("BalanceOverflow", {
  reference: Schema.String,
  account: Schema.String,
  balance_minor: Schema.BigInt,
  nextBalance_minor: Schema.BigInt
}, (e) =>
  `posting ${e.reference} would move ${e.account} from ${e.balance_minor} to ${e.nextBalance_minor}, outside the bigint range`
) {}

/** The reference is already recorded with different legs: a different fact under the same name. */
export class ReferenceConflict extends DescribedError<ReferenceConflict>()("ReferenceConflict", {
  reference: Schema.String,
  existingTransactionId: Schema.BigInt
}, (e) =>
  `reference ${e.reference} already holds transaction ${e.existingTransactionId} with different legs`
) {}

/** `ensureAccount` found the code taken by an account with another type, currency or rule. */
export class AccountMismatch extends DescribedError<AccountMismatch>()("AccountMismatch", {
  account: Schema.String,
  existing: Schema.String,
  requested: Schema.String
}, (e) =>
  `account ${e.account} exists as ${e.existing}, not ${e.requested}`
) {}

export class InvalidAccount extends DescribedError<InvalidAccount>()("InvalidAccount", {
  account: Schema.String,
  reason: Schema.String
}, (e) =>
  `account ${e.account} is invalid: ${e.reason}`
) {}

export class InvalidPageRequest extends DescribedError<InvalidPageRequest>()("InvalidPageRequest", {
  reason: Schema.String
}, (e) =>
  `invalid page request: ${e.reason}`
) {}

/**
 * The database could not be reached or gave up (connection, timeout, or a deadlock/serialization
 * failure that persisted through the bounded retries). A posting that failed this way may or may
 * not have committed: retry it with the same reference, which is safe.
 */
export class LedgerUnavailable extends DescribedError<LedgerUnavailable>()("LedgerUnavailable", {
  operation: Schema.String,
  reason: Schema.String,
  retryable: Schema.Boolean,
  cause: Schema.Defect()
}, (e) =>
  `ledger ${e.operation} failed: ${e.reason}`
) {}

/** Malformed postings, refused before anything is sent to the database. */
export type PostingValidationError =
  | InvalidPosting
  | TooFewLegs
  | TooManyLegs
  | NonPositiveAmount
  | AmountTooLarge
  | Unbalanced

/** Every error `postTransaction` / `postTransactions` can fail with. */
export type PostingError =
  | PostingValidationError
  | UnknownAccount
  | CurrencyMismatch
  | InsufficientFunds
  | BalanceOverflow
  | ReferenceConflict
  | LedgerUnavailable
