import { Schema } from "effect"

/**
 * Every way a posting can be refused, as a tagged value that explains itself (`message`) and
 * carries the HTTP status the API will answer with. Rejections of malformed input are found in
 * code before anything is sent; the rest are found by the database and translated here.
 */

/** A field is out of its format or bounds (reference, description, account code, currency, batch). */
export class InvalidPosting extends Schema.TaggedError<InvalidPosting>()("InvalidPosting", {
  reference: Schema.String,
  reason: Schema.String
}, { httpApiStatus: 422 }) {
  override get message() {
    return `posting ${this.reference} is invalid: ${this.reason}`
  }
}

export class TooFewLegs extends Schema.TaggedError<TooFewLegs>()("TooFewLegs", {
  reference: Schema.String,
  legCount: Schema.Int
}, { httpApiStatus: 422 }) {
  override get message() {
    return `posting ${this.reference} has ${this.legCount} leg(s); double entry needs at least two`
  }
}

export class TooManyLegs extends Schema.TaggedError<TooManyLegs>()("TooManyLegs", {
  reference: Schema.String,
  legCount: Schema.Int,
  legCount_max: Schema.Int
}, { httpApiStatus: 422 }) {
  override get message() {
    return `posting ${this.reference} has ${this.legCount} legs; at most ${this.legCount_max} are accepted`
  }
}

export class NonPositiveAmount extends Schema.TaggedError<NonPositiveAmount>()("NonPositiveAmount", {
  reference: Schema.String,
  account: Schema.String,
  amount_minor: Schema.BigInt
}, { httpApiStatus: 422 }) {
  override get message() {
    return `posting ${this.reference} has a leg of ${this.amount_minor} on ${this.account}; amounts must be > 0`
  }
}

export class AmountTooLarge extends Schema.TaggedError<AmountTooLarge>()("AmountTooLarge", {
  reference: Schema.String,
  account: Schema.String,
  amount_minor: Schema.BigInt,
  amount_minor_max: Schema.BigInt
}, { httpApiStatus: 422 }) {
  override get message() {
    return `posting ${this.reference} has a leg of ${this.amount_minor} on ${this.account}; the largest amount is ${this.amount_minor_max}`
  }
}

export class Unbalanced extends Schema.TaggedError<Unbalanced>()("Unbalanced", {
  reference: Schema.String,
  currency: Schema.String,
  debits_minor: Schema.BigInt,
  credits_minor: Schema.BigInt
}, { httpApiStatus: 422 }) {
  override get message() {
    return `posting ${this.reference} is unbalanced in ${this.currency}: debits ${this.debits_minor} <> credits ${this.credits_minor}`
  }
}

/** `reference` is absent when the account was named by a read (balance, entries). */
export class UnknownAccount extends Schema.TaggedError<UnknownAccount>()("UnknownAccount", {
  account: Schema.String,
  reference: Schema.optional(Schema.String)
}, { httpApiStatus: 404 }) {
  override get message() {
    return this.reference === undefined
      ? `account ${this.account} does not exist`
      : `posting ${this.reference} names account ${this.account}, which does not exist`
  }
}

export class CurrencyMismatch extends Schema.TaggedError<CurrencyMismatch>()("CurrencyMismatch", {
  reference: Schema.String,
  account: Schema.String,
  accountCurrency: Schema.String,
  legCurrency: Schema.String
}, { httpApiStatus: 422 }) {
  override get message() {
    return `posting ${this.reference} has a ${this.legCurrency} leg on ${this.account}, which holds ${this.accountCurrency}`
  }
}

export class InsufficientFunds extends Schema.TaggedError<InsufficientFunds>()("InsufficientFunds", {
  reference: Schema.String,
  account: Schema.String,
  balance_minor: Schema.BigInt,
  shortfall_minor: Schema.BigInt
}, { httpApiStatus: 422 }) {
  override get message() {
    return `posting ${this.reference} would take ${this.account} below zero: balance ${this.balance_minor}, short by ${this.shortfall_minor}`
  }
}

/** The account's balance would leave the `bigint` range. */
export class BalanceOverflow extends Schema.TaggedError<BalanceOverflow>()("BalanceOverflow", {
  reference: Schema.String,
  account: Schema.String,
  balance_minor: Schema.BigInt,
  nextBalance_minor: Schema.BigInt
}, { httpApiStatus: 422 }) {
  override get message() {
    return `posting ${this.reference} would move ${this.account} from ${this.balance_minor} to ${this.nextBalance_minor}, outside the bigint range`
  }
}

/** The reference is already recorded with different legs: a different fact under the same name. */
export class ReferenceConflict extends Schema.TaggedError<ReferenceConflict>()("ReferenceConflict", {
  reference: Schema.String,
  existingTransactionId: Schema.BigInt
}, { httpApiStatus: 409 }) {
  override get message() {
    return `reference ${this.reference} already holds transaction ${this.existingTransactionId} with different legs`
  }
}

/** `ensureAccount` found the code taken by an account with another type, currency or rule. */
export class AccountMismatch extends Schema.TaggedError<AccountMismatch>()("AccountMismatch", {
  account: Schema.String,
  existing: Schema.String,
  requested: Schema.String
}, { httpApiStatus: 409 }) {
  override get message() {
    return `account ${this.account} exists as ${this.existing}, not ${this.requested}`
  }
}

export class InvalidAccount extends Schema.TaggedError<InvalidAccount>()("InvalidAccount", {
  account: Schema.String,
  reason: Schema.String
}, { httpApiStatus: 422 }) {
  override get message() {
    return `account ${this.account} is invalid: ${this.reason}`
  }
}

export class InvalidPageRequest extends Schema.TaggedError<InvalidPageRequest>()("InvalidPageRequest", {
  reason: Schema.String
}, { httpApiStatus: 422 }) {
  override get message() {
    return `invalid page request: ${this.reason}`
  }
}

/**
 * The database could not be reached or gave up (connection, timeout, or a deadlock/serialization
 * failure that persisted through the bounded retries). A posting that failed this way may or may
 * not have committed: retry it with the same reference, which is safe.
 */
export class LedgerUnavailable extends Schema.TaggedError<LedgerUnavailable>()("LedgerUnavailable", {
  operation: Schema.String,
  reason: Schema.String,
  retryable: Schema.Boolean,
  cause: Schema.Defect()
}, { httpApiStatus: 503 }) {
  override get message() {
    return `ledger ${this.operation} failed: ${this.reason}`
  }
}

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
