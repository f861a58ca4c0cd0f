// A database outage seen from the HTTP edge of the real server process: every /v1 request fails at
// its API key's lookup (Authorization.ts), before any handler. The answer is the documented 503
// database_unavailable, and the log says so in a `request failed` ERROR line with its code and the
// driver's reason, as for any other 5xx (docs/observability.md; oncall.md DatabaseUnreachable
// greps for it). It used to leave only the access line: the operator's step found nothing
// (outside operator review: 281 failed requests, 0 lines).
import { assert, layer } from "@effect/vitest"
import { startPostgresProxy } from "@pay/testkit/FaultProxy"
import { testDatabaseUrlAsRole } from "@pay/testkit"
import { Effect } from "effect"
import { jsonOf } from "./support/Http.ts"
import { createMerchant, TestServer, testServerLayer } from "./support/TestServer.ts"

layer(testServerLayer(), { excludeTestServices: true, timeout: "90 seconds" })("a database outage at the HTTP edge (real server process)", (it) => {
  it.effect("a key's lookup with Postgres unreachable: 503 database_unavailable, and a `request failed` line naming the code and the driver's reason", () =>
    Effect.scoped(Effect.gen(function* () {
      const server = yield* TestServer
      // The server's connections through a proxy this test can cut (the database itself untouched).
      const { proxy, url } = yield* startPostgresProxy(testDatabaseUrlAsRole(server.database.url, "pay_app"))
      yield* server.process.kill9
      yield* server.process.restart({ DATABASE_URL: url })
      // A key never looked up before: not in the server's key cache, so the lookup goes to Postgres.
      const m = yield* createMerchant("Outage")
      yield* proxy.setMode("refuse")
      yield* proxy.cutAll
      const answer = yield* server.request("GET", "/v1/balance", { apiKey: m.apiKey, headers: { "x-request-id": "outage-1" } })
      assert.strictEqual(answer.status, 503, answer.text)
      assert.strictEqual(jsonOf(answer)["code"], "database_unavailable")
      yield* Effect.sleep("300 millis")
      const failed = server.process.output().split("\n").filter((line) => line.includes("\"request failed\"") && line.includes("outage-1"))
      assert.strictEqual(failed.length, 1, server.process.output().slice(-2_000))
      const line: unknown = JSON.parse(failed[0] ?? "{}")
      assert.deepInclude(line, { level: "ERROR", status: 503, code: "database_unavailable", error: "SqlError" })
      assert.property(line, "reason", "the driver's reason (a refused connection)")
      // Readiness names postgres with the driver's reason, not only "Failed to connect".
      const ready = yield* server.request("GET", "/health/ready")
      assert.strictEqual(ready.status, 503, ready.text)
      const checks = jsonOf(ready)["checks"]
      const postgres = Array.isArray(checks) ? checks.find((check: unknown) => typeof check === "object" && check !== null && "name" in check && check.name === "postgres") : undefined
      const error = typeof postgres === "object" && postgres !== null && "error" in postgres ? String(postgres.error) : ""
      // Public: what kind of failure, never where (no address, role, database or driver text).
      assert.match(error, /^does not answer \(/, ready.text)
      assert.notInclude(ready.text, "127.0.0.1")
      assert.notInclude(ready.text, server.database.name)
      // The operator's log: the client's words, then the driver's reason ("…: Connection closed unexpectedly").
      const downLineOf = () => server.process.output().split("\n").find((line) => line.includes("readiness: postgres is down"))
      for (let poll = 0; poll < 40 && downLineOf() === undefined; poll++) yield* Effect.sleep("50 millis")
      const downLine = downLineOf()
      assert.match(downLine ?? "", /"reason":"PgConnection: [^:"]+: [^"]+"/, server.process.output().slice(-2_000))
      yield* proxy.setMode("pass")
      const healed = yield* server.request("GET", "/v1/balance", { apiKey: m.apiKey })
      assert.strictEqual(healed.status, 200, healed.text)
    })))
})
