import { assert, it } from "@effect/vitest"
import { defaultKafkaAdminTimeouts, defaultKafkaConsumerOptions, KafkaAdmin, KafkaConsumer } from "@pay/infra"
import { shortId, testRun } from "@pay/testkit"
import { cleanupKafkaPrefix } from "@pay/testkit/cleanupKafka"
import { Effect, Exit, Fiber, Scope } from "effect"

const run = testRun()

/**
 * A group is "not empty" for a moment after its members leave (audit H3: `Deleting groups failed.
 * (The group is not empty.)` from a scenario's cleanup). The cleanup retries, bounded, and succeeds
 * once the member is gone: here it starts while a member is still in the group, which leaves 2 s later.
 */
it.live("the Kafka cleanup waits (bounded) for a group whose member is still leaving, then deletes it", () =>
  Effect.gen(function* () {
    // A prefix of this test's own under the run's: the cleanup deletes nothing of the other tests.
    const prefix = `${run.kafkaTopicPrefix}cleanup.${shortId()}.`
    const topic = `${prefix}events`
    const groupId = `${prefix}g`
    const withAdmin = <A, E>(use: (admin: KafkaAdmin["Service"]) => Effect.Effect<A, E>) =>
      Effect.scoped(KafkaAdmin.make({ brokers: run.kafkaBrokers, clientId: "pay-test-cleanup", ...defaultKafkaAdminTimeouts }).pipe(Effect.flatMap(use)))
    const listGroups = withAdmin((admin) => admin.listGroups.pipe(Effect.map((groups) => groups.filter((group) => group.startsWith(prefix)))))
    yield* withAdmin((admin) => admin.createTopic({ topic, partitions: 1 }))
    const member = yield* Scope.make()
    const consumer = yield* KafkaConsumer.make({ brokers: run.kafkaBrokers, clientId: "pay-test-cleanup-member", ...defaultKafkaConsumerOptions }).pipe(Scope.provide(member))
    const subscription = yield* consumer.subscribe({ groupId, topics: [topic] }).pipe(Scope.provide(member))
    yield* subscription.poll({ maxRecords: 1, timeout_ms: 3_000 })
    assert.deepStrictEqual(yield* listGroups, [groupId], "the member joined its group")
    const leave = yield* Effect.sleep(2_000).pipe(Effect.andThen(Scope.close(member, Exit.void)), Effect.forkChild)
    const result = yield* cleanupKafkaPrefix(run.kafkaBrokers, prefix)
    yield* Fiber.join(leave)
    assert.strictEqual(result.groupsDeleted, 1)
    assert.deepStrictEqual(yield* listGroups, [])
  }), 60_000)
