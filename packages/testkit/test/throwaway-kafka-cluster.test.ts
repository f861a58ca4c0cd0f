import { assert, it } from "@effect/vitest"
import {
  defaultKafkaAdminTimeouts,
  defaultKafkaConsumerOptions,
  defaultKafkaProducerLimits,
  KafkaAdmin,
  KafkaConsumer,
  KafkaProducer
} from "@pay/infra"
import { shortId, testRun } from "@pay/testkit"
import { startThrowawayKafkaCluster } from "@pay/testkit/ThrowawayKafkaCluster"
import { Effect, Layer, Schedule } from "effect"

const run = testRun()

/**
 * The distinct values of `topic`, read from offset 0 until every expected value is seen (bounded).
 * A send retried after a lost ack can write its record twice (at-least-once: the platform's
 * consumers dedupe), so the test compares distinct values, not the exact list.
 */
const readDistinct = (topic: string, expected: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const consumer = yield* KafkaConsumer
    // While leadership moves off a killed node the client's metadata may still name it for another
    // partition: a read is retried as a send is (bounded; a CI run saw "connect ECONNREFUSED" to
    // the killed node's port on the first read).
    const readFromBeginning = (count: number) =>
      consumer.readFromBeginning({ topic, count, timeout_ms: 30_000 }).pipe(Effect.retry({ times: 20, schedule: Schedule.spaced("500 millis") }))
    let count = expected.length
    for (let attempt = 0; attempt < 5; attempt++) {
      const records = yield* readFromBeginning(count)
      const values = [...new Set(records.map((record) => record.value))]
      if (expected.every((value) => values.includes(value))) return values
      count = records.length + 1
    }
    return yield* readFromBeginning(count).pipe(Effect.map((records) => [...new Set(records.map((record) => record.value))]))
  })

const clients = (brokers: string, clientId: string) =>
  Layer.mergeAll(
    KafkaAdmin.layerWith({ brokers, clientId: `${clientId}-admin`, ...defaultKafkaAdminTimeouts }),
    KafkaProducer.layerWith({ brokers, clientId: `${clientId}-producer`, ...defaultKafkaProducerLimits }),
    KafkaConsumer.layerWith({ brokers, clientId: `${clientId}-consumer`, ...defaultKafkaConsumerOptions })
  )

/** A send (acks=all, the producer's fixed setting) retried while leadership moves (bounded). */
const sendRetried = (topic: string, key: string, value: string) =>
  KafkaProducer.use((producer) => producer.send([{ topic, key, value, headers: {} }])).pipe(
    Effect.retry({ times: 40, schedule: Schedule.spaced("250 millis") })
  )

it.live(
  "a 3-node KRaft cluster forms (3 brokers, replication 3, min.insync 2) and keeps acks=all writes and reads with one node killed, then paused",
  () =>
    Effect.gen(function* () {
      const cluster = yield* startThrowawayKafkaCluster()
      assert.strictEqual(cluster.nodes.length, 3)
      assert.notInclude(cluster.brokers, run.kafkaBrokers)
      yield* Effect.gen(function* () {
        const admin = yield* KafkaAdmin
        const health = yield* admin.ping
        assert.strictEqual(health.brokerCount, 3)
        const topic = `${run.kafkaTopicPrefix}cluster.${shortId()}`
        yield* admin.createTopic({ topic, partitions: 3 })
        const described = yield* admin.describeTopic(topic)
        assert.strictEqual(described.replicationFactor, 3, "the broker default is 3 copies")
        assert.strictEqual(described.configs["min.insync.replicas"], "2")
        yield* sendRetried(topic, "k1", "all three up")
        // A topic that wants every replica in sync: the producer's acks=all makes the broker refuse a
        // publish it could not copy three times (acks=1 would count it on the leader alone). This is
        // the invariant "a publish counts only once every in-sync replica has it", attacked
        // (outside reader: no test stopped a replica).
        const strict = `${topic}.strict`
        yield* admin.createTopic({ topic: strict, partitions: 1, configs: { "min.insync.replicas": "3" } })
        yield* sendRetried(strict, "s1", "three in sync")

        // kill -9 of one node (the first: the bootstrap list still names it); writes go on with two copies.
        const victim = cluster.nodes[0]
        if (victim === undefined) return assert.fail("no node 1")
        yield* victim.kill
        assert.isFalse(yield* victim.running)
        yield* sendRetried(topic, "k2", "node 1 killed")
        const whileDown = yield* readDistinct(topic, ["all three up", "node 1 killed"])
        assert.sameMembers(whileDown, ["all three up", "node 1 killed"])
        // Two replicas in sync of the three the strict topic wants: every publish is refused, none counted.
        const codes: Array<string> = []
        for (let attempt = 0; attempt < 20 && !codes.some((code) => code.includes("NOT_ENOUGH_REPLICAS")); attempt++) {
          const refused = yield* KafkaProducer.use((producer) => producer.send([{ topic: strict, key: "s2", value: "two in sync", headers: {} }])).pipe(Effect.flip)
          codes.push(`${refused.code ?? ""} ${refused.message}`)
          yield* Effect.sleep("500 millis")
        }
        assert.isTrue(codes.some((code) => code.includes("NOT_ENOUGH_REPLICAS")), codes.join("\n"))

        yield* victim.restart
        assert.isTrue(yield* victim.running)
        // Back to three in sync (bounded wait while the restarted node catches up): published again,
        // and what was refused was never stored.
        yield* sendRetried(strict, "s3", "three again")
        const strictValues = yield* readDistinct(strict, ["three in sync", "three again"])
        assert.sameMembers(strictValues, ["three in sync", "three again"], "the refused publish was never stored")
        // SIGSTOP of another node: it answers nothing until SIGCONT; writes still complete (it leaves the ISR).
        const paused = cluster.nodes[1]
        if (paused === undefined) return assert.fail("no node 2")
        yield* paused.pause
        yield* sendRetried(topic, "k3", "node 2 paused").pipe(Effect.ensuring(Effect.orDie(paused.resume)))
        const after = yield* readDistinct(topic, ["all three up", "node 1 killed", "node 2 paused"])
        assert.sameMembers(after, ["all three up", "node 1 killed", "node 2 paused"])
        // A node paused beyond the broker session (2.5 s) is fenced and registers again once resumed:
        // wait (bounded) for all three.
        const rejoined = yield* admin.ping.pipe(
          Effect.repeat({ while: (health) => health.brokerCount < 3, schedule: Schedule.spaced("500 millis"), times: 60 })
        )
        assert.strictEqual(rejoined.brokerCount, 3, "the killed and the paused node are both back")
      }).pipe(Effect.scoped, Effect.provide(clients(cluster.brokers, "pay-test-cluster")))
    }).pipe(Effect.scoped),
  240_000
)
