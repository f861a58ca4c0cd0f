// The lag reporter's measurement time (consumer_lag_measured_timestamp_seconds, read by the
// ConsumerLagUnmeasured alert) for a consumer swapped out by a replay: kept current, since there is
// nothing to measure. Left at its last value, the alert paged for the old generation ~35 minutes
// after every replay (outside re-test). Real Kafka and Postgres.
import { assert, it } from "@effect/vitest"
import { Effect, Fiber, Metric } from "effect"
import { consumerLagMeasuredAt } from "../src/ConsumerModel.ts"
import { reportLag } from "../src/ConsumerRunner.ts"
import { ConsumerTestLayer, freshTopics } from "./support.ts"

const measuredAt = (consumer: string) => Metric.value(Metric.withAttributes(consumerLagMeasuredAt, { consumer })).pipe(Effect.map((state) => state.value))

it.live("a generation swapped out keeps its measurement time current; the live one is measured", () =>
  Effect.gen(function* () {
    const topics = yield* freshTopics
    let names: ReadonlyArray<string> = ["retired.g1"]
    const reporter = yield* Effect.forkChild(reportLag(() => names, topics.topic, 50))
    for (let look = 0; look < 100 && (yield* measuredAt("retired.g1")) === 0; look++) yield* Effect.sleep("50 millis")
    assert.isAbove(yield* measuredAt("retired.g1"), 0, "measured while named")
    // The swap: the reporter follows the new generation.
    names = ["retired.g2"]
    for (let look = 0; look < 100 && (yield* measuredAt("retired.g2")) === 0; look++) yield* Effect.sleep("50 millis")
    const afterSwap = yield* measuredAt("retired.g1")
    yield* Effect.sleep("300 millis")
    const later = yield* measuredAt("retired.g1")
    yield* Fiber.interrupt(reporter)
    assert.isAbove(later, afterSwap, "the swapped-out generation's time moves on: nothing to measure, nothing stale")
    assert.isAbove(yield* measuredAt("retired.g2"), 0)
  }).pipe(Effect.provide(ConsumerTestLayer("pay-test-lag-retired"))), { timeout: 60_000 })
