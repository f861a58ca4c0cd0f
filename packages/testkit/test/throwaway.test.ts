import { assert, describe, it } from "@effect/vitest"
import { defaultRedisTimeouts, postgresLayer, Redis, decodeRows } from "@pay/infra"
import { throwaway } from "@pay/testkit"
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
