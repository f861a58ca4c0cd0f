// A busy partition lane's waiting work takes the next polls' records of its partition, up to the
// bound (issue 14: bigger slices when there is a backlog), in offset order; other partitions run
// concurrently; `done` hears of exactly the records each call handled. No broker or database:
// the lanes only schedule (SubscriptionPipeline.ts).
import { assert, it } from "@effect/vitest"
import type { KafkaRecord } from "@pay/infra"
import { Deferred, Effect } from "effect"
import { makePartitionLanes } from "../src/SubscriptionPipeline.ts"

const record = (partition: number, offset: number): KafkaRecord => ({
  topic: "lanes.test", partition, offset: BigInt(offset), key: "k", value: "{}", value_bytes: new Uint8Array(), headers: {}, timestamp_ms: 0
})
const range = (partition: number, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, n) => record(partition, from + n))
const labels = (calls: ReadonlyArray<ReadonlyArray<KafkaRecord>>) => calls.map((call) => call.map((r) => `${r.partition}:${r.offset}`).join(","))

const run = (coalesce_max: number) =>
  Effect.scoped(Effect.gen(function* () {
    const gate = yield* Deferred.make<void>()
    const handled: Array<ReadonlyArray<KafkaRecord>> = []
    const done: Array<ReadonlyArray<KafkaRecord>> = []
    const lanes = yield* makePartitionLanes(
      (records) => Effect.gen(function* () {
        handled.push([...records])
        // The first piece of partition 0 holds its lane until the test opens the gate.
        if (records[0]?.partition === 0 && records[0].offset === 0n) yield* Deferred.await(gate)
      }),
      (records) => void done.push([...records]),
      coalesce_max
    )
    yield* lanes.dispatch(range(0, 0, 2))
    yield* Effect.yieldNow
    yield* lanes.dispatch([...range(0, 3, 5), ...range(1, 0, 1)])
    yield* lanes.dispatch(range(0, 6, 8))
    yield* lanes.dispatch(range(0, 9, 10))
    // Partition 1 is not held back by partition 0's busy lane.
    for (let spin = 0; spin < 100 && !handled.some((call) => call[0]?.partition === 1); spin++) yield* Effect.yieldNow
    const partitionOneEarly = handled.some((call) => call[0]?.partition === 1)
    yield* Deferred.succeed(gate, undefined)
    const joined = yield* lanes.settle(0)
    return { handled: labels(handled), done: labels(done), joined, partitionOneEarly }
  }))

it.effect("records polled while their lane is busy join the waiting slice, in order, up to the bound", () =>
  Effect.gen(function* () {
    const wide = yield* run(100)
    assert.isTrue(wide.partitionOneEarly)
    assert.deepStrictEqual(wide.handled.filter((call) => call.startsWith("0:")), ["0:0,0:1,0:2", "0:3,0:4,0:5,0:6,0:7,0:8,0:9,0:10"])
    assert.deepStrictEqual([...wide.done].sort(), [...wide.handled].sort())
    assert.strictEqual(wide.joined, 13)

    // Bound 6: the waiting slice takes 3 + 3; the last 2 would make 8, so they wait in another.
    const narrow = yield* run(6)
    assert.deepStrictEqual(narrow.handled.filter((call) => call.startsWith("0:")), ["0:0,0:1,0:2", "0:3,0:4,0:5,0:6,0:7,0:8", "0:9,0:10"])
    assert.strictEqual(narrow.joined, 13)

    // Bound 1: no coalescing at all, one dispatched piece per call.
    const none = yield* run(1)
    assert.deepStrictEqual(none.handled.filter((call) => call.startsWith("0:")), ["0:0,0:1,0:2", "0:3,0:4,0:5", "0:6,0:7,0:8", "0:9,0:10"])
  }))

it.effect("a part fetched again from a lower offset (after a rebalance) never joins the waiting slice: each slice stays in offset order", () =>
  Effect.scoped(Effect.gen(function* () {
    const gate = yield* Deferred.make<void>()
    const handled: Array<ReadonlyArray<KafkaRecord>> = []
    const lanes = yield* makePartitionLanes(
      (records) => Effect.gen(function* () {
        handled.push([...records])
        if (records[0]?.offset === 0n) yield* Deferred.await(gate)
      }),
      () => undefined,
      100
    )
    yield* lanes.dispatch(range(0, 0, 2))
    yield* Effect.yieldNow
    yield* lanes.dispatch(range(0, 3, 6))
    // The group rebalanced: the client fetches again from the committed offset, 3.
    yield* lanes.dispatch(range(0, 3, 8))
    yield* Deferred.succeed(gate, undefined)
    yield* lanes.settle(0)
    assert.deepStrictEqual(labels(handled), ["0:0,0:1,0:2", "0:3,0:4,0:5,0:6", "0:3,0:4,0:5,0:6,0:7,0:8"])
    for (const call of handled) {
      assert.isTrue(call.every((r, i) => i === 0 || r.offset > (call[i - 1]?.offset ?? -1n)), `in offset order: ${labels([call]).join("")}`)
    }
  })))
