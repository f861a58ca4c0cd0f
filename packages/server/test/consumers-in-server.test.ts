import { assert, layer } from "@effect/vitest"
import { makeReconciliation } from "@pay/consumers"
import { decodeRows } from "@pay/infra"
import { shortId, testRun } from "@pay/testkit"
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Api, authorizedPayment, describeAnswer, newKey, settle } from "./support/Api.ts"
import { call } from "./support/Http.ts"
import { freePort } from "./support/ServerProcess.ts"
import { createMerchant, testServerLayer } from "./support/TestServer.ts"

const run = testRun()
// A topic prefix of this file's own: the server's consumers read only this server's events.
const prefix = `${run.kafkaTopicPrefix}${shortId()}.`

/** /metrics is served on the server's METRICS_PORT only (not the API port): a free one of this file's own. */
class MetricsUrl extends Context.Service<MetricsUrl, string>()("test/MetricsUrl") {}

const serverLayer = Layer.unwrap(
  Effect.map(freePort, (metricsPort) =>
    Layer.merge(
      testServerLayer({
        env: {
          KAFKA_TOPIC_PREFIX: prefix,
          CONSUMERS_ENABLED: "true",
          CONSUMER_POLL_TIMEOUT_MS: "100",
          CONSUMER_LAG_INTERVAL_MS: "200",
          CONSUMER_RECONCILE_INTERVAL_MS: "1000",
          OUTBOX_POLL_INTERVAL_MS: "100",
          METRICS_PORT: String(metricsPort)
        }
      }),
      Layer.succeed(MetricsUrl, `http://127.0.0.1:${metricsPort}`)
    ))
)

const Projected = Schema.Struct({ settled_gross_minor: Schema.BigInt, payment_count: Schema.BigInt })

layer(Layer.provideMerge(Api.fromTestServer, serverLayer), { excludeTestServices: true, timeout: "60 seconds" })(
  "consumers inside the server process (CONSUMERS_ENABLED=true)",
  (it) => {
    it.effect("a settle answered 200 reaches the settlement projection through the server's own publisher and consumer (its own pool, as pay_consumer); lag is on /metrics; the books reconcile", () =>
      Effect.gen(function* () {
        const merchant = yield* createMerchant("In-server consumer")
        const id = yield* authorizedPayment(merchant, 4_321n, "EUR")
        const answer = yield* settle(merchant, id, newKey("settle"))
        assert.strictEqual(answer.status, 200, describeAnswer(answer))
        const settled_ms = Date.now()
        const sql = yield* SqlClient.SqlClient
        const projected = decodeRows(Projected)(sql`
          SELECT settled_gross_minor, payment_count FROM settlement_projection
          WHERE merchant_id = ${merchant.merchantId} AND generation = (SELECT generation FROM settlement_projection_live)`)
        const deadline = Date.now() + 30_000
        let rows = yield* projected
        while (rows.length === 0 && Date.now() < deadline) {
          yield* Effect.sleep("50 millis")
          rows = yield* projected
        }
        assert.deepStrictEqual(rows, [{ settled_gross_minor: 4_321n, payment_count: 1n }], "the projection got the settlement")
        yield* Effect.logInfo(`settle 200 → projection visible in ${Date.now() - settled_ms} ms (one sample, informative only)`)

        const report = yield* makeReconciliation(sql).reconcile()
        assert.deepStrictEqual(report.differences, [])

        // Two pools as a deployment runs them (migrations/0096): the API's as pay_app, the
        // consumers' (and the sender's) as pay_consumer, which alone may write the projection.
        const roles = yield* decodeRows(Schema.Struct({ role: Schema.String }))(sql`
          SELECT DISTINCT usename AS role FROM pg_stat_activity
          WHERE datname = current_database() AND usename IN ('pay_app', 'pay_consumer') ORDER BY 1`)
        assert.deepStrictEqual(roles.map((row) => row.role), ["pay_app", "pay_consumer"])

        const metricsUrl = yield* MetricsUrl
        // The server reconciles every second here: the gauge reads 0 once a round has run after the
        // projection caught up (a round during the catch-up reads the lag as a difference, and the
        // loop used to stop at that first value: a CI run saw it).
        const reconciled = /^reconciliation_differences(\{[^}]*\})? 0$/m
        let metrics = yield* call(metricsUrl, "GET", "/metrics")
        for (let attempt = 0; attempt < 100 && !reconciled.test(metrics.text); attempt++) {
          yield* Effect.sleep("100 millis")
          metrics = yield* call(metricsUrl, "GET", "/metrics")
        }
        assert.strictEqual(metrics.status, 200)
        assert.include(metrics.text, "consumer_records_total")
        assert.include(metrics.text, "consumer_lag_records")
        assert.match(metrics.text, reconciled)
      }))
  }
)
