import { assert } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import type { SqlError } from "effect/sql/SqlError"

/**
 * A raw statement's refusal, as PostgreSQL gave it: SQLSTATE, the constraint that refused (when one
 * did), and the message. A test of a database rule checks these, not merely "an SqlError": a typo in
 * the statement, or another constraint, must not pass for the rule under attack.
 */
export interface SqlRefusal {
  readonly code: string
  readonly constraint: string | undefined
  readonly message: string
}

/** The fields the driver keeps from PostgreSQL's ErrorResponse on the reason's cause. */
const decodeErrorFields = Schema.decodeUnknownOption(Schema.Struct({ code: Schema.String, constraint: Schema.optional(Schema.String) }))

export const sqlRefusalOf = (error: SqlError): SqlRefusal => {
  const cause: unknown = error.reason.cause
  const fields = Option.getOrUndefined(decodeErrorFields(cause))
  return { code: fields?.code ?? "", constraint: fields?.constraint, message: cause instanceof Error ? cause.message : String(cause) }
}

/** Runs `statement`, which must fail with SQLSTATE `code` (and `constraint`, and a message matching `message`, when given). */
export const expectSqlRefusal = <A, R>(
  statement: Effect.Effect<A, SqlError, R>,
  expected: { readonly code: string; readonly constraint?: string; readonly message?: RegExp }
) =>
  Effect.gen(function* () {
    const refusal = sqlRefusalOf(yield* Effect.flip(statement))
    assert.strictEqual(refusal.code, expected.code, `SQLSTATE (${refusal.message})`)
    if (expected.constraint !== undefined) assert.strictEqual(refusal.constraint, expected.constraint, `constraint (${refusal.message})`)
    if (expected.message !== undefined) assert.match(refusal.message, expected.message)
    return refusal
  })
