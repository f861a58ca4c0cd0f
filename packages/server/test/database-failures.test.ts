// A failed statement is answered by its SQLSTATE (docs/api.md "Database failures"): only a database
// that did not complete the work is a 503; a refusal is a bug of ours, a 500 that says which kind.
// Every SqlError here is a real one, from the machine's PostgreSQL (or a port nobody listens on).
import { assert, layer } from "@effect/vitest"
import { postgresLayer, sqlFailureKind, sqlStateOf } from "@pay/infra"
import { TestDatabase } from "@pay/testkit"
import { freePort } from "@pay/testkit/ChildProcess"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { problemDocument } from "../src/http/Problem.ts"
import { assertNotSettled } from "@pay/settlement/test-support"
import { Api, authorizedPayment, codeOf, describeAnswer, jsonOf, newKey, settle } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"
import { respondToError, sqlFailureAnswer } from "../src/http/Respond.ts"

/** What the client gets for a failed statement: status and code of the problem document. */
const answerOf = (error: SqlError) => {
  const document = problemDocument(sqlFailureAnswer(error))
  return { sqlstate: sqlStateOf(error), status: document.status, code: document.code }
}

/** The SqlError of a statement that must fail. */
const failureOf = <A, R>(statement: Effect.Effect<A, SqlError, R>) => Effect.flip(statement)

/** PostgreSQL raising `sqlstate` itself, as a guard trigger or the server would. */
const raised = (sql: SqlClient.SqlClient, sqlstate: string) =>
  failureOf(sql.unsafe(`DO $$ BEGIN RAISE EXCEPTION 'raised for the test' USING ERRCODE = '${sqlstate}'; END $$`))

layer(TestDatabase)("database failures at the HTTP edge, by SQLSTATE", (it) => {
  it.effect("a real guard trigger's refusal (TRUNCATE outbox_events, 23000) is 500 invariant_violation, not 503", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const refusal = yield* failureOf(sql`TRUNCATE outbox_events`)
      assert.include(refusal.message + String(refusal.reason.cause), "TRUNCATE on outbox_events is not allowed")
      assert.deepStrictEqual(answerOf(refusal), { sqlstate: "23000", status: 500, code: "invariant_violation" })
      // The rendered answer, as respondToError sends it.
      const response = yield* respondToError(refusal)
      assert.strictEqual(response.status, 500)
    }))

  it.effect("a real CHECK refusal (23514) and a unique violation (23505) are invariant_violation", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const check = yield* failureOf(sql`INSERT INTO merchants (id, name) VALUES ('not-a-merchant-id', '')`)
      assert.strictEqual(sqlFailureKind(check), "invariant_violation", `${sqlStateOf(check)}: ${check.message}`)
      assert.match(sqlStateOf(check) ?? "", /^23/)
      yield* sql`CREATE TABLE failure_probe (id int PRIMARY KEY)`
      yield* sql`INSERT INTO failure_probe VALUES (1)`
      const unique = yield* failureOf(sql`INSERT INTO failure_probe VALUES (1)`)
      assert.deepStrictEqual(answerOf(unique), { sqlstate: "23505", status: 500, code: "invariant_violation" })
    }))

  it.effect("the ledger's guard codes (LG001..LG009) and a bare RAISE (P0001) are invariant_violation", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // Every one of them (outside test audit: three of the nine were checked, and dropping any
      // other from the set went unnoticed).
      for (const sqlstate of ["LG001", "LG002", "LG003", "LG004", "LG005", "LG006", "LG007", "LG008", "LG009", "P0001"]) {
        assert.deepStrictEqual(answerOf(yield* raised(sql, sqlstate)), { sqlstate, status: 500, code: "invariant_violation" })
      }
    }))

  it.effect("a real connection loss (the backend terminated mid-statement: the socket closes) is 503 database_unavailable", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const terminated = yield* failureOf(sql`SELECT pg_terminate_backend(pg_backend_pid())`)
      // The driver reports the closed socket (after PostgreSQL's 57P01 FATAL) as its ConnectionError.
      assert.strictEqual(terminated.reason._tag, "ConnectionError")
      assert.deepStrictEqual(answerOf(terminated), { sqlstate: undefined, status: 503, code: "database_unavailable" })
      // The pool replaces the connection: the next statement is answered.
      assert.deepStrictEqual(yield* sql<{ one: number }>`SELECT 1 AS one`, [{ one: 1 }])
    }))

  it.effect("a database nobody listens on (no SQLSTATE: the driver's ConnectionError) is 503 database_unavailable", () =>
    Effect.gen(function* () {
      const port = yield* freePort
      const nowhere = postgresLayer({ url: Redacted.make(`postgres://pay_app@127.0.0.1:${port}/nothing`), maxConnections: 1 })
      const refused = yield* failureOf(Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        return yield* sql`SELECT 1`
      })).pipe(Effect.provide(nowhere))
      assert.strictEqual(refused.reason._tag, "ConnectionError")
      assert.deepStrictEqual(answerOf(refused), { sqlstate: undefined, status: 503, code: "database_unavailable" })
    }))

  it.effect("unavailability and contention classes (08, 53, 57P01, 57P03, 58, 25006, 40001, 40P01, 55P03, 57014) are 503", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      for (const sqlstate of ["08006", "53300", "57P01", "53100", "57P03", "58030", "25006", "40001", "40P01", "55P03", "57014"]) {
        assert.deepStrictEqual(answerOf(yield* raised(sql, sqlstate)), { sqlstate, status: 503, code: "database_unavailable" })
      }
    }))

  it.effect("any other refusal (a real 22012 division by zero, 42501 privilege, XX000) is 500 internal_error", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      assert.deepStrictEqual(answerOf(yield* failureOf(sql`SELECT 1 / 0`)), { sqlstate: "22012", status: 500, code: "internal_error" })
      for (const sqlstate of ["42501", "XX000"]) {
        assert.deepStrictEqual(answerOf(yield* raised(sql, sqlstate)), { sqlstate, status: 500, code: "internal_error" })
      }
    }))
})

