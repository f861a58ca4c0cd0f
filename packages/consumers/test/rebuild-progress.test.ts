// A replay of a large topic said nothing between "settlement rebuild starts" and its end, while
// the runbook sent the operator to its progress on stderr (outside consumer operations review):
// one `settlement rebuild progress` line at most every REBUILD_PROGRESS_INTERVAL_MS.
import { assert, it } from "@effect/vitest"
import { Effect, Logger, Ref } from "effect"
import { TestClock } from "effect/testing"
import { progressLogger, REBUILD_PROGRESS_INTERVAL_MS } from "../src/SettlementConsumer.ts"

it.effect("a rebuild logs how far it has read against its target, once per interval, never more often", () =>
  Effect.gen(function* () {
    const logged: Array<Record<string, unknown>> = []
    const capture = Logger.layer([Logger.make((options) => {
      const line = Logger.formatStructured.log(options)
      logged.push({ message: line.message, ...line.annotations })
    })])
    const read = yield* Ref.make(0n)
    const logProgress = yield* progressLogger(2, [100n, 50n, 25n], Ref.get(read))
    yield* Effect.gen(function* () {
      yield* logProgress
      yield* Ref.set(read, 40n)
      yield* TestClock.adjust(REBUILD_PROGRESS_INTERVAL_MS - 1)
      yield* logProgress
      assert.deepStrictEqual(logged, [], "nothing before an interval has passed")
      yield* TestClock.adjust(1)
      yield* logProgress
      yield* logProgress
      yield* Ref.set(read, 175n)
      yield* TestClock.adjust(REBUILD_PROGRESS_INTERVAL_MS)
      yield* logProgress
    }).pipe(Effect.provide(capture))
    assert.deepStrictEqual(logged.map((line) => [JSON.stringify(line["message"]), line["generation"], line["records_read"], line["target_records"]]), [
      [JSON.stringify("settlement rebuild progress"), 2, "40", "175"],
      [JSON.stringify("settlement rebuild progress"), 2, "175", "175"]
    ])
  }))
