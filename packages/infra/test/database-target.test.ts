// What the CLI says it works on: never the password, and never a failure of its own (a malformed
// percent escape in a user or database name threw before any command ran).
import { assert, describe, it } from "@effect/vitest"
import { databaseTarget } from "../src/DatabaseTarget.ts"

describe("databaseTarget", () => {
  it("user@host:port/database without the password; malformed escapes kept as written; not a URL not echoed", () => {
    assert.strictEqual(databaseTarget("postgres://pay_app:secret@127.0.0.1:5433/payments"), "pay_app@127.0.0.1:5433/payments")
    assert.strictEqual(databaseTarget("postgres://pay%20app@db.internal/pay%2Dments"), "pay app@db.internal:5432/pay-ments")
    assert.strictEqual(databaseTarget("postgres://a%zz:pw@h:5432/db%"), "a%zz@h:5432/db%")
    assert.strictEqual(databaseTarget("hunter2 pasted here"), "(DATABASE_URL is not a URL)")
  })
})
