// The per-aggregate claim guard as a property, on the real claim statement (OutboxStore.ts: the
// candidates, the unpublished rows below the last one, the rows other claims hold): whatever rows
// of a few aggregates another claim holds, a claim takes, for each aggregate, exactly the longest
// prefix of its unpublished rows that nobody else holds, nothing after a held row, in position order.
// 30 backlogs drawn by fast-check (a fixed seed), each on the test database (real Postgres, two
// connections: the holder's transaction stays open while the claim runs).
import { assert, layer } from "@effect/vitest"
import { makeTestDatabase } from "@pay/testkit"
import { Deferred, Effect, Fiber, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as fc from "fast-check"
import { OutboxStore } from "../src/OutboxStore.ts"

const ClaimLayer = OutboxStore.layer.pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 4 })))

/** Unpublished rows of a few aggregates, interleaved; each held by another claim or not. */
const backlog = fc.array(fc.record({ aggregate: fc.constantFrom("a", "b", "c", "d"), held: fc.boolean() }), { minLength: 1, maxLength: 24 })

layer(ClaimLayer, { excludeTestServices: true, timeout: "120 seconds" })("the claim's per-aggregate guard (real Postgres)", (it) => {
  it.effect("property: each aggregate's longest prefix nobody else holds, nothing after a held row, in position order", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const store = yield* OutboxStore
      const samples = fc.sample(backlog, { numRuns: 30, seed: 20261205 })
      for (const [run, rows] of samples.entries()) {
        // This run's rows, in order (positions follow the insert order).
        const ids: Array<string> = []
        for (const row of rows) {
          const [inserted] = yield* sql<{ readonly id: string }>`
            INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
            VALUES (gen_random_uuid(), 'order_test', ${`r${run}-${row.aggregate}`}, 'order_event', '{}'::jsonb)
            RETURNING id::text AS id`
          if (inserted === undefined) return yield* Effect.die(new Error("insert returned no row"))
          ids.push(inserted.id)
        }
        const heldIds = ids.filter((_, index) => rows[index]?.held === true)
        // Expected: walk each aggregate's rows in order; claim until one is held.
        const blocked = new Set<string>()
        const expected = ids.filter((_, index) => {
          const row = rows[index]
          if (row === undefined) return false
          if (row.held) blocked.add(row.aggregate)
          return !row.held && !blocked.has(row.aggregate)
        })
        // Another claim holds its rows (locked, as during a send) while this one claims.
        const locked = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function* () {
          if (heldIds.length > 0) yield* sql`SELECT id FROM outbox_events WHERE id = ANY(${heldIds}::uuid[]) FOR UPDATE`
          yield* Deferred.succeed(locked, undefined)
          yield* Deferred.await(release)
        })))
        yield* Deferred.await(locked)
        const claimed = yield* sql.withTransaction(store.claim(1_000))
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(holder)
        assert.deepStrictEqual(claimed.map((row) => row.id), expected, `run ${run}: ${JSON.stringify(rows)}`)
        // Every row of the run published by a later transaction, so that the next run starts clean.
        yield* sql.withTransaction(Effect.flatMap(store.claim(1_000), (all) => store.markPublished(all.map((row) => row.id))))
      }
    }))
})
