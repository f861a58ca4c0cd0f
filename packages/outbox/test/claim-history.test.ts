// The claim's cost does not grow with one aggregate's history (outside re-test of 001ea54, F1): as
// pay_app, 20,000 small rows on one payment drained at 10-15 a second, holding every other payment's
// events minutes behind, because the claim's per-candidate count ("earlier unpublished rows of this
// aggregate") was planned, on stale statistics, on the full (aggregate, position) index and walked
// every row the aggregate kept, published ones included. The claim now counts among the unpublished
// rows up to its last candidate, a range no aggregate's history can widen. Here the planner is left
// no partial index to fall back on (dropped in this test's database), as the stale plan had none.
import { assert, layer } from "@effect/vitest"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { OutboxStore } from "../src/OutboxStore.ts"

const ClaimLayer = OutboxStore.layer.pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 2 })))

/** The buffers the whole claim read (the plan's first `Buffers:` line, the top node's). */
const bufferHits = (plan: string): number => {
  const hit = /Buffers: shared hit=(\d+)/.exec(plan)
  return hit?.[1] === undefined ? Number.NaN : Number(hit[1])
}

layer(ClaimLayer, { excludeTestServices: true, timeout: "120 seconds" })("the claim and one aggregate's history", (it) => {
  it.effect("12,000 published and 8,000 unpublished rows of one aggregate: a claim of 200 reads a few hundred buffers, not the aggregate's history, and still keeps its order", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const store = yield* OutboxStore
      yield* sql`DROP INDEX outbox_events_aggregate_unpublished`
      yield* sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
        SELECT gen_random_uuid(), 'history_test', 'one-aggregate', 'history_event', jsonb_build_object('n', n)
        FROM generate_series(1, 12000) AS n`
      // Published by a later transaction, as the publisher marks.
      yield* sql`UPDATE outbox_events SET published_at = clock_timestamp()`
      yield* sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
        SELECT gen_random_uuid(), 'history_test', CASE WHEN n % 10 = 0 THEN 'another' ELSE 'one-aggregate' END, 'history_event', jsonb_build_object('n', n)
        FROM generate_series(1, 8000) AS n`
      const plan = yield* store.explainClaim(200, { analyze: true })
      const hits = bufferHits(plan)
      assert.isBelow(hits, 3_000, plan)
      assert.notMatch(plan, /using outbox_events_aggregate on/, plan)
      // The order guard still holds: the first 200 unpublished rows, each aggregate's in position order.
      const claimed = yield* sql.withTransaction(store.claim(200))
      assert.strictEqual(claimed.length, 200)
      const positions = claimed.map((row) => row.position)
      assert.deepStrictEqual(positions, [...positions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))
    }))
})
