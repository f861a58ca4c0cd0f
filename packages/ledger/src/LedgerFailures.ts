import { Effect, Option, Predicate, Schema } from "effect"
import type { SqlError } from "effect/sql"
import {
  BalanceOverflow,
  CurrencyMismatch,
  InsufficientFunds,
  LedgerUnavailable,
  ReferenceConflict,
  UnknownAccount
} from "./Errors.ts"

/**
 * How a database failure becomes the ledger's answer: a typed refusal the database raised (decoded
 * from its SQLSTATE and jsonb DETAIL), `LedgerUnavailable` for an outage, or a defect for anything
 * the code should have prevented.
 */
const InsufficientFundsDetail = Schema.fromJsonString(Schema.Struct({
  reference: Schema.String,
  account: Schema.String,
  balance_minor: Schema.BigIntFromString,
  shortfall_minor: Schema.BigIntFromString
}))
const OverflowDetail = Schema.fromJsonString(Schema.Struct({
  reference: Schema.String,
  account: Schema.String,
  balance_minor: Schema.BigIntFromString,
  next_balance_minor: Schema.BigIntFromString
}))
const UnknownAccountDetail = Schema.fromJsonString(Schema.Struct({
  reference: Schema.String,
  account: Schema.String
}))
const CurrencyDetail = Schema.fromJsonString(Schema.Struct({
  reference: Schema.String,
  account: Schema.String,
  account_currency: Schema.String,
  leg_currency: Schema.String
}))
const ConflictDetail = Schema.fromJsonString(Schema.Struct({
  reference: Schema.String,
  transaction_id: Schema.BigIntFromString
}))

/** SQLSTATE and DETAIL of a PostgreSQL error, as the driver attaches them to the cause. */
export const serverFields = (error: SqlError.SqlError): { readonly code: string; readonly detail: string } => {
  const cause = error.reason.cause
  const field = (name: string) =>
    Predicate.hasProperty(cause, name) && typeof cause[name] === "string" ? cause[name] : ""
  return { code: field("code"), detail: field("detail") }
}

type DatabaseRefusal = InsufficientFunds | BalanceOverflow | UnknownAccount | CurrencyMismatch | ReferenceConflict

/** The typed refusal the database raised, if this error is one (see migrations/0002_ledger.sql). */
export const refusalOf = (error: SqlError.SqlError): Option.Option<DatabaseRefusal> => {
  const { code, detail } = serverFields(error)
  switch (code) {
    case "LG006":
      return Schema.decodeUnknownOption(InsufficientFundsDetail)(detail).pipe(Option.map((d) =>
        new InsufficientFunds({
          reference: d.reference,
          account: d.account,
          balance_minor: d.balance_minor,
          shortfall_minor: d.shortfall_minor
        })
      ))
    case "22003":
      // Only our own overflow check carries a DETAIL; any other 22003 is left to be a defect.
      return Schema.decodeUnknownOption(OverflowDetail)(detail).pipe(Option.map((d) =>
        new BalanceOverflow({
          reference: d.reference,
          account: d.account,
          balance_minor: d.balance_minor,
          nextBalance_minor: d.next_balance_minor
        })
      ))
    case "LG008":
      return Schema.decodeUnknownOption(UnknownAccountDetail)(detail).pipe(Option.map((d) =>
        new UnknownAccount({ reference: d.reference, account: d.account })
      ))
    case "LG009":
      return Schema.decodeUnknownOption(CurrencyDetail)(detail).pipe(Option.map((d) =>
        new CurrencyMismatch({
          reference: d.reference,
          account: d.account,
          accountCurrency: d.account_currency,
          legCurrency: d.leg_currency
        })
      ))
    case "LG007":
      return Schema.decodeUnknownOption(ConflictDetail)(detail).pipe(Option.map((d) =>
        new ReferenceConflict({ reference: d.reference, existingTransactionId: d.transaction_id })
      ))
    default:
      return Option.none()
  }
}

/** 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now: the server went away. */
export const serverGoneAway = (error: SqlError.SqlError) => serverFields(error).code.startsWith("57P0")

/** Failures after which the same statement may succeed: nothing of the attempt was kept. */
export const isTransient = (error: SqlError.SqlError) =>
  error.reason._tag === "DeadlockError" ||
  error.reason._tag === "SerializationError" ||
  error.reason._tag === "ConnectionError" ||
  serverGoneAway(error)

/**
 * Infrastructure failures become `LedgerUnavailable`; anything else (a constraint the code should
 * have prevented, a syntax error, an unknown server error) is a bug: a defect, loud, cause kept.
 */
export const unavailableOrDie = (operation: string) => (error: SqlError.SqlError): Effect.Effect<never, LedgerUnavailable> => {
  switch (error.reason._tag) {
    case "ConnectionError":
    case "AuthenticationError":
    case "AuthorizationError":
    case "LockTimeoutError":
    case "StatementTimeoutError":
    case "DeadlockError":
    case "SerializationError":
      return Effect.fail(
        new LedgerUnavailable({ operation, reason: error.message, retryable: error.isRetryable, cause: error })
      )
    default:
      return serverGoneAway(error)
        ? Effect.fail(new LedgerUnavailable({ operation, reason: error.message, retryable: true, cause: error }))
        : Effect.die(error)
  }
}

export const translatePostingFailure = (
  error: SqlError.SqlError
): Effect.Effect<never, DatabaseRefusal | LedgerUnavailable> => {
  const refusal = refusalOf(error)
  return Option.isSome(refusal) ? Effect.fail(refusal.value) : unavailableOrDie("post")(error)
}

/** A row that does not match its schema means the database and this code disagree: a defect. */
export const orDieOnSchema = <A, E, R>(effect: Effect.Effect<A, E | Schema.SchemaError, R>) =>
  Effect.catchTag(effect, "SchemaError", (error) => Effect.die(error))

