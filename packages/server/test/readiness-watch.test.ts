// Readiness as an operator reads it without anyone polling `/health/ready` (outside on-call drill):
// the server probes its dependencies by itself every READINESS_WATCH_INTERVAL_MS, so the WARN
// `readiness: <name> is down` and `readiness_dependency_up` move when a dependency goes, not when a
// balancer next asks. And Kafka answering is not enough: with `payments.events` deleted nothing can
// be published, so kafka is down (degraded) until the topic is back.
import { assert, layer } from "@effect/vitest"
import { KafkaAdmin } from "@pay/infra"
import { OutboxTopics } from "@pay/outbox/OutboxTopics"
import { shortId, testRun } from "@pay/testkit"
import { Effect, Layer, Schedule } from "effect"
import { call, jsonOf } from "./support/Http.ts"
import { freePort } from "./support/ServerProcess.ts"
import { TestServer, testServerLayer } from "./support/TestServer.ts"

const metricsPort = await Effect.runPromise(freePort)
const topicPrefix = `${testRun().kafkaTopicPrefix}ready${shortId()}.`

const Live = Layer.merge(
  testServerLayer({
    throwawayRedis: true,
    env: { READINESS_WATCH_INTERVAL_MS: "300", METRICS_PORT: String(metricsPort), KAFKA_TOPIC_PREFIX: topicPrefix }
  }),
  KafkaAdmin.layer
)

/** The server's output once it holds `text`, or a failed test after ~10 s. */
const outputWith = (text: string) =>
  Effect.gen(function* () {
    const server = yield* TestServer
    for (let poll = 0; poll < 200 && !server.process.output().includes(text); poll++) yield* Effect.sleep("50 millis")
    assert.include(server.process.output(), text, `the server never logged ${JSON.stringify(text)}`)
    return server.process.output()
  })

const dependencyUp = (dependency: string) =>
  call(`http://127.0.0.1:${metricsPort}`, "GET", "/metrics").pipe(
    Effect.map((answer) => answer.text.split("\n").find((line) => line.startsWith(`readiness_dependency_up{`) && line.includes(`dependency="${dependency}"`)))
  )

interface Check { readonly name: string; readonly status: string; readonly error?: string }
const checkOf = (body: Record<string, unknown>, name: string) => (body["checks"] as ReadonlyArray<Check>).find((check) => check.name === name)

layer(Live, { excludeTestServices: true, timeout: "90 seconds" })("readiness watched by the server itself (real server, throwaway Redis, real Kafka)", (it) => {
  it.effect("every dependency up at start: readiness_dependency_up is 1 for each, with nobody asking /health/ready", () =>
    Effect.gen(function* () {
      yield* TestServer
      for (let poll = 0; poll < 100 && (yield* dependencyUp("kafka")) === undefined; poll++) yield* Effect.sleep("100 millis")
      for (const dependency of ["postgres", "redis", "kafka"]) {
        assert.match((yield* dependencyUp(dependency)) ?? "", / 1$/, dependency)
      }
    }))

  it.effect("payments.events deleted: kafka goes down (WARN naming the topic, gauge 0, /health/ready degraded with a reason that names no topic); recreated with too few partitions, still down (WARN with that reason); back when the topic is as the publisher wants it", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const admin = yield* KafkaAdmin
      const topic = `${topicPrefix}payments.events`
      yield* admin.deleteTopics([topic])
      const output = yield* outputWith("readiness: kafka is down")
      const line = output.split("\n").find((entry) => entry.includes("readiness: kafka is down")) ?? ""
      assert.include(line, topic, "the operator's log names the topic")
      assert.match((yield* dependencyUp("kafka")) ?? "", / 0$/)
      const ready = yield* server.request("GET", "/health/ready")
      assert.strictEqual(ready.status, 200)
      assert.deepStrictEqual([jsonOf(ready)["status"], jsonOf(ready)["degraded"]], ["degraded", ["kafka"]])
      const kafka = checkOf(jsonOf(ready), "kafka")
      assert.strictEqual(kafka?.status, "down")
      assert.include(kafka?.error ?? "", "events topic is missing")
      assert.notInclude(kafka?.error ?? "", topicPrefix, "the public answer names no topic")

      // Created again by hand with 1 partition: the publisher refuses it (3 wanted), so still down,
      // said with the new reason (outside re-test: this was "up" while nothing was published).
      yield* admin.createTopic({ topic, partitions: 1 }).pipe(
        Effect.flatMap((ready) => (ready.created ? Effect.void : Effect.fail(new Error("the old topic is still there")))),
        Effect.retry({ schedule: Schedule.spaced("500 millis"), times: 40 }),
        Effect.orDie
      )
      yield* outputWith(`has 1 partitions, 3 wanted`)
      assert.match((yield* dependencyUp("kafka")) ?? "", / 0$/)

      // Deleted and created again as the publisher does (deletion is asynchronous: retried, bounded).
      yield* admin.deleteTopics([topic])
      yield* OutboxTopics.ensure(topicPrefix).pipe(
        Effect.flatMap((ready) => (ready.created ? Effect.void : Effect.fail(new Error("the old topic is still there")))),
        Effect.retry({ schedule: Schedule.spaced("500 millis"), times: 40 }),
        Effect.orDie
      )
      yield* outputWith("readiness: kafka is back")
      assert.match((yield* dependencyUp("kafka")) ?? "", / 1$/)
    }))

  it.effect("Redis killed with nobody asking /health/ready: the WARN is logged and the gauge is 0 within a few rounds", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      if (server.redis === undefined) return yield* Effect.die(new Error("this block needs the server's throwaway Redis"))
      yield* server.redis.kill
      yield* outputWith("readiness: redis is down")
      assert.match((yield* dependencyUp("redis")) ?? "", / 0$/)
    }))
})
