// The operator's side of the completer's parking (issue 11): `pnpm cli idempotency parked` lists
// what the completer gave up on, `pnpm cli idempotency retry <key id>` hands a key back with a fresh
// budget, and an id that names no parked key exits 1. Run as a process against its own database;
// the parked key is made by hand in SQL, as the completer would leave it (migrations/0020).
import { assert, describe, it } from "@effect/vitest"
import { generateMerchantId } from "@pay/domain"
import { decodeRows, postgresLayer } from "@pay/infra"
import { acquireTestDatabase } from "@pay/testkit"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { cli, describeRun } from "./support.ts"

const Listed = Schema.fromJsonString(Schema.Struct({
  id: Schema.String,
  merchant_id: Schema.String,
  idempotency_key: Schema.String,
  request_path: Schema.String,
  recovery_point: Schema.String,
  recovery_data: Schema.Struct({ payment_id: Schema.String }),
  completer_attempts: Schema.Number,
  completer_last_error: Schema.NullOr(Schema.String),
  parked_at: Schema.String
}))

const KeyState = Schema.Struct({ parked: Schema.Boolean, completer_attempts: Schema.Number, waiting: Schema.Boolean })

describe("pnpm cli idempotency parked | retry", () => {
  it.effect("lists parked keys (JSON lines), queues one back for the completer (exit 0, attempts reset), refuses unknown and not-parked ids (exit 1)", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      // An empty list first, before any row is written.
      const empty = yield* cli(database.url, ["idempotency", "parked"])
      assert.strictEqual(empty.exitCode, 0, describeRun(empty))
      assert.strictEqual(empty.stdout, "")
      assert.include(empty.stderr, "0 parked key(s)")

      const client = yield* Layer.build(postgresLayer({ url: Redacted.make(database.url), maxConnections: 1 }))
      const sql = Context.get(client, SqlClient.SqlClient)
      const merchantId = yield* generateMerchantId
      yield* sql`INSERT INTO merchants (id, name) VALUES (${merchantId}, 'Parked CLI')`
      const insertKey = (key: string, parked: boolean) =>
        decodeRows(Schema.Struct({ id: Schema.String }))(sql`
          INSERT INTO idempotency_keys
            (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, operation,
             recovery_point, recovery_data, completer_attempts, completer_last_error, completer_next_at, parked_at)
          VALUES (gen_random_uuid(), ${merchantId}, ${key}, 'POST', '/v1/payments/pay_1/settle', ${"c".repeat(64)},
                  '{"_tag": "settle", "payment_id": "pay_1"}'::jsonb, 'capture_requested', '{"payment_id": "pay_1"}'::jsonb,
                  8, 'the acquirer is unavailable', now() + interval '1 hour', ${parked ? new Date() : null})
          RETURNING id`).pipe(Effect.map((rows) => rows[0]?.id ?? assert.fail("no id")))
      const parkedId = yield* insertKey("parked-1", true)
      const backingOffId = yield* insertKey("backing-off-1", false)

      const listed = yield* cli(database.url, ["idempotency", "parked"])
      assert.strictEqual(listed.exitCode, 0, describeRun(listed))
      const lines = listed.stdout.trim().split("\n")
      assert.strictEqual(lines.length, 1, listed.stdout)
      const row = yield* Schema.decodeUnknownEffect(Listed)(lines[0])
      assert.deepStrictEqual(
        [row.id, row.merchant_id, row.idempotency_key, row.recovery_point, row.recovery_data.payment_id, row.completer_attempts, row.completer_last_error],
        [parkedId, merchantId, "parked-1", "capture_requested", "pay_1", 8, "the acquirer is unavailable"]
      )

      const retried = yield* cli(database.url, ["idempotency", "retry", parkedId])
      assert.strictEqual(retried.exitCode, 0, describeRun(retried))
      const [after] = yield* decodeRows(KeyState)(sql`
        SELECT parked_at IS NOT NULL AS parked, completer_attempts, completer_next_at IS NOT NULL AS waiting
        FROM idempotency_keys WHERE id = ${parkedId}`)
      assert.deepStrictEqual(after, { parked: false, completer_attempts: 0, waiting: false }, "back in the completer's queue, now")
      const none = yield* cli(database.url, ["idempotency", "parked"])
      assert.strictEqual(none.stdout, "")

      for (const id of [parkedId, backingOffId, crypto.randomUUID()]) {
        const refused = yield* cli(database.url, ["idempotency", "retry", id])
        assert.strictEqual(refused.exitCode, 1, `${id}: ${describeRun(refused)}`)
        assert.include(refused.stderr, `no parked idempotency key ${id}`)
      }
      // Not an id at all: a malformed command line (exit 2, runbook.md), not an unknown key.
      const malformed = yield* cli(database.url, ["idempotency", "retry", "not-a-uuid"])
      assert.strictEqual(malformed.exitCode, 2, describeRun(malformed))
      assert.include(malformed.stderr, "an idempotency key id is a uuid")
      const [untouched] = yield* decodeRows(KeyState)(sql`
        SELECT parked_at IS NOT NULL AS parked, completer_attempts, completer_next_at IS NOT NULL AS waiting
        FROM idempotency_keys WHERE id = ${backingOffId}`)
      assert.deepStrictEqual(untouched, { parked: false, completer_attempts: 8, waiting: true }, "a key that is not parked is not touched")

      const usage = yield* cli(database.url, ["idempotency", "parked", "0"])
      assert.notStrictEqual(usage.exitCode, 0, describeRun(usage))
    })), { timeout: 120_000 })
})
