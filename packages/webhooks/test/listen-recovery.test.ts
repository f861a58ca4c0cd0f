// The sender's LISTEN connection through a database outage: polling covers the wait, and the log
// says it once. It logged a WARN with its stack every second of a Postgres outage (outside
// operator review); now one WARN when it is lost, one INFO when it is back, the retries between
// at DEBUG with a pause that doubles (bounded).
import { assert, describe, it } from "@effect/vitest"
import { postgresLayer } from "@pay/infra"
import { acquireTestDatabase } from "@pay/testkit"
import { startPostgresProxy } from "@pay/testkit/FaultProxy"
import { Effect, Layer, Logger, Redacted, References } from "effect"
import { WebhookSender, WebhookSenderLoop } from "../src/DeliveryWorker.ts"
import { defaultSenderOptions } from "../src/Model.ts"
import { WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"

describe("the webhook sender's LISTEN through a database outage", () => {
  it.live("one WARN when it is lost, one INFO when it is back, however long the outage", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const { proxy, url } = yield* startPostgresProxy(database.url)
      const logged: Array<{ readonly level: string; readonly message: string }> = []
      const capture = Logger.layer([Logger.make((options) => {
        const line = Logger.formatStructured.log(options)
        logged.push({ level: line.level, message: JSON.stringify(line.message) })
      })])
      const sender = WebhookSender.layerWith({ ...defaultSenderOptions, pollInterval_ms: 200, allowLoopbackHttp: true })
      yield* Layer.build(WebhookSenderLoop.pipe(
        Layer.provide(sender),
        Layer.provide(postgresLayer({ url: Redacted.make(url), maxConnections: 3, applicationName: "pay-test-listen" })),
        Layer.provide(WebhookSecretBoxPlaintext),
        Layer.provide(capture),
        // The retries are DEBUG lines: counted only if they are written.
        Layer.provide(Layer.succeed(References.MinimumLogLevel, "Debug"))
      ))
      yield* Effect.sleep("1 second")
      yield* proxy.setMode("refuse")
      yield* proxy.cutAll
      yield* Effect.sleep("6 seconds")
      yield* proxy.setMode("pass")
      const back = () => logged.some((line) => line.level === "INFO" && line.message.includes("LISTEN webhook_deliveries is back"))
      for (let poll = 0; poll < 100 && !back(); poll++) yield* Effect.sleep("200 millis")
      const lost = logged.filter((line) => line.message.includes("LISTEN webhook_deliveries lost"))
      assert.deepStrictEqual(lost.map((line) => line.level), ["WARN"], JSON.stringify(logged.slice(-20)))
      assert.isTrue(back(), "the INFO line once LISTEN is back")
      const retries = logged.filter((line) => line.message.includes("LISTEN webhook_deliveries still lost"))
      assert.isAtLeast(retries.length, 1, "retried during the outage")
      assert.isAtMost(retries.length, 4, "6 s of outage: retried after 1, 2, 4 s (doubling), not every second")
      assert.isTrue(retries.every((line) => line.level === "DEBUG"))
    })), 60_000)
})
