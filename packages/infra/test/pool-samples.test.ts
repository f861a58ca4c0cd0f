// DatabaseUnreachable's signal: the pool sampler of every process queries Postgres on its interval,
// traffic or not, and counts each failure. Before, a failed sample was only a DEBUG line: with
// Postgres refusing and no traffic no alert could see it, and `db_client_connections` kept showing
// the last good sample (outside fault review). A throwaway Postgres, killed by its pid.
import { assert, describe, it } from "@effect/vitest"
import { postgresLayer } from "@pay/infra"
import { DatabasePoolMetricsLive, dbSamplesFailed } from "@pay/infra/observability/RuntimeMetrics"
import { throwaway } from "@pay/testkit"
import { ConfigProvider, Effect, Layer, Metric, Redacted } from "effect"

const failedSoFar = Metric.value(dbSamplesFailed).pipe(Effect.map((state) => state.count))

describe("the pool sampler", () => {
  it.live("counts every sample that fails while Postgres is down (db_client_samples_failed_total), none while it answers", () =>
    Effect.scoped(Effect.gen(function* () {
      const pg = yield* throwaway("postgres")
      yield* Layer.build(DatabasePoolMetricsLive.pipe(
        Layer.provide(postgresLayer({ url: Redacted.make(pg.url), maxConnections: 1, applicationName: "pool-samples-test" })),
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { RUNTIME_METRICS_INTERVAL_MS: "500", DATABASE_POOL_SIZE: "1" } })))
      ))
      const atStart = yield* failedSoFar
      yield* Effect.sleep("1500 millis")
      assert.strictEqual((yield* failedSoFar) - atStart, 0, "a sample failed while Postgres answered")
      yield* pg.kill
      yield* Effect.sleep("3 seconds")
      // A sample every 500 ms: a refused connection fails at once, so most of six are counted.
      assert.isAtLeast((yield* failedSoFar) - atStart, 3, "the failed samples are not counted")
    })), 60_000)
})
