// The reaper's and the completer's scans with many keys the planner has never seen (autovacuum is
// off on the CI Postgres: nothing is ever analyzed). Their cut-off must be an index condition, so
// a pass reads the keys due and not the whole index (the long chaos run found the reaper's
// finished-key scan filtering all 48,000 keys on every pass: clock_timestamp() is volatile and
// cannot bound an index range). Also run: nothing recent is reaped or picked up, the old ones are.
import { assert, layer } from "@effect/vitest"
import { makeTestDatabase } from "@pay/testkit"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { explainMaintenanceScans } from "../src/MaintenanceScans.ts"
import { makeKeyStore } from "../src/KeyStore.ts"
import { newMerchant } from "./support.ts"

const keys_count = 4_000
const hour_ms = 3_600_000

layer(makeTestDatabase({ maxConnections: 2 }))("the idempotency maintenance scans", (it) => {
  it.effect("bound their index range by the cut-off (an Index Cond, no full scan) and act only on keys past it", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* newMerchant
      const fingerprint = "0".repeat(64)
      // Recent keys (a minute old): finished ones and unfinished ones; no ANALYZE.
      yield* sql`
        INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, recovery_point,
                                      response_status, response_body, response_content_type, finished_at, last_run_at)
        SELECT gen_random_uuid(), ${merchantId}, 'plan-finished-' || n, 'POST', '/v1/payments', ${fingerprint}, 'finished',
               201, '{}', 'application/json', clock_timestamp() - interval '1 minute', clock_timestamp() - interval '1 minute'
        FROM generate_series(1, ${keys_count}) AS n`
      yield* sql`
        INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, last_run_at)
        SELECT gen_random_uuid(), ${merchantId}, 'plan-open-' || n, 'POST', '/v1/payments', ${fingerprint}, clock_timestamp() - interval '1 minute'
        FROM generate_series(1, ${keys_count}) AS n`

      const plans = yield* explainMaintenanceScans(hour_ms, 100)
      for (const [scan, plan] of Object.entries(plans)) {
        assert.match(plan, /Index Cond: .*(finished_at|last_run_at) < \(statement_timestamp\(\)/, `${scan}:\n${plan}`)
        assert.notInclude(plan, "Seq Scan", `${scan}:\n${plan}`)
      }

      // Behaviour: with an hour's cut-off nothing qualifies; one old finished key and one old
      // never-started key are reaped, one old unfinished key is the completer's.
      const store = makeKeyStore(sql)
      const nothing = yield* store.reap(hour_ms, 100)
      assert.deepStrictEqual([nothing.finished.length, nothing.neverStarted], [0, 0])
      assert.lengthOf(yield* store.abandoned(hour_ms, 100), 0)
      // A finished key's row is final (a trigger refuses updates): the old one is inserted as such.
      yield* sql`
        INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, recovery_point,
                                      response_status, response_body, response_content_type, created_at, finished_at, last_run_at)
        VALUES (gen_random_uuid(), ${merchantId}, 'plan-finished-old', 'POST', '/v1/payments', ${fingerprint}, 'finished',
                201, '{}', 'application/json', clock_timestamp() - interval '3 hours', clock_timestamp() - interval '2 hours',
                clock_timestamp() - interval '2 hours')`
      yield* sql`UPDATE idempotency_keys SET last_run_at = clock_timestamp() - interval '2 hours'
                 WHERE merchant_id = ${merchantId} AND idempotency_key IN ('plan-open-1', 'plan-open-2')`
      yield* sql`UPDATE idempotency_keys SET recovery_point = 'charged'
                 WHERE merchant_id = ${merchantId} AND idempotency_key = 'plan-open-2'`
      const abandoned = yield* store.abandoned(hour_ms, 100)
      assert.deepStrictEqual(abandoned.map((key) => key.key).sort(), ["plan-open-1", "plan-open-2"])
      const reaped = yield* store.reap(hour_ms, 100)
      assert.deepStrictEqual(reaped.finished.map((row) => row.idempotency_key), ["plan-finished-old"])
      assert.strictEqual(reaped.neverStarted, 1, "plan-open-1 never did anything durable; plan-open-2 did (charged)")
      assert.deepStrictEqual((yield* store.abandoned(hour_ms, 100)).map((key) => key.key), ["plan-open-2"])
    }))
})
