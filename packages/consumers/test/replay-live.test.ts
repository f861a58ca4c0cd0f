import { assert, it } from "@effect/vitest"
import { Effect, Fiber, Ref } from "effect"
import { SqlClient } from "effect/sql"
import { describe } from "vitest"
import { initialStatus } from "../src/ConsumerRunner.ts"
import { rebuildSettlement, runSettlementLive } from "../src/SettlementConsumer.ts"
import { makeSettlementProjection } from "../src/SettlementProjection.ts"
import {
  ConsumerTestLayer,
  eventMessage,
  expectedProjection,
  freshTopics,
  lifecycle,
  merchantId,
  projectionAsExpected,
  send,
  testOptions
} from "./support.ts"

/** Polls (wall clock, bounded) until `check` holds. */
const eventually = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, timeout_ms = 30_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout_ms
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for: ${what}`))
      yield* Effect.sleep("50 millis")
    }
  })

describe("replay while the live consumer runs (real Postgres, real Kafka)", () => {
  it.live("the live generation keeps serving during a rebuild; after the swap the live consumer follows the new generation from where the rebuild stopped", () =>
    Effect.gen(function* () {
      const topics = yield* freshTopics
      const sql = yield* SqlClient.SqlClient
      const projection = makeSettlementProjection(sql)
      const merchant = merchantId()
      const before = Array.from({ length: 6 }, (_, n) => lifecycle(merchant, "EUR", 1_000 + n, true))
      yield* send(before.flat().map((payload) => eventMessage(topics.topic, payload)))

      const status = yield* Ref.make(initialStatus("settlement"))
      const live = yield* Effect.forkChild(runSettlementLive({ ...topics, options: testOptions }, status))
      const settledBefore = before.map((payloads) => payloads[2])
      const rowsOf = (generation: number) => Effect.map(projection.rows(generation), projectionAsExpected)
      const equalTo = (generation: number, settled: ReadonlyArray<Record<string, unknown>>) =>
        Effect.map(rowsOf(generation), (rows) => JSON.stringify(rows, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)) ===
          JSON.stringify(expectedProjection(settled), (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)))
      yield* eventually("the live generation 1 caught up", equalTo(1, settledBefore))

      const rebuilt = yield* rebuildSettlement({ ...topics, options: testOptions, timeout_ms: 40_000 })
      assert.deepStrictEqual([rebuilt.previous, rebuilt.generation, rebuilt.swapped], [1, 2, true])
      assert.isTrue(yield* equalTo(2, settledBefore), "the rebuild equals the live projection")

      const after = Array.from({ length: 3 }, (_, n) => lifecycle(merchant, "EUR", 5_000 + n, true))
      yield* send(after.flat().map((payload) => eventMessage(topics.topic, payload)))
      const settledAll = [...settledBefore, ...after.map((payloads) => payloads[2])]
      yield* eventually("the live consumer follows generation 2", equalTo(2, settledAll))
      assert.strictEqual((yield* Ref.get(status)).name, "settlement.g2")
      assert.isTrue(yield* equalTo(1, settledBefore), "generation 1 is retired: it no longer moves")
      yield* Fiber.interrupt(live)
    }).pipe(Effect.provide(ConsumerTestLayer("pay-test-replay-live"))))

  it.live("the swap waits for the rebuilt generation to catch up: behind the live consumer's stored offsets on any partition, nothing is swapped", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const projection = makeSettlementProjection(sql)
      const topic = `swap-guard-${crypto.randomUUID()}`
      const live = yield* projection.live
      const next = yield* projection.nextGeneration
      const liveName = live.consumer
      const nextName = `settlement.g${next}`
      yield* sql`INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES
        (${liveName}, ${topic}, 0, 40), (${liveName}, ${topic}, 1, 25), (${nextName}, ${topic}, 0, 41), (${nextName}, ${topic}, 1, 24)`
      const behind = yield* projection.swapWhenCaughtUp(live.generation, next, topic)
      assert.deepStrictEqual(behind, { live_generation: live.generation, behind: true }, "one partition behind: not swapped")
      assert.strictEqual((yield* projection.live).generation, live.generation)
      yield* sql`UPDATE consumer_offsets SET next_offset = 25 WHERE consumer = ${nextName} AND topic = ${topic} AND partition = 1`
      const swapped = yield* projection.swapWhenCaughtUp(live.generation, next, topic)
      assert.deepStrictEqual(swapped, { live_generation: next, behind: false })
      assert.strictEqual((yield* projection.live).generation, next)
      // A second rebuild that started from the old generation cannot swap any more.
      const late = yield* projection.swapWhenCaughtUp(live.generation, next + 1, topic)
      assert.strictEqual(late.live_generation, next)
      assert.strictEqual((yield* projection.live).generation, next)
    }).pipe(Effect.provide(ConsumerTestLayer("pay-test-swap-guard"))))

  it.live("events keep flowing during a rebuild: the projection served never moves backwards at the swap (the rebuild catches up with the live generation first)", () =>
    Effect.gen(function* () {
      const topics = yield* freshTopics
      const sql = yield* SqlClient.SqlClient
      const projection = makeSettlementProjection(sql)
      const merchant = merchantId()
      yield* send(Array.from({ length: 6 }, (_, n) => lifecycle(merchant, "EUR", 1_000 + n, true)).flat().map((payload) => eventMessage(topics.topic, payload)))
      const live = yield* Effect.forkChild(runSettlementLive({ ...topics, options: testOptions }, yield* Ref.make(initialStatus("settlement"))))
      const settledIn = (generation: number) =>
        Effect.map(
          sql<{ readonly settled: string }>`SELECT coalesce(sum(payment_count), 0)::text AS settled FROM settlement_projection WHERE generation = ${generation}`,
          ([row]) => Number(row?.settled ?? "0")
        )
      const served = Effect.flatMap(projection.live, (now) => settledIn(now.generation))
      yield* eventually("the live generation 1 caught up", Effect.map(served, (settled) => settled === 6))

      // What the API would serve, sampled every 10 ms from before the rebuild to after the swap.
      const samples: Array<number> = []
      const sampler = yield* Effect.forkChild(Effect.forever(Effect.flatMap(served, (settled) => Effect.sync(() => samples.push(settled))).pipe(Effect.andThen(Effect.sleep("10 millis")))))
      // The rebuild takes the topic's end offsets first, then joins its group (seconds): events sent
      // meanwhile reach the live generation before the rebuild has read past its target.
      const rebuild = yield* Effect.forkChild(rebuildSettlement({ ...topics, options: testOptions, timeout_ms: 40_000 }))
      yield* Effect.sleep("300 millis")
      yield* send(Array.from({ length: 12 }, (_, n) => lifecycle(merchant, "EUR", 5_000 + n, true)).flat().map((payload) => eventMessage(topics.topic, payload)))
      const rebuilt = yield* Fiber.join(rebuild)
      assert.isTrue(rebuilt.swapped)
      yield* eventually("generation 2 serves everything", Effect.map(served, (settled) => settled === 18))
      yield* Fiber.interrupt(sampler)
      const dips = samples.flatMap((settled, index) => (index > 0 && settled < (samples[index - 1] ?? 0) ? [`${samples[index - 1]} → ${settled}`] : []))
      assert.deepStrictEqual(dips, [], "the served projection never went backwards")
      yield* Fiber.interrupt(live)
    }).pipe(Effect.provide(ConsumerTestLayer("pay-test-replay-flowing"))))
})
