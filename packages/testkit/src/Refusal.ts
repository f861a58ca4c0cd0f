import { Effect, Exit } from "effect"
import type { SqlError } from "effect/sql/SqlError"
import { sqlRefusalOf } from "./SqlRefusal.ts"

/** What PostgreSQL said when it refused a statement (the driver keeps it on the reason's cause). */
export interface PostgresRefusal {
  /** SQLSTATE, e.g. `23514`, `42501`, `LG001`. */
  readonly code: string
  readonly message: string
  /** The constraint named by the server (CHECK, UNIQUE, FOREIGN KEY), or "" when none. */
  readonly constraint: string
}

/** SQLSTATE, message and constraint of a PostgreSQL error. */
export const postgresRefusal = (error: SqlError): PostgresRefusal => {
  const refusal = sqlRefusalOf(error)
  return { code: refusal.code, message: refusal.message, constraint: refusal.constraint ?? "" }
}

/**
 * Runs raw SQL that the database must refuse with `sqlstate` (and, when given, by `constraint`),
 * and returns the refusal. Accepted, refused for another reason or by another constraint: the test
 * fails with what the server really said. (Pipeable form of `expectSqlRefusal`.)
 */
export const expectRefused = (sqlstate: string, constraint?: string) =>
  <A, R>(effect: Effect.Effect<A, SqlError, R>): Effect.Effect<PostgresRefusal, never, R> =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(effect)
      if (Exit.isSuccess(exit)) {
        return yield* Effect.die(new Error(`the database accepted what it must refuse with ${sqlstate}`))
      }
      const error = Exit.findErrorOption(exit)
      if (error._tag === "None") return yield* Effect.die(new Error(`expected an SqlError ${sqlstate}, got ${String(exit.cause)}`))
      const refusal = postgresRefusal(error.value)
      if (refusal.code !== sqlstate || (constraint !== undefined && refusal.constraint !== constraint)) {
        return yield* Effect.die(new Error(
          `expected ${sqlstate}${constraint === undefined ? "" : ` (${constraint})`}, got ${refusal.code}` +
            `${refusal.constraint === "" ? "" : ` (${refusal.constraint})`}: ${refusal.message}`
        ))
      }
      return refusal
    })
