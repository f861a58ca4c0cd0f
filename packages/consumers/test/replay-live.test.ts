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
})
