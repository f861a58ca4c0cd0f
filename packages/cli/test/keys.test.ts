// Issue 11: `pnpm cli keys revoke <unknown uuid>` printed "revoked" and exited 0. The operator's
// commands, run as a process against a database of their own: the exit code says what happened.
// Since migrations/0109 they write keys as their own role, pay_keys (KEYS_DATABASE_URL).
import { assert, describe, it } from "@effect/vitest"
import { decodeRows, postgresLayer } from "@pay/infra"
import { acquireTestDatabase, testDatabaseUrlAsRole } from "@pay/testkit"
import { Effect, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { cli, describeRun } from "./support.ts"

const CreatedKey = Schema.fromJsonString(Schema.Struct({ merchant_id: Schema.String, api_key_id: Schema.String, api_key: Schema.String }))
const RevokeAnswer = Schema.fromJsonString(Schema.Struct({ api_key_id: Schema.String, merchant_id: Schema.String, result: Schema.String, revoked_at: Schema.String }))

describe("pnpm cli keys revoke", () => {
  it.effect("revokes a real key (exit 0), says 'already revoked' the second time (exit 0), and refuses an unknown or malformed id (exit 1, nothing revoked)", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const created = yield* cli(database.url, ["merchants", "create", "Revoker"])
      assert.strictEqual(created.exitCode, 0, describeRun(created))
      const key = yield* Schema.decodeUnknownEffect(CreatedKey)(created.stdout)

      const first = yield* cli(database.url, ["keys", "revoke", key.api_key_id])
      assert.strictEqual(first.exitCode, 0, describeRun(first))
      const revoked = yield* Schema.decodeUnknownEffect(RevokeAnswer)(first.stdout)
      assert.deepStrictEqual([revoked.api_key_id, revoked.merchant_id, revoked.result], [key.api_key_id, key.merchant_id, "revoked"])

      const second = yield* cli(database.url, ["keys", "revoke", key.api_key_id])
      assert.strictEqual(second.exitCode, 0, describeRun(second))
      const again = yield* Schema.decodeUnknownEffect(RevokeAnswer)(second.stdout)
      assert.strictEqual(again.result, "already revoked")
      assert.strictEqual(again.revoked_at, revoked.revoked_at, "the first revocation's instant is kept")

      const unknownId = crypto.randomUUID()
      const unknown = yield* cli(database.url, ["keys", "revoke", unknownId])
      assert.strictEqual(unknown.exitCode, 1, describeRun(unknown))
      assert.strictEqual(unknown.stdout, "", "nothing claims a revocation")
      assert.include(unknown.stderr, `no API key ${unknownId}`)

      // A malformed id is the command line's fault (exit 2), as for every other id.
      const malformed = yield* cli(database.url, ["keys", "revoke", "not-a-uuid"])
      assert.strictEqual(malformed.exitCode, 2, describeRun(malformed))
      assert.include(malformed.stderr, "invalid argument: an API key id is a uuid")

      const usage = yield* cli(database.url, ["keys", "revoke"])
      assert.strictEqual(usage.exitCode, 2, describeRun(usage))
    })), { timeout: 120_000 })
})

describe("the key commands' role (migrations/0109)", () => {
  it.effect("as a deployment runs them (DATABASE_URL of pay_app): merchants create, keys create and keys revoke work as pay_keys, said on stderr; the API's URL given as KEYS_DATABASE_URL is refused in one line naming the setting, nothing written", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const asApp = testDatabaseUrlAsRole(database.url, "pay_app")
      const created = yield* cli(asApp, ["merchants", "create", "Keys role"], { MIGRATION_DATABASE_URL: database.url })
      assert.strictEqual(created.exitCode, 0, describeRun(created))
      assert.include(created.stderr, "database: pay_keys@", describeRun(created))
      assert.notInclude(created.stderr, "pay_app@", "a key command never connects as pay_app")
      const key = yield* Schema.decodeUnknownEffect(CreatedKey)(created.stdout)
      const another = yield* cli(asApp, ["keys", "create", key.merchant_id])
      assert.strictEqual(another.exitCode, 0, describeRun(another))
      const revoked = yield* cli(asApp, ["keys", "revoke", key.api_key_id])
      assert.strictEqual(revoked.exitCode, 0, describeRun(revoked))

      const refused = yield* cli(asApp, ["keys", "create", key.merchant_id], { KEYS_DATABASE_URL: asApp })
      assert.strictEqual(refused.exitCode, 1, describeRun(refused))
      assert.strictEqual(refused.stdout, "", "no key printed")
      assert.include(refused.stderr, "KEYS_DATABASE_URL, which must be the role pay_keys", describeRun(refused))
      const keys = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        decodeRows(Schema.Struct({ keys: Schema.Number, live: Schema.Number }))(sql`
          SELECT count(*)::int AS keys, count(*) FILTER (WHERE revoked_at IS NULL)::int AS live FROM api_keys WHERE merchant_id = ${key.merchant_id}`)).pipe(
        Effect.provide(postgresLayer({ url: Redacted.make(database.url), maxConnections: 1, applicationName: "pay-test-keys-role" }))
      )
      assert.deepStrictEqual(keys, [{ keys: 2, live: 1 }])
      // merchants create refused the same way leaves no merchant without its key (one transaction).
      const orphan = yield* cli(asApp, ["merchants", "create", "Keys role orphan"], { KEYS_DATABASE_URL: asApp })
      assert.strictEqual(orphan.exitCode, 1, describeRun(orphan))
      // A keys database that does not answer is named as such, with its setting (not DATABASE_URL's).
      const unreachable = yield* cli(asApp, ["keys", "create", key.merchant_id], { KEYS_DATABASE_URL: "postgres://pay_keys@127.0.0.1:1/nothing" })
      assert.strictEqual(unreachable.exitCode, 1, describeRun(unreachable))
      assert.include(unreachable.stderr, "database pay_keys@127.0.0.1:1/nothing: ", describeRun(unreachable))
      assert.include(unreachable.stderr, "the database comes from KEYS_DATABASE_URL", describeRun(unreachable))
      assert.notInclude(unreachable.stderr, "pay_app@")
      const owner = postgresLayer({ url: Redacted.make(database.url), maxConnections: 2, applicationName: "pay-test-keys-role" })
      const merchants = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        decodeRows(Schema.Struct({ merchants: Schema.Number }))(sql`SELECT count(*)::int AS merchants FROM merchants WHERE name = 'Keys role orphan'`)).pipe(Effect.provide(owner))
      assert.deepStrictEqual(merchants, [{ merchants: 0 }])
      // A revocation behind another session's lock on the key ends, saying so, instead of waiting for ever.
      const fresh = yield* Schema.decodeUnknownEffect(CreatedKey)((yield* cli(asApp, ["keys", "create", key.merchant_id])).stdout)
      const blocked = yield* Effect.scoped(Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        return yield* sql.withTransaction(Effect.andThen(
          sql`SELECT id FROM api_keys WHERE id = ${fresh.api_key_id}::uuid FOR UPDATE`,
          cli(asApp, ["keys", "revoke", fresh.api_key_id])
        ))
      })).pipe(Effect.provide(owner))
      assert.strictEqual(blocked.exitCode, 1, describeRun(blocked))
      assert.include(blocked.stderr, "locked by another session", describeRun(blocked))
      assert.strictEqual((yield* cli(asApp, ["keys", "revoke", fresh.api_key_id])).exitCode, 0)
    })), { timeout: 120_000 })
})
