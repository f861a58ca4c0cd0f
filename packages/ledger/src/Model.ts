import { Currency } from "@pay/domain"
import { Schema } from "effect"

/**
 * The ledger's vocabulary. Money is `bigint` minor units with an ISO 4217 code; nothing here ever
 * goes through a JS `number` on its way to or from the database.
 */

/** Largest amount a single leg may carry: PostgreSQL's `bigint` maximum. */
export const amount_minor_max = 9223372036854775807n

/** Every bound the ledger enforces, in one place (TIGER_STYLE: put a limit on everything). */
export const limits = {
  /** Legs (entries) in one transaction. */
  legCount_max: 1_000,
  /** Transactions in one batched posting. */
  batchPostingCount_max: 1_000,
  /** Legs across all transactions of one batched posting. */
  batchLegCount_max: 10_000,
  /** Entries returned by one page of `entries`. */
  pageSize_max: 500,
  referenceLength_max: 200,
  descriptionLength_max: 1_000,
  accountCodeLength_max: 200,
  /** Retries of a posting that met a deadlock, a serialization failure or a dropped connection. */
  postingRetryCount_max: 3
} as const

/**
 * Currencies are the domain's (`@pay/domain` Currency: the ISO 4217 codes the platform supports).
 * What the ledger returns is typed by it; what it is asked to post is checked against it
 * (Validation.ts), because the ledger checks its own inputs whoever calls it.
 */

/** `merchant:42:payable:USD`: colon-separated segments of letters, digits, `_`, `.`, `-`. */
export const accountCodePattern = /^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*$/
export const AccountCode = Schema.String.check(
  Schema.isPattern(accountCodePattern),
  Schema.isMaxLength(limits.accountCodeLength_max)
)

export const AccountType = Schema.Literals(["asset", "liability", "equity", "revenue", "expense"])
export type AccountType = typeof AccountType.Type

export const Side = Schema.Literals(["debit", "credit"])
export type Side = typeof Side.Type

/** The side on which an account's balance normally grows (what the database derives too). */
export const normalSideOf = (type: AccountType): Side => (type === "asset" || type === "expense" ? "debit" : "credit")

/** What `ensureAccount` creates (or finds). */
export const AccountSpec = Schema.Struct({
  code: AccountCode,
  type: AccountType,
  /** Checked against the domain's Currency by `ensureAccount` (an input, like a leg's currency). */
  currency: Schema.String,
  /** false: the balance, in the account's normal direction, may never go below zero. */
  allowNegative: Schema.Boolean
})
export type AccountSpec = typeof AccountSpec.Type

export class Account extends Schema.Class<Account>("ledger/Account")({
  id: Schema.BigInt,
  code: Schema.String,
  type: AccountType,
  normalSide: Side,
  currency: Currency,
  allowNegative: Schema.Boolean
}) {}

/** One side of a posting: an account and an amount in that account's currency. */
export const Leg = Schema.Struct({
  account: Schema.String,
  amount_minor: Schema.BigInt,
  currency: Schema.String
})
export type Leg = typeof Leg.Type

/**
 * One business fact. `reference` is its identity: posting the same reference twice records it
 * once (a retry with the same legs is a replay; with other legs, a conflict).
 */
export const PostingRequest = Schema.Struct({
  reference: Schema.String,
  description: Schema.String,
  debits: Schema.Array(Leg),
  credits: Schema.Array(Leg)
})
export type PostingRequest = typeof PostingRequest.Type

export class LedgerTransaction extends Schema.Class<LedgerTransaction>("ledger/LedgerTransaction")({
  id: Schema.BigInt,
  reference: Schema.String,
  description: Schema.String,
  /** Start of the database transaction that recorded it. */
  postedAt: Schema.DateTimeUtc
}) {}

/**
 * The outcome of a posting. `replayed: true` means the reference was already recorded with exactly
 * these legs: nothing was written, and `transaction` is the one recorded earlier. A retry is
 * therefore safe, and says so.
 */
export class PostingResult extends Schema.Class<PostingResult>("ledger/PostingResult")({
  transaction: LedgerTransaction,
  replayed: Schema.Boolean
}) {}

export class AccountBalance extends Schema.Class<AccountBalance>("ledger/AccountBalance")({
  account: Schema.String,
  type: AccountType,
  normalSide: Side,
  currency: Currency,
  allowNegative: Schema.Boolean,
  /** Signed in the account's normal direction: a merchant payable of 500 is +500. */
  balance_minor: Schema.BigInt
}) {}

/** Position after which the next page of an account's entries starts. */
export const EntryCursor = Schema.Struct({
  transactionId: Schema.BigInt,
  entryNumber: Schema.Int
})
export type EntryCursor = typeof EntryCursor.Type

export const EntriesRequest = Schema.Struct({
  account: Schema.String,
  /** 1 .. limits.pageSize_max */
  limit: Schema.Int,
  after: Schema.optional(EntryCursor)
})
export type EntriesRequest = typeof EntriesRequest.Type

export class LedgerEntry extends Schema.Class<LedgerEntry>("ledger/LedgerEntry")({
  transactionId: Schema.BigInt,
  entryNumber: Schema.Int,
  reference: Schema.String,
  description: Schema.String,
  side: Side,
  amount_minor: Schema.BigInt,
  currency: Currency,
  postedAt: Schema.DateTimeUtc
}) {}

/** Entries in posting order (transaction id, then entry number); `next` is null on the last page. */
export class EntryPage extends Schema.Class<EntryPage>("ledger/EntryPage")({
  entries: Schema.Array(LedgerEntry),
  next: Schema.NullOr(EntryCursor)
}) {}

/** One row of `ledger_verify()`. A healthy ledger has none. */
export class Discrepancy extends Schema.Class<Discrepancy>("ledger/Discrepancy")({
  check: Schema.String,
  subject: Schema.String,
  expected_minor: Schema.NullOr(Schema.BigInt),
  actual_minor: Schema.NullOr(Schema.BigInt),
  detail: Schema.String
}) {}
