import { decodeRows } from "@pay/infra"
import { assert } from "@effect/vitest"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Exit, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { Ledger } from "../src/Ledger.ts"
import { type AccountSpec, type PostingRequest, type AccountType } from "../src/Model.ts"

/**
 * The Ledger on a fresh database of its own (cloned from the run's migrated template: the
 * project's migrations, nothing else). 16 connections, so that concurrent tests really run on
 * parallel connections.
 */
export const LedgerTestLayer = Ledger.layer.pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 16 })))

/** Test services (TestClock) excluded: retries sleep on the real clock, postings use real time. */
export const layerOptions = { excludeTestServices: true, timeout: "60 seconds" } as const

export const account = (code: string, type: AccountType, currency: string, allowNegative: boolean): AccountSpec => ({
  code,
  type,
  currency,
  allowNegative
})

/** A two-leg posting: `amount_minor` from the credited account to the debited one. */
export const transfer = (
  reference: string,
  debit: string,
  credit: string,
  amount_minor: bigint,
  currency = "USD"
): PostingRequest => ({
  reference,
  description: `test transfer ${reference}`,
  debits: [{ account: debit, amount_minor, currency }],
  credits: [{ account: credit, amount_minor, currency }]
})

/** After every scenario: the database agrees with itself. */
export const assertLedgerHealthy = Effect.gen(function* () {
  const ledger = yield* Ledger
  const discrepancies = yield* ledger.verify
  assert.deepStrictEqual(discrepancies.map((d) => `${d.check} ${d.subject}: ${d.detail}`), [])
})

/** The failure of an effect that must fail (a typed error), for assertions on its tag and fields. */
export const failureOf = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(effect)
    if (Exit.isSuccess(exit)) return assert.fail(`expected a failure, got ${String(exit.value)}`)
    const error = Exit.findErrorOption(exit)
    if (error._tag === "None") return assert.fail(`expected a typed failure, got ${String(exit.cause)}`)
    return error.value
  })

/** What PostgreSQL said: SQLSTATE and message (the driver keeps them on the reason's cause). */
export const postgresError = (error: SqlError): { readonly code: string; readonly message: string } => {
  const cause: unknown = error.reason.cause
  const code = typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : ""
  const message = cause instanceof Error ? cause.message : String(cause)
  return { code, message }
}

/** Runs raw SQL that must be refused, and returns PostgreSQL's SQLSTATE and message. */
export const refusedBy = <A, R>(effect: Effect.Effect<A, SqlError, R>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(effect)
    if (Exit.isSuccess(exit)) return assert.fail("the database accepted what it must refuse")
    const error = Exit.findErrorOption(exit)
    if (error._tag === "None") return assert.fail(`expected an SqlError, got ${String(exit.cause)}`)
    return postgresError(error.value)
  })

/** Count of rows of a table, as a number (tests only: small tables). */
export const countRows = (table: "transactions" | "ledger_entries" | "accounts") =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*) AS n FROM ${sql(table)}`)
    return Number(rows[0]?.n ?? -1n)
  })

/** Sum of debit-positive stored balances per currency: zero for every currency in a sound ledger. */
export const trialBalance = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* decodeRows(Schema.Struct({ currency: Schema.String, total: Schema.String }))(sql`
    SELECT a.currency,
           sum(CASE a.normal_side WHEN 'debit' THEN b.balance_minor::numeric ELSE -b.balance_minor::numeric END)::text AS total
    FROM accounts a JOIN account_balances b ON b.account_id = a.id
    GROUP BY a.currency ORDER BY a.currency`)
  return rows.map((row) => [row.currency, row.total] as const)
})

/** Accounts that may not go negative and are below zero (must always be none). */
export const negativeNoNegativeAccounts = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* decodeRows(Schema.Struct({ code: Schema.String }))(sql`
    SELECT a.code FROM accounts a JOIN account_balances b ON b.account_id = a.id
    WHERE NOT a.allow_negative AND b.balance_minor < 0`)
  return rows.map((row) => row.code)
})
