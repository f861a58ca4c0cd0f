import { assert, layer } from "@effect/vitest"
import {
  defaultKafkaAdminTimeouts,
  defaultKafkaConsumerOptions,
  defaultKafkaProducerLimits,
  KafkaAdmin,
  KafkaConsumer,
  KafkaProducer,
  type KafkaRecord,
  type KafkaSubscription,
  offsetClock
} from "@pay/infra"
import { shortId, testRun } from "@pay/testkit"
import { Clock, Effect, Layer, Stream } from "effect"

const run = testRun()
const brokers = run.kafkaBrokers

const KafkaTest = Layer.mergeAll(
  KafkaAdmin.layerWith({ brokers, clientId: "pay-test-admin", ...defaultKafkaAdminTimeouts }),
  KafkaProducer.layerWith({ brokers, clientId: "pay-test-producer", ...defaultKafkaProducerLimits }),
  KafkaConsumer.layerWith({ brokers, clientId: "pay-test-consumer", ...defaultKafkaConsumerOptions })
)

const freshTopic = (partitions: number) =>
  Effect.gen(function* () {
    const admin = yield* KafkaAdmin
    // Fails fast with "no Kafka broker answered at ..." when the broker is not running.
    yield* admin.ping
    const topic = `${run.kafkaTopicPrefix}smoke.${shortId()}`
    const ready = yield* admin.createTopic({ topic, partitions })
    assert.deepStrictEqual(ready, { topic, partitions, created: true })
    return topic
  })

/** The first `count` records of a subscription, or a TimeoutError after `timeout_ms`. */
const firstRecords = (subscription: KafkaSubscription, count: number, timeout_ms: number) =>
  subscription.records({ maxRecords: 100, timeout_ms: 200 }).pipe(Stream.take(count), Stream.runCollect, Effect.timeout(timeout_ms))

const nothingMore = (subscription: KafkaSubscription) =>
  Effect.gen(function* () {
    // The group's committed offset is at the end: a second of polling yields nothing.
    const late = yield* subscription.poll({ maxRecords: 10, timeout_ms: 1_000 })
    assert.deepStrictEqual(late, [])
  })

const summary = (record: KafkaRecord) => ({
  topic: record.topic,
  partition: record.partition,
  offset: record.offset,
  key: record.key,
  value: record.value,
  headers: record.headers
})

