// migrations/0106: the deliveries list filtered by status (Deliveries.ts `list`, the statement's
// shape copied) is answered from an index in the list's order, not by reading every delivery of
// the endpoint (an outside review: 0.6-1.0 s per page on an endpoint with 10^6 deliveries).
import { assert, layer } from "@effect/vitest"
import { decodeRows, postgresLayer } from "@pay/infra"
import { acquireTestDatabase } from "@pay/testkit"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"

const Database = Layer.unwrap(Effect.map(acquireTestDatabase, (info) =>
  postgresLayer({ url: Redacted.make(info.url), maxConnections: 1, applicationName: "pay-test-deliveries-by-status" })))

const Plan = decodeRows(Schema.Struct({ "QUERY PLAN": Schema.String }))

layer(Database, { excludeTestServices: true })("webhook deliveries by status", (it) => {
  it.effect("the list's status filter reads webhook_deliveries_endpoint_status, in the list's order (no sort, no scan of the endpoint's deliveries)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const plan = yield* sql.withTransaction(Effect.gen(function* () {
        // The planner's choice on an empty table is a coin toss; without scans of the whole table
        // it must name the index that serves the statement.
        yield* sql`SET LOCAL enable_seqscan = off`
        yield* sql`SET LOCAL enable_bitmapscan = off`
        return yield* Plan(sql`
          EXPLAIN SELECT d.id FROM webhook_deliveries d
          WHERE d.endpoint_id = 'we_00000000000000000000000a' AND d.status = 'failed'
          ORDER BY d.created_at DESC, d.id DESC LIMIT 101`)
      }))
      const text = plan.map((line) => line["QUERY PLAN"]).join("\n")
      assert.include(text, "webhook_deliveries_endpoint_status", text)
      assert.notInclude(text, "Sort", text)
    }))
})
