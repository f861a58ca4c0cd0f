// An `'error'` event of the group client must end the subscription, not the process (outside fault
// review): `@platformatic/kafka` emits one when a rejoin after a failed heartbeat fails (a broker
// back from a pause), and with no listener Node threw it, killing a whole server, API included.
// The real client on the real broker; the test only keeps a handle on the instances it makes.
import { assert, layer } from "@effect/vitest"
import { defaultKafkaAdminTimeouts, defaultKafkaConsumerOptions, KafkaAdmin, KafkaConsumer } from "@pay/infra"
import type { KafkaLibrary } from "@pay/infra/KafkaLibrary"
import { shortId, testRun } from "@pay/testkit"
import { Effect, Exit } from "effect"

const run = testRun()
const brokers = run.kafkaBrokers

/** The real library, whose Consumer instances are kept in `made` (a Proxy: the class itself is unchanged). */
const observedLibrary = (made: Array<unknown>) =>
  Effect.promise(() => import("@platformatic/kafka")).pipe(
    Effect.map((real): KafkaLibrary => ({
      ...real,
      Consumer: new Proxy(real.Consumer, {
        construct: (target, args, newTarget) => {
          const instance: object = Reflect.construct(target, args, newTarget)
          made.push(instance)
          return instance
        }
      })
    }))
  )

layer(KafkaAdmin.layerWith({ brokers, clientId: "pay-test-admin", ...defaultKafkaAdminTimeouts }), { timeout: 30_000, excludeTestServices: true })(
  "Kafka group client errors (real broker)",
  (it) => {
    it.effect("an 'error' the group client emits (a failed rejoin) fails the subscription's next poll with it; the process goes on", () =>
      Effect.scoped(Effect.gen(function* () {
        const admin = yield* KafkaAdmin
        const topic = `${run.kafkaTopicPrefix}client-errors.${shortId()}`
        yield* admin.createTopic({ topic, partitions: 1 })
        const made: Array<unknown> = []
        const { Consumer } = yield* Effect.promise(() => import("@platformatic/kafka"))
        const consumer = yield* KafkaConsumer.make({ brokers, clientId: "pay-test-client-errors", ...defaultKafkaConsumerOptions }, observedLibrary(made))
        const subscription = yield* consumer.subscribe({ groupId: `${run.kafkaTopicPrefix}client-errors-${shortId()}`, topics: [topic] })
        const client = made.at(-1)
        assert.isTrue(client instanceof Consumer, "the subscription made no group client")
        if (!(client instanceof Consumer)) return
        // What the library does on a failed rejoin (consumer.js: `this.emitWithDebug(null, 'error', error)`).
        // Without a listener, emit throws it: here in the test, in production out of the event loop.
        assert.doesNotThrow(() => client.emit("error", new Error("Connection closed")))
        const polled = yield* Effect.exit(subscription.poll({ maxRecords: 10, timeout_ms: 5_000 }))
        assert.isTrue(Exit.isFailure(polled), "the poll went on as if nothing happened")
        if (Exit.isFailure(polled)) assert.include(String(polled.cause), "Connection closed")
        // A second emit (the client may fail again while it closes) is still heard.
        assert.doesNotThrow(() => client.emit("error", new Error("again")))
      })))
  }
)
