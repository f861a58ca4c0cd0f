// Issue 11: `pnpm cli keys revoke <unknown uuid>` printed "revoked" and exited 0. The operator's
// commands, run as a process against a database of their own: the exit code says what happened.
import { assert, describe, it } from "@effect/vitest"
import { acquireTestDatabase } from "@pay/testkit"
import { Effect, Schema } from "effect"
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
