// Issue 11: payments.events was created with the broker's defaults (replicas -1, 7-day retention),
// so "replay from offset 0" silently stopped being true after a week and the durability of an
// acknowledged event depended on how the broker happened to be configured. The topic is now
// created, and an existing one re-set, with the replication factor, min.insync.replicas,
// retention from configuration and its batch limit (max.message.bytes); read back from the real broker.
import { assert, layer } from "@effect/vitest"
import { defaultKafkaAdminTimeouts, KafkaAdmin } from "@pay/infra"
import { shortId, testRun } from "@pay/testkit"
import { ConfigProvider, Effect } from "effect"
import {
  localPaymentsEventsTopicSettings,
  OutboxTopics,
  paymentsEventsMessageBytes_max,
  paymentsEventsTopic,
  PaymentsEventsTopicConfig
} from "../src/OutboxTopics.ts"
import { sendBytes_max } from "../src/PublisherModel.ts"

const run = testRun()
const Admin = KafkaAdmin.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-topic-admin", ...defaultKafkaAdminTimeouts })
const freshPrefix = () => `${run.kafkaTopicPrefix}${shortId()}.`

layer(Admin, { excludeTestServices: true, timeout: 60_000 })("payments.events durability and retention (real broker)", (it) => {
  it.effect("created with the configured replication factor, min.insync.replicas and a retention that keeps the history (retention.ms -1)", () =>
    Effect.gen(function* () {
      const admin = yield* KafkaAdmin
      const prefix = freshPrefix()
      const ready = yield* OutboxTopics.ensure(prefix, localPaymentsEventsTopicSettings)
      assert.isTrue(ready.created)
      const described = yield* admin.describeTopic(paymentsEventsTopic(prefix))
      assert.strictEqual(described.partitions, 3)
      assert.strictEqual(described.replicationFactor, 1)
      assert.deepInclude(described.configs, {
        "min.insync.replicas": "1",
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "max.message.bytes": "1048576"
      })
    }))

  it.effect("an existing topic made with the broker's defaults (7-day retention) gets the configured retention when ensured again", () =>
    Effect.gen(function* () {
      const admin = yield* KafkaAdmin
      const prefix = freshPrefix()
      const topic = paymentsEventsTopic(prefix)
      yield* admin.createTopic({ topic, partitions: 3 })
      const before = yield* admin.describeTopic(topic)
      assert.notStrictEqual(before.configs["retention.ms"], "-1", "the broker's default is a finite retention")
      const again = yield* OutboxTopics.ensure(prefix, { ...localPaymentsEventsTopicSettings, retention_days: 400 })
      assert.isFalse(again.created)
      // A config change reaches the broker's metadata cache shortly after the controller took it:
      // read back until it shows (bounded), as an operator's second look would.
      const retentionEventually = (expected: string) =>
        Effect.gen(function* () {
          let seen: string | undefined
          for (let read = 0; read < 50; read++) {
            seen = (yield* admin.describeTopic(topic)).configs["retention.ms"]
            if (seen === expected) return seen
            yield* Effect.sleep("100 millis")
          }
          return seen
        })
      assert.strictEqual(yield* retentionEventually(String(400 * 24 * 60 * 60 * 1_000)), String(400 * 24 * 60 * 60 * 1_000))
      yield* OutboxTopics.ensure(prefix, localPaymentsEventsTopicSettings)
      assert.strictEqual(yield* retentionEventually("-1"), "-1")
      // The batch limit is set on it too: the publisher's produce calls (sendBytes_max) stay four times under it.
      assert.strictEqual((yield* admin.describeTopic(topic)).configs["max.message.bytes"], String(paymentsEventsMessageBytes_max))
      assert.isAtMost(sendBytes_max * 4, paymentsEventsMessageBytes_max)
    }))

  it.effect("the replication factor is sent, not left to the broker: 2 replicas on a one-broker cluster is refused; min.insync.replicas above it is a configuration error", () =>
    Effect.gen(function* () {
      const tooMany = yield* Effect.flip(OutboxTopics.ensure(freshPrefix(), { replicationFactor: 2, minInsyncReplicas: 1, retention_days: 0 }))
      assert.strictEqual(tooMany._tag, "KafkaError")
      assert.match(`${tooMany.code} ${tooMany.message}`, /REPLICATION|replication/i)
      const inconsistent = yield* Effect.flip(OutboxTopics.ensure(freshPrefix(), { replicationFactor: 1, minInsyncReplicas: 2, retention_days: 0 }))
      assert.strictEqual(inconsistent.code, "INVALID_CONFIG")
      assert.isFalse(inconsistent.retriable)
    }))

  it.effect("configuration: defaults 1 / 1 / forever; a cluster sets 3 / 2; bounds are enforced", () =>
    Effect.gen(function* () {
      const read = (env: Record<string, string>) => PaymentsEventsTopicConfig.parse(ConfigProvider.fromEnv({ env }))
      assert.deepStrictEqual(yield* read({}), { replicationFactor: 1, minInsyncReplicas: 1, retention_days: 0 })
      assert.deepStrictEqual(yield* read({ KAFKA_REPLICATION_FACTOR: "3", KAFKA_MIN_INSYNC_REPLICAS: "2", PAYMENTS_EVENTS_RETENTION_DAYS: "3650" }), {
        replicationFactor: 3,
        minInsyncReplicas: 2,
        retention_days: 3650
      })
      const refused = yield* Effect.flip(read({ KAFKA_REPLICATION_FACTOR: "0" }))
      assert.include(String(refused), "KAFKA_REPLICATION_FACTOR must be an integer between 1 and 32")
      const inconsistent = yield* Effect.flip(read({ KAFKA_REPLICATION_FACTOR: "3", KAFKA_MIN_INSYNC_REPLICAS: "4" }))
      assert.include(String(inconsistent), "KAFKA_MIN_INSYNC_REPLICAS (4) exceeds KAFKA_REPLICATION_FACTOR (3)")
    }))
})