// The authorization middleware's lookup of the key, over real HTTP (the app served in-process on a
// database of its own): a refusal of the lookup is a bug (500), never "the database is down".
layer(inProcessAppLayer(), { excludeTestServices: true, timeout: "60 seconds" })("database failures while authenticating (in-process app over HTTP)", (it) => {
  it.effect("the key's lookup refused (its table renamed away: 42P01) is 500 internal_error, not 503; restored, the key works", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const api = yield* Api
      const merchant = yield* createMerchant("Lookup refused")
      // The first authenticated request of this app: no statement on api_keys is prepared yet.
      yield* sql`ALTER TABLE api_keys RENAME TO api_keys_renamed_away`
      const refused = yield* api.request("GET", "/v1/payments", { apiKey: merchant.apiKey })
      yield* sql`ALTER TABLE api_keys_renamed_away RENAME TO api_keys`
      assert.strictEqual(refused.status, 500, describeAnswer(refused))
      assert.strictEqual(codeOf(refused), "internal_error")
      const answered = yield* api.request("GET", "/v1/payments", { apiKey: merchant.apiKey })
      assert.strictEqual(answered.status, 200, describeAnswer(answered))
    }))

  it.effect("a settlement row the database refuses (a real trigger, 23514) is 500 invariant_violation, nothing is written, and the same key settles once the guard is gone", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchant = yield* createMerchant("Settlement refused")
      const paymentId = yield* authorizedPayment(merchant, 1_000n, "USD")
      // A guard the code does not know about: the posting is computed and sent, the row refused.
      yield* sql.unsafe(`CREATE FUNCTION refuse_settlement_probe() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = '23514'; END $$`)
      yield* sql.unsafe(`CREATE TRIGGER refuse_settlement_probe BEFORE INSERT ON payment_settlements
        FOR EACH ROW EXECUTE FUNCTION refuse_settlement_probe()`)
      const key = newKey("settle-refused")
      const refused = yield* settle(merchant, paymentId, key)
      yield* sql.unsafe(`DROP TRIGGER refuse_settlement_probe ON payment_settlements`)
      yield* sql.unsafe(`DROP FUNCTION refuse_settlement_probe()`)
      assert.strictEqual(refused.status, 500, describeAnswer(refused))
      assert.strictEqual(codeOf(refused), "invariant_violation")
      // The status change, the posting, the row and the event rolled back together.
      yield* assertNotSettled(paymentId)
      // Not stored as the key's answer: the same key runs again and settles, once.
      const settled = yield* settle(merchant, paymentId, key)
      assert.strictEqual(settled.status, 200, describeAnswer(settled))
      assert.strictEqual(jsonOf(settled)["status"], "SETTLED")
    }))
})
