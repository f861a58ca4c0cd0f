// Every consumer setting has bounds, checked when the configuration is read (at start-up), with a
// message naming the variable and its bounds; options handed directly (tests, the CLI) meet the
// same table.
import { assert, describe, it } from "@effect/vitest"
import { type Config, ConfigProvider, Effect, Result } from "effect"
import { assertConsumerOptions, ConsumerOptionsFromEnv, ConsumersEnabled, defaultConsumerOptions } from "../src/ConsumerConfig.ts"

const read = <A>(config: Config.Config<A>, env: Record<string, string>) => Effect.result(config.parse(ConfigProvider.fromEnv({ env })))

describe("consumer configuration", () => {
  it.effect("defaults when unset, values inside the bounds taken, values outside refused naming the variable and its bounds", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* ConsumerOptionsFromEnv.parse(ConfigProvider.fromEnv({ env: {} })), defaultConsumerOptions)
      assert.isTrue(yield* ConsumersEnabled.parse(ConfigProvider.fromEnv({ env: {} })), "consumers run inside the server by default")
      const custom = yield* ConsumerOptionsFromEnv.parse(ConfigProvider.fromEnv({ env: { CONSUMER_BATCH_SIZE: "1000", CONSUMER_ATTEMPTS_MAX: "1" } }))
      assert.deepStrictEqual([custom.batch_max, custom.attempt_max], [1_000, 1])
      for (const [name, value, bounds] of [
        ["CONSUMER_BATCH_SIZE", "5000", "between 1 and 1000"],
        ["CONSUMER_ATTEMPTS_MAX", "0", "between 1 and 20"],
        ["CONSUMER_RECORD_TIMEOUT_MS", "50", "between 100 and 300000"],
        ["CONSUMER_POLL_TIMEOUT_MS", "5", "between 10 and 60000"],
        ["CONSUMER_KAFKA_COMMIT_INTERVAL_MS", "60001", "between 0 and 60000"]
      ] as const) {
        const result = yield* read(ConsumerOptionsFromEnv, { [name]: value })
        assert.isTrue(Result.isFailure(result), `${name}=${value} refused`)
        if (Result.isFailure(result)) assert.include(String(result.failure), `${name} must be an integer ${bounds}`)
      }
      assert.throws(() => assertConsumerOptions({ ...defaultConsumerOptions, batch_max: 0 }), /batch_max must be an integer between 1 and 1000/)
      assert.throws(() => assertConsumerOptions({ ...defaultConsumerOptions, backoffBase_ms: 6_000 }), /backoffBase_ms above backoffMax_ms/)
    }))
})
