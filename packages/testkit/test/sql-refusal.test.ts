import { assert, layer } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { SqlClient } from "effect/sql"
import { expectSqlRefusal, TestDatabase } from "../src/index.ts"

/** A test of the assertion itself (tables of this file's own database; no temp tables: the pool may answer on another connection): it must fail the test on every refusal but the one expected. */
const failureMessage = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.exit(effect), (exit) => {
    assert.isTrue(Exit.isFailure(exit), "the assertion passed what it must reject")
    if (Exit.isSuccess(exit)) return ""
    const squashed = Cause.squash(exit.cause)
    return squashed instanceof Error ? squashed.message : String(squashed)
  })

layer(TestDatabase)("expectSqlRefusal (real Postgres)", (it) => {
  it.effect("data-first and pipeable forms return the refusal: SQLSTATE, constraint, message", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE refusal_probe (n int CONSTRAINT refusal_probe_positive CHECK (n > 0))`
      const first = yield* expectSqlRefusal(sql`INSERT INTO refusal_probe VALUES (0)`, { code: "23514", constraint: "refusal_probe_positive", message: /refusal_probe_positive/ })
      const piped = yield* sql`INSERT INTO refusal_probe VALUES (-1)`.pipe(expectSqlRefusal({ code: "23514" }))
      assert.deepStrictEqual([first.code, first.constraint, piped.code, piped.constraint], ["23514", "refusal_probe_positive", "23514", "refusal_probe_positive"])
      assert.include(piped.message, "violates check constraint")
    }))

  it.effect("fails the test when the statement is accepted, refused with another SQLSTATE, by another constraint, or with another message", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE refusal_probe2 (n int CONSTRAINT refusal_probe2_positive CHECK (n > 0))`
      const accepted = yield* failureMessage(expectSqlRefusal(sql`INSERT INTO refusal_probe2 VALUES (1)`, { code: "23514" }))
      assert.include(accepted, "accepted what it must refuse with 23514")
      const otherCode = yield* failureMessage(expectSqlRefusal(sql`SELECT 1 / 0`, { code: "23514" }))
      assert.include(otherCode, "got 22012")
      const otherConstraint = yield* failureMessage(expectSqlRefusal(sql`INSERT INTO refusal_probe2 VALUES (0)`, { code: "23514", constraint: "another_check" }))
      assert.include(otherConstraint, "got 23514 (refusal_probe2_positive)")
      const otherMessage = yield* failureMessage(expectSqlRefusal(sql`INSERT INTO refusal_probe2 VALUES (0)`, { code: "23514", message: /not what postgres says/ }))
      assert.include(otherMessage, "not what postgres says")
    }))
})
