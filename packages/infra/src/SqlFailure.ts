import { Option, Schema } from "effect"
import { isSqlError, type SqlError } from "effect/sql/SqlError"

/**
 * What a failed statement means for the request that ran it, by the SQLSTATE PostgreSQL sent
 * (the driver keeps it on the reason's cause). Answered at the HTTP edge (server `Respond.ts`):
 *
 * - `unavailable`: the database did not complete the statement and nothing committed; the same
 *   request later can succeed (503 `database_unavailable`, retry with the same key). No SQLSTATE
 *   at all (the socket broke, the connection was refused or timed out: the driver's
 *   `ConnectionError`), class 08 (connection exception), 53 (insufficient resources: too many
 *   connections, disk full, out of memory), 57P01..57P05 (the server shuts down, crashed, is
 *   starting, a session or idle timeout ended the backend), 58 (I/O error), 25006 (a read-only
 *   transaction: a failover to a standby), and the transient conflicts our retries bound
 *   (40001 serialization failure, 40P01 deadlock, 55P03 lock wait, 57014 statement timeout).
 * - `invariant_violation`: the database refused a write: class 23 (a constraint, or a guard
 *   trigger raising `integrity_constraint_violation`), P0001 (a bare RAISE), LG001..LG009 (the
 *   ledger's guards). Every such rule is also checked by the code first, with a typed error
 *   (docs/invariants.md), so one that reaches the edge is a missed check: a bug, answered
 *   500 `invariant_violation`, never a 503 that would blame a dependency.
 * - `bug`: any other SQLSTATE (42 a privilege or schema mismatch, 22 a data exception, XX …):
 *   the server answered and refused what we sent; 500 `internal_error`.
 */
export type SqlFailureKind = "unavailable" | "invariant_violation" | "bug"

/** An ErrorResponse's fields: a `severity` with the `code`, so a Node error's `code` (EPIPE) is never taken for a SQLSTATE. */
const decodeCode = Schema.decodeUnknownOption(Schema.Struct({ code: Schema.String, severity: Schema.String }))

/** The database failure in `error`: itself, or the one it wraps (the migrator's MigrationError); undefined when neither is one. */
export const sqlErrorIn = (error: unknown): SqlError | undefined =>
  isSqlError(error) ? error : error instanceof Error && isSqlError(error.cause) ? error.cause : undefined

/** Whether `error` is, or wraps, a database failure PostgreSQL answered with `sqlstate`. */
export const hasSqlState = (sqlstate: string) => (error: unknown): boolean => {
  const sqlError = sqlErrorIn(error)
  return sqlError !== undefined && sqlStateOf(sqlError) === sqlstate
}

/** The SQLSTATE of a failure PostgreSQL answered with; undefined when the server never answered. */
export const sqlStateOf = (error: SqlError): string | undefined =>
  Option.getOrUndefined(Option.map(decodeCode(error.reason.cause), (fields) => fields.code))

const unavailableCodes: ReadonlySet<string> = new Set(["57P01", "57P02", "57P03", "57P04", "57P05", "25006", "40001", "40P01", "55P03", "57014"])
const unavailableClasses: ReadonlySet<string> = new Set(["08", "53", "58"])
const invariantCodes: ReadonlySet<string> = new Set(["P0001", "LG001", "LG002", "LG003", "LG004", "LG005", "LG006", "LG007", "LG008", "LG009"])

export const sqlStateKind = (sqlState: string | undefined): SqlFailureKind => {
  if (sqlState === undefined || sqlState.length !== 5) return "unavailable"
  const sqlClass = sqlState.slice(0, 2)
  if (unavailableClasses.has(sqlClass) || unavailableCodes.has(sqlState)) return "unavailable"
  if (sqlClass === "23" || invariantCodes.has(sqlState)) return "invariant_violation"
  return "bug"
}

/** The driver's ConnectionError (a broken socket, or the server's 08xxx / a terminated backend) is always `unavailable`. */
export const sqlFailureKind = (error: SqlError): SqlFailureKind =>
  error.reason._tag === "ConnectionError" ? "unavailable" : sqlStateKind(sqlStateOf(error))

/** What an operator needs to read: a SQL error's database message, not only the client's "Query failed". */
export const failureText = (error: unknown): string =>
  isSqlError(error)
    ? `${error.message}: ${String(error.reason.cause instanceof Error ? error.reason.cause.message : error.reason.cause)}`
    : error instanceof Error
    ? error.message
    : String(error)
