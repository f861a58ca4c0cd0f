import { Currency } from "@pay/domain"
import { Schema } from "effect"
import { AccountType, LedgerTransaction, Side } from "./Model.ts"

/** Rows as the ledger's statements return them, decoded by these schemas (SqlSchema). */
export const PostedRow = Schema.Struct({
  item: Schema.Int,
  outcome: Schema.Literals(["posted", "replayed", "reference_conflict"]),
  transaction_id: Schema.BigInt,
  posted_at: Schema.DateTimeUtcFromDate,
  description: Schema.String
})

export const AccountRow = Schema.Struct({
  id: Schema.BigInt,
  code: Schema.String,
  type: AccountType,
  normal_side: Side,
  currency: Currency,
  allow_negative: Schema.Boolean
})

export const BalanceRow = Schema.Struct({
  code: Schema.String,
  type: AccountType,
  normal_side: Side,
  currency: Currency,
  allow_negative: Schema.Boolean,
  balance_minor: Schema.BigIntFromString
})

export const EntryRow = Schema.Struct({
  transaction_id: Schema.BigInt,
  entry_number: Schema.Int,
  reference: Schema.String,
  description: Schema.String,
  side: Side,
  amount_minor: Schema.BigInt,
  currency: Currency,
  posted_at: Schema.DateTimeUtcFromDate
})

export const DiscrepancyRow = Schema.Struct({
  check_name: Schema.String,
  subject: Schema.String,
  expected_minor: Schema.NullOr(Schema.BigIntFromString),
  actual_minor: Schema.NullOr(Schema.BigIntFromString),
  detail: Schema.String
})

// Values built from rows the row schema has already decoded: their checks would run twice.
export const checked = { disableChecks: true } as const

export const toTransaction = (row: typeof PostedRow.Type, reference: string) =>
  new LedgerTransaction({
    id: row.transaction_id,
    reference,
    description: row.description,
    postedAt: row.posted_at
  }, checked)

