// What an operator reads in `completer_last_error`: an expected failure is one line (its name, its
// message and its causes' messages), a defect keeps its stack trace (the runbook's "escalate").
import { assert, describe, it } from "@effect/vitest"
import { Cause } from "effect"
import { ConnectionError, ConstraintError, SqlError } from "effect/sql/SqlError"
import { completerErrorText } from "../src/workers/IdempotencyWorkers.ts"

describe("completerErrorText", () => {
  it("a typed failure is one line with its causes; a defect keeps its stack", () => {
    const refused = new Error("connect ECONNREFUSED 127.0.0.1:5499")
    const failure = new Error("PgConnection: Failed to connect", { cause: refused })
    failure.name = "SqlError"
    assert.strictEqual(completerErrorText(Cause.fail(failure)), "SqlError: PgConnection: Failed to connect (connect ECONNREFUSED 127.0.0.1:5499)")
    assert.strictEqual(completerErrorText(Cause.fail("not an Error")), "not an Error")
    const defect = completerErrorText(Cause.die(new TypeError("x is not a function")))
    assert.include(defect, "TypeError: x is not a function")
    assert.match(defect, /\n\s+at /u, "a defect's stack trace is kept")
    assert.isAtMost(completerErrorText(Cause.fail(new Error("y".repeat(5_000)))).length, 2_000)
    // A statement the database refused is a bug though typed: said so; an outage is not.
    const refusedByDatabase = new SqlError({ reason: new ConstraintError({ cause: { code: "23514", severity: "ERROR", message: "payments_no_card_data" }, message: "Query failed" }) })
    assert.include(completerErrorText(Cause.fail(refusedByDatabase)), "[invariant_violation: the database refused the statement; a bug: escalate")
    const outage = new SqlError({ reason: new ConnectionError({ cause: new Error("connect ECONNREFUSED 127.0.0.1:5432"), message: "Failed to connect" }) })
    assert.notInclude(completerErrorText(Cause.fail(outage)), "a bug")
  })
})
