import { assert, describe, it } from "@effect/vitest"
import { KafkaError } from "@pay/infra"
import { allLeavesAre, toKafkaError } from "@pay/infra/KafkaCommon"
import { defaultKafkaProducerLimits } from "@pay/infra"
import { producerDurability } from "@pay/infra/KafkaProducer"
import { MultipleErrors, NetworkError, ProduceAcks, ProtocolError, UserError } from "@platformatic/kafka"
import { readFileSync } from "node:fs"

// How the client's nested errors become one KafkaError. The real-broker paths are covered by
// kafka.smoke.test.ts and throwaway-kafka.test.ts; these pin the classification rules.
describe("toKafkaError", () => {
  it("a refused connection, retried and given up, is retriable and names the socket error", () => {
    const refused = new NetworkError("Connection to 127.0.0.1:1 failed.", { cause: new Error("connect ECONNREFUSED 127.0.0.1:1") })
    const error = toKafkaError("send", new MultipleErrors("produce failed 4 times.", [refused, refused]))
    assert.instanceOf(error, KafkaError)
    assert.deepStrictEqual([error.operation, error.retriable, error.code], ["send", true, "PLT_KFK_NETWORK"])
    assert.include(error.message, "ECONNREFUSED")
  })

  it("a broker error Kafka marks as not retriable stays not retriable", () => {
    const exists = new ProtocolError("TOPIC_ALREADY_EXISTS")
    const error = toKafkaError("createTopic", new MultipleErrors("Creating topics failed.", [exists]))
    assert.deepStrictEqual([error.retriable, error.code], [false, "TOPIC_ALREADY_EXISTS"])
    assert.isTrue(allLeavesAre(new MultipleErrors("x", [exists]), "TOPIC_ALREADY_EXISTS"))
    assert.isFalse(allLeavesAre(new MultipleErrors("x", [exists, new NetworkError("down")]), "TOPIC_ALREADY_EXISTS"))
  })

  it("the client's 'Unknown topic' UserError is the broker's retriable UNKNOWN_TOPIC_OR_PARTITION", () => {
    const error = toKafkaError("metadata", new UserError("Unknown topic t.abc.smoke."))
    assert.deepStrictEqual([error.retriable, error.code], [true, "UNKNOWN_TOPIC_OR_PARTITION"])
    const misuse = toKafkaError("send", new UserError("Cannot specify producerId or producerEpoch when using idempotent producer."))
    assert.deepStrictEqual([misuse.retriable, misuse.code], [false, "PLT_KFK_USER"])
  })

  it("anything that is not a client error is not retriable", () => {
    assert.isFalse(toKafkaError("send", new TypeError("boom")).retriable)
    assert.isFalse(toKafkaError("send", "a string").retriable)
  })
})

// docs/events.md cites the producer's durability settings; these are what the client is built with.
describe("producer durability settings", () => {
  it("idempotent, acks=all (-1), bounded retries (never the library's unbounded default), one request in flight, no compression; the docs say the same", () => {
    assert.deepStrictEqual(producerDurability(defaultKafkaProducerLimits), {
      idempotent: true,
      acks: ProduceAcks.ALL,
      retries: Math.max(defaultKafkaProducerLimits.retries, 2),
      maxInflights: 1,
      compression: "none"
    })
    assert.strictEqual(ProduceAcks.ALL, -1)
    // A configured retries of 0 or 1 would become unbounded in the library: never passed as is.
    assert.strictEqual(producerDurability({ retries: 0 }).retries, 2)
    assert.isTrue(Number.isSafeInteger(producerDurability(defaultKafkaProducerLimits).retries) && producerDurability(defaultKafkaProducerLimits).retries < 100)
    const events = readFileSync(new URL("../../../docs/events.md", import.meta.url), "utf8")
    assert.include(events, "| Producer | idempotent, `acks=all`, bounded retries, one request in flight, no compression")
  })
})
