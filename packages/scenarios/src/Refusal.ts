import { Cause, Effect, Exit, Option, Schema } from "effect"
import type { SqlError } from "effect/sql/SqlError"
import type { Narrator } from "./Narrator.ts"

const decodeFields = Schema.decodeUnknownOption(Schema.Struct({ code: Schema.String, constraint: Schema.optional(Schema.String) }))

/** SQLSTATE, constraint and message PostgreSQL gave (the driver keeps them on the reason's cause). */
export const refusalOf = (error: SqlError) => {
  const cause: unknown = error.reason.cause
  const fields = Option.getOrUndefined(decodeFields(cause))
  return { sqlstate: fields?.code ?? "", constraint: fields?.constraint ?? "", message: cause instanceof Error ? cause.message : String(cause) }
}

/**
 * Runs an attack that the database must refuse with `sqlstate`: prints what PostgreSQL answered and
 * fails the scenario when it accepted, or refused for another reason (a typo must not pass).
 */
export const mustRefuse = <A, R>(say: Narrator, what: string, sqlstate: string, attack: Effect.Effect<A, SqlError, R>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(attack)
    if (Exit.isSuccess(exit)) return yield* say.expect(false, `${what}: refused by the database`, "the database ACCEPTED it")
    const failure = exit.cause.reasons.find(Cause.isFailReason)
    if (failure === undefined) return yield* say.expect(false, `${what}: refused by the database`, String(exit.cause))
    const refusal = refusalOf(failure.error)
    yield* say.evidence(`${what} → PostgreSQL`, `SQLSTATE ${refusal.sqlstate}${refusal.constraint === "" ? "" : ` (${refusal.constraint})`}: ${refusal.message}`)
    yield* say.expect(refusal.sqlstate === sqlstate, `refused with SQLSTATE ${sqlstate}`, refusal)
  })
