// Issue 12, "never attacked by raw SQL": an idempotency key names one request forever, and a
// merchant's key exists once (migrations/0005_idempotency.sql, 0008). Raw SQL as the table owner.
import { layer } from "@effect/vitest"
import { expectSqlRefusal, TestDatabase } from "@pay/testkit"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"

const MERCHANT = "mer_0000000000000000000000at"
const FINGERPRINT = "a".repeat(64)

const insertKey = (sql: SqlClient.SqlClient, key: string) => sql`
  INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, request_body, operation)
  VALUES (gen_random_uuid(), ${MERCHANT}, ${key}, 'POST', '/v1/payments', ${FINGERPRINT}, '{"amount": 1}'::jsonb, '{"_tag": "create"}'::jsonb)`

layer(TestDatabase, { timeout: "60 seconds" })("attacks on idempotency keys (raw SQL)", (it) => {
  it.effect("a second row for the same (merchant, key) is refused by the unique constraint", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO merchants (id, name) VALUES (${MERCHANT}, 'Attacked') ON CONFLICT DO NOTHING`
      yield* insertKey(sql, "dup-key")
      yield* expectSqlRefusal({ code: "23505", constraint: "idempotency_keys_merchant_key" })(insertKey(sql, "dup-key"))
    }))

  it.effect("the request a key names (method, path, fingerprint, body, operation, merchant) can never be rewritten", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO merchants (id, name) VALUES (${MERCHANT}, 'Attacked') ON CONFLICT DO NOTHING`
      yield* insertKey(sql, "immutable-key")
      const rewrites = [
        sql`UPDATE idempotency_keys SET request_method = 'PUT' WHERE idempotency_key = 'immutable-key'`,
        sql`UPDATE idempotency_keys SET request_path = '/v1/payments/x/settle' WHERE idempotency_key = 'immutable-key'`,
        sql`UPDATE idempotency_keys SET request_fingerprint = ${"b".repeat(64)} WHERE idempotency_key = 'immutable-key'`,
        sql`UPDATE idempotency_keys SET request_body = '{"amount": 2}'::jsonb WHERE idempotency_key = 'immutable-key'`,
        sql`UPDATE idempotency_keys SET operation = '{"_tag": "settle"}'::jsonb WHERE idempotency_key = 'immutable-key'`,
        sql`UPDATE idempotency_keys SET idempotency_key = 'other' WHERE idempotency_key = 'immutable-key'`
      ]
      for (const rewrite of rewrites) yield* expectSqlRefusal({ code: "23000", message: /the request it names is immutable/ })(rewrite)
      // The bookkeeping of a run may change.
      yield* sql`UPDATE idempotency_keys SET recovery_point = 'payment_created' WHERE idempotency_key = 'immutable-key'`
    }))
})
