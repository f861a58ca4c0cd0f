import { assert, describe, it } from "@effect/vitest"
import { defaultRedisTimeouts, postgresLayer, Redis, decodeRows } from "@pay/infra"
import { isInstance, throwaway } from "@pay/testkit"
import { spawn } from "node:child_process"
import { Effect, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"

const selectOne = (url: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* decodeRows(Schema.Struct({ one: Schema.Number }))(sql`SELECT 1 AS one`)
    return rows[0]?.one
  }).pipe(Effect.provide(postgresLayer({ url: Redacted.make(url), maxConnections: 1 })))

describe("throwaway dependencies", () => {
  it.live("a throwaway Postgres answers, dies by its pid, and comes back on the same port", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const pg = yield* throwaway("postgres")
        assert.notStrictEqual(pg.port, 5432)
        assert.strictEqual(yield* selectOne(pg.url), 1)
        yield* pg.kill
        const down = yield* Effect.result(selectOne(pg.url).pipe(Effect.timeout("10 seconds")))
        assert.strictEqual(down._tag, "Failure")
        yield* pg.restart
        assert.strictEqual(yield* selectOne(pg.url), 1)
        // the machine's own server is untouched
        assert.strictEqual(yield* selectOne("postgres://postgres@127.0.0.1:5432/postgres"), 1)
      })
    ), 60_000)

  it.live("a pid is signalled only while its command line names the instance: a live process that is not it, and the instance once dead, are not", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const instance = yield* throwaway("redis")
        const identity = `:${instance.port}`
        assert.isTrue(isInstance(instance.pid(), identity), "the instance itself")
        // Another live process (what a reused pid would be): never the instance.
        const other = spawn("sleep", ["30"], { stdio: "ignore" })
        yield* Effect.addFinalizer(() => Effect.sync(() => other.kill("SIGKILL")))
        assert.isDefined(other.pid)
        assert.isFalse(isInstance(other.pid ?? -1, identity), "a live process whose command line does not name the instance")
        assert.isFalse(isInstance(process.pid, identity), "this test process")
        const killed = instance.pid()
        yield* instance.kill
        assert.isFalse(isInstance(killed, identity), "the instance once dead")
      })
    ), 30_000)

  it.live("a throwaway Redis fails fast with RedisError once killed", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const instance = yield* throwaway("redis")
        const redis = yield* Redis.make({ url: instance.url, keyPrefix: "t:", ...defaultRedisTimeouts })
        yield* redis.set("k", "v", 10_000)
        assert.strictEqual(yield* redis.get("k"), "v")
        yield* instance.kill
        const started = Date.now()
        const failed = yield* Effect.flip(redis.get("k"))
        assert.strictEqual(failed._tag, "RedisError")
        assert.isBelow(Date.now() - started, 2_000)
      })
    ), 60_000)
})