layer(KafkaTest, { timeout: 30_000, excludeTestServices: true })("Kafka (real broker)", (it) => {
  it.effect("offsets never get ahead of the work: records read but not committed come back to the group, from the same offsets; a commit moves it exactly past what it names", () =>
    Effect.gen(function* () {
      const topic = yield* freshTopic(1)
      const producer = yield* KafkaProducer
      const consumer = yield* KafkaConsumer
      yield* producer.send(["a", "b", "c"].map((value) => ({ topic, key: "pay_1", value, headers: {} })))
      const groupId = `${run.kafkaTopicPrefix}offsets.${shortId()}`
      const readAll = (count: number) =>
        Effect.scoped(Effect.gen(function* () {
          const subscription = yield* consumer.subscribe({ groupId, topics: [topic] })
          return yield* firstRecords(subscription, count, 15_000)
        }))
      // Read, never committed (autocommit is off): the group has not moved.
      const first = yield* readAll(3)
      assert.deepStrictEqual(first.map((record) => [record.offset, record.value]), [[0n, "a"], [1n, "b"], [2n, "c"]])
      const again = yield* readAll(3)
      assert.deepStrictEqual(again.map((record) => record.offset), [0n, 1n, 2n], "uncommitted records are delivered again")
      // Commit only the first: the group resumes at the second, not after everything it saw.
      yield* Effect.scoped(Effect.gen(function* () {
        const subscription = yield* consumer.subscribe({ groupId, topics: [topic] })
        const records = yield* firstRecords(subscription, 3, 15_000)
        yield* subscription.commit(records.slice(0, 1))
      }))
      const resumed = yield* readAll(2)
      assert.deepStrictEqual(resumed.map((record) => [record.offset, record.value]), [[1n, "b"], [2n, "c"]])
    }))

  it.effect("a keyed message with headers comes back with the same key, value and headers", () =>
    Effect.gen(function* () {
      const topic = yield* freshTopic(3)
      const producer = yield* KafkaProducer
      const consumer = yield* KafkaConsumer
      const value = JSON.stringify({ payment_id: "pay_42", amount_minor: "1999", currency: "EUR" })
      const headers = { event_type: "payment_created", correlation_id: "corr-1", "content-type": "application/json" }

      const [produced, ...more] = yield* producer.send([{ topic, key: "pay_42", value, headers }])
      assert.strictEqual(more.length, 0)
      assert.isDefined(produced)
      assert.strictEqual(produced.topic, topic)
      assert.strictEqual(produced.offset, 0n)

      const expected = { topic, partition: produced.partition, offset: 0n, key: "pay_42", value, headers }

      // Through a consumer group, then committed.
      const groupId = `${run.kafkaTopicPrefix}smoke.${shortId()}`
      yield* Effect.scoped(
        Effect.gen(function* () {
          const subscription = yield* consumer.subscribe({ groupId, topics: [topic] })
          const records = yield* firstRecords(subscription, 1, 15_000)
          assert.deepStrictEqual(records.map(summary), [expected])
          const [record] = records
          assert.isDefined(record)
          assert.strictEqual(new TextDecoder().decode(record.value_bytes), value)
          assert.isTrue(Math.abs(record.timestamp_ms - Date.now()) < 60_000)
          yield* subscription.commit(records)
        })
      )
      // The same group again: resumes after the committed offset, so only a new message arrives.
      yield* producer.send([{ topic, key: "pay_43", value: "second", headers: {} }])
      yield* Effect.scoped(
        Effect.gen(function* () {
          const subscription = yield* consumer.subscribe({ groupId, topics: [topic] })
          const records = yield* firstRecords(subscription, 1, 15_000)
          assert.deepStrictEqual(records.map((record) => [record.key, record.value]), [["pay_43", "second"]])
          yield* subscription.commit(records)
          yield* nothingMore(subscription)
        })
      )
      // Without a group, from offset 0: both messages.
      const all = yield* consumer.readFromBeginning({ topic, count: 2, timeout_ms: 10_000 })
      assert.deepStrictEqual(all.map((record) => record.key).sort(), ["pay_42", "pay_43"])
      assert.deepStrictEqual(all.filter((record) => record.key === "pay_42").map(summary), [expected])
    }))

  it.effect("a record's timestamp is the producer's Clock (the server's is the database's), not the host's wall clock", () =>
    Effect.gen(function* () {
      const topic = yield* freshTopic(1)
      const producer = yield* KafkaProducer
      const consumer = yield* KafkaConsumer
      const dayBehind_ms = 24 * 60 * 60 * 1_000
      // A day behind: the broker keeps timestamps in the past as given (one ahead by over an hour it refuses).
      const behind = offsetClock(Clock.Clock.defaultValue(), { offset_ms: -dayBehind_ms })
      yield* producer.send([{ topic, key: "pay_clock", value: "x", headers: {} }]).pipe(Effect.provideService(Clock.Clock, behind))
      const [record] = yield* consumer.readFromBeginning({ topic, count: 1, timeout_ms: 10_000 })
      assert.isDefined(record)
      assert.isBelow(Math.abs(record.timestamp_ms - (Date.now() - dayBehind_ms)), 60_000, `record timestamp ${record.timestamp_ms}`)
    }))

  it.effect("creating the same topic twice is harmless; asking for more partitions than it has is not", () =>
    Effect.gen(function* () {
      const admin = yield* KafkaAdmin
      const topic = yield* freshTopic(3)
      const again = yield* admin.createTopic({ topic, partitions: 3 })
      assert.deepStrictEqual(again, { topic, partitions: 3, created: false })
      const fewer = yield* admin.createTopic({ topic, partitions: 1 })
      assert.deepStrictEqual(fewer, { topic, partitions: 3, created: false })
      const more = yield* Effect.flip(admin.createTopic({ topic, partitions: 4 }))
      assert.strictEqual(more._tag, "KafkaError")
      assert.isFalse(more.retriable)
      assert.include(more.message, "exists with 3 partitions")
      assert.include(yield* admin.listTopics, topic)
    }))

  it.effect("send returns each message's partition and offset, in the order the broker stored them", () =>
    Effect.gen(function* () {
      const topic = yield* freshTopic(3)
      const producer = yield* KafkaProducer
      const consumer = yield* KafkaConsumer
      const messages = Array.from({ length: 9 }, (_, index) => ({
        topic,
        key: `account-${index % 3}`,
        value: `event-${index}`,
        headers: { sequence: String(index) }
      }))
      const produced = yield* producer.send(messages)
      const records = yield* consumer.readFromBeginning({ topic, count: messages.length, timeout_ms: 10_000 })
      assert.strictEqual(records.length, messages.length)
      const stored = new Map(records.map((record) => [`${record.partition}:${record.offset}`, record]))
      produced.forEach((where, index) => {
        const record = stored.get(`${where.partition}:${where.offset}`)
        assert.isDefined(record, `message ${index} not found at ${where.partition}:${where.offset}`)
        assert.strictEqual(record.value, `event-${index}`)
        assert.strictEqual(record.headers["sequence"], String(index))
      })
      // Same key, same partition: the three accounts' events stay in send order per partition.
      for (const account of ["account-0", "account-1", "account-2"]) {
        const partitions = new Set(records.filter((record) => record.key === account).map((record) => record.partition))
        assert.strictEqual(partitions.size, 1)
      }
    }))

  it.effect("scanFromBeginning streams every record up to the end offsets, per partition in offset order, and keeps none", () =>
    Effect.gen(function* () {
      const topic = yield* freshTopic(3)
      const producer = yield* KafkaProducer
      const consumer = yield* KafkaConsumer
      const messages = Array.from({ length: 30 }, (_, index) => ({ topic, key: `account-${index % 5}`, value: `event-${index}`, headers: {} }))
      yield* producer.send(messages)
      const seen: Array<{ partition: number; offset: bigint; value: string }> = []
      const read = yield* consumer.scanFromBeginning({ topic, timeout_ms: 10_000, onRecords: (records) => {
        for (const record of records) seen.push({ partition: record.partition, offset: record.offset, value: record.value })
      } })
      assert.strictEqual(read, messages.length)
      assert.sameMembers(seen.map((record) => record.value), messages.map((message) => message.value))
      for (const partition of [0, 1, 2]) {
        const offsets = seen.filter((record) => record.partition === partition).map((record) => record.offset)
        assert.deepStrictEqual(offsets, offsets.map((_, index) => BigInt(index)), `partition ${partition} read in offset order from 0`)
      }
      // Up to the end offsets as of the call: an empty topic ends at once with nothing.
      const empty = yield* freshTopic(2)
      assert.strictEqual(yield* consumer.scanFromBeginning({ topic: empty, timeout_ms: 10_000, onRecords: () => assert.fail("no records") }), 0)
    }))

  it.effect("deleteTopics removes topics and ignores ones that do not exist", () =>
    Effect.gen(function* () {
      const admin = yield* KafkaAdmin
      const topic = yield* freshTopic(1)
      yield* admin.deleteTopics([topic, `${run.kafkaTopicPrefix}never.${shortId()}`])
      assert.notInclude(yield* admin.listTopics, topic)
      const producer = yield* KafkaProducer
      const error = yield* Effect.flip(producer.send([{ topic, key: "k", value: "v", headers: {} }]))
      assert.strictEqual(error._tag, "KafkaError")
    }))
})
