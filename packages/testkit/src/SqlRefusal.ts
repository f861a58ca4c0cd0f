import { assert } from "@effect/vitest"
import { Effect, Exit, Option, Schema } from "effect"
import { dual } from "effect/Function"
import type { SqlError } from "effect/sql/SqlError"

/**
 * A raw statement's refusal, as PostgreSQL gave it: SQLSTATE, the constraint that refused (when one
 * did), and the message. A test of a database rule checks these, not merely "an SqlError": a typo in
 * the statement, or another constraint, must not pass for the rule under attack.
 */
export interface SqlRefusal {
  /** SQLSTATE, e.g. `23514`, `42501`, `LG001`. */
  readonly code: string
  /** The constraint named by the server (CHECK, UNIQUE, FOREIGN KEY), undefined when none. */
  readonly constraint: string | undefined
  readonly message: string
}

/** What the refusal must be: its SQLSTATE, and when given its constraint and a message pattern. */
export interface ExpectedRefusal {
  readonly code: string
  readonly constraint?: string
  readonly message?: RegExp
}

/** The fields the driver keeps from PostgreSQL's ErrorResponse on the reason's cause. */
const decodeErrorFields = Schema.decodeUnknownOption(Schema.Struct({ code: Schema.String, constraint: Schema.optional(Schema.String) }))

export const sqlRefusalOf = (error: SqlError): SqlRefusal => {
  const cause: unknown = error.reason.cause
  const fields = Option.getOrUndefined(decodeErrorFields(cause))
  return { code: fields?.code ?? "", constraint: fields?.constraint, message: cause instanceof Error ? cause.message : String(cause) }
}

const describe = (refusal: { readonly code: string; readonly constraint?: string | undefined }) =>
  `${refusal.code}${refusal.constraint === undefined ? "" : ` (${refusal.constraint})`}`

const refusalOf = <A, R>(statement: Effect.Effect<A, SqlError, R>, expected: ExpectedRefusal) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(statement)
    if (Exit.isSuccess(exit)) return yield* Effect.die(new Error(`the database accepted what it must refuse with ${describe(expected)}`))
    const error = Exit.findErrorOption(exit)
    if (error._tag === "None") return yield* Effect.die(new Error(`expected an SqlError ${describe(expected)}, got ${String(exit.cause)}`))
    const refusal = sqlRefusalOf(error.value)
    assert.strictEqual(refusal.code, expected.code, `SQLSTATE: expected ${describe(expected)}, got ${describe(refusal)}: ${refusal.message}`)
    if (expected.constraint !== undefined) {
      assert.strictEqual(refusal.constraint, expected.constraint, `constraint: expected ${describe(expected)}, got ${describe(refusal)}: ${refusal.message}`)
    }
    if (expected.message !== undefined) assert.match(refusal.message, expected.message)
    return refusal
  })

/**
 * Runs `statement`, which the database must refuse with `expected.code` (and `expected.constraint`,
 * and a message matching `expected.message`, when given), and returns the refusal. Accepted, refused
 * for another reason or by another constraint: the test fails with what the server really said.
 * Data-first `expectSqlRefusal(statement, expected)` or pipeable `expectSqlRefusal(expected)(statement)`.
 */
export const expectSqlRefusal: {
  (expected: ExpectedRefusal): <A, R>(statement: Effect.Effect<A, SqlError, R>) => Effect.Effect<SqlRefusal, never, R>
  <A, R>(statement: Effect.Effect<A, SqlError, R>, expected: ExpectedRefusal): Effect.Effect<SqlRefusal, never, R>
} = dual(2, refusalOf)
