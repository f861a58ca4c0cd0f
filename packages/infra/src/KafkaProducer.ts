import type { Producer } from "@platformatic/kafka"
import { Clock, Context, Effect, Layer } from "effect"
import { KafkaBrokers } from "./Config.ts"
import {
  baseClientOptions,
  closeClient,
  defaultKafkaTimeouts,
  kafkaCall,
  KafkaError,
  type KafkaClientOptions,
  parseBrokers
} from "./KafkaCommon.ts"
import { kafkaLibrary, type KafkaLibrary } from "./KafkaLibrary.ts"

export interface ProducerMessage {
  readonly topic: string
  /** Decides the partition (same key, same partition, in order). Events use the aggregate id. */
  readonly key: string
  /** Strings are sent as UTF-8. */
  readonly value: string | Uint8Array
  readonly headers: Readonly<Record<string, string>>
  /** Overrides the key's partition. */
  readonly partition?: number
}

/** Where the broker stored a message: same index as the message in the `send` call. */
export interface ProducedRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: bigint
}

export interface KafkaProducerOptions extends KafkaClientOptions {
  /** More messages than this in one `send` is a caller bug (the publisher's batch is bounded). */
  readonly maxMessagesPerSend: number
}

export const defaultKafkaProducerLimits = { ...defaultKafkaTimeouts, maxMessagesPerSend: 1_000 } as const

const invalidArgument = (message: string) =>
  new KafkaError({ operation: "send", message, retriable: false, code: "INVALID_ARGUMENT" })

const toBuffer = (value: string | Uint8Array): Buffer =>
  typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value.buffer, value.byteOffset, value.byteLength)

/**
 * Sends messages and resolves only once the broker has acknowledged every one of them with
 * acks=all. A failed `send` may still have stored some of the messages (per partition, all or
 * nothing): callers treat failure as "unknown" and send again; the idempotent producer drops
 * in-session duplicates, and consumers dedupe by event id for the rest (at-least-once).
 */
export class KafkaProducer extends Context.Service<KafkaProducer, {
  readonly send: (messages: ReadonlyArray<ProducerMessage>) => Effect.Effect<ReadonlyArray<ProducedRecord>, KafkaError>
}>()("infra/KafkaProducer") {
  static readonly make = (options: KafkaProducerOptions) =>
    Effect.gen(function* () {
      const bootstrapBrokers = yield* parseBrokers(options.brokers)
      const kafka = yield* kafkaLibrary
      const producer = yield* acquireProducer(kafka, options, bootstrapBrokers)
      const partitionCounts = makePartitionCounts(producer, options)

      const send = Effect.fn("KafkaProducer.send")(function* (messages: ReadonlyArray<ProducerMessage>) {
        if (messages.length === 0) return []
        if (messages.length > options.maxMessagesPerSend) {
          return yield* Effect.fail(invalidArgument(`${messages.length} messages in one send, at most ${options.maxMessagesPerSend}`))
        }
        const counts = yield* partitionCounts([...new Set(messages.map((message) => message.topic))])
        // The records' timestamps are this process's Clock (the database's in the server: infra
        // DatabaseClock.ts), not the library's Date.now(): a host clock over an hour ahead had every
        // record refused by the broker (log.message.timestamp.after.max.ms), in an outside clock review.
        const timestamp = BigInt(yield* Clock.currentTimeMillis)
        const prepared = yield* prepareMessages(kafka, messages, counts, timestamp)
        const result = yield* kafkaCall("send", options.operationTimeout_ms, () => producer.send({ messages: [...prepared] }))
        return yield* offsetsOf(prepared, result.offsets ?? [])
      })

      return KafkaProducer.of({ send })
    })

  static readonly layerWith = (options: KafkaProducerOptions) => Layer.effect(KafkaProducer, KafkaProducer.make(options))

  /** Configured from `KAFKA_BROKERS`. */
  static readonly layer = Layer.unwrap(
    Effect.gen(function* () {
      const brokers = yield* KafkaBrokers
      return KafkaProducer.layerWith({ brokers, clientId: "pay-producer", ...defaultKafkaProducerLimits })
    })
  )
}

/**
 * The durability settings, chosen explicitly and never left to the library's defaults (a money
 * path); docs/events.md cites them and a test asserts them:
 * - idempotent: the broker drops a retried batch it already stored (producer id + sequence
 *   numbers), so client retries cannot duplicate or reorder a partition.
 * - acks=all: the ack means every in-sync replica has the batch; with min.insync.replicas it
 *   survives the loss of the leader.
 * - bounded retries: @platformatic/kafka turns an idempotent producer's `retries` into
 *   Number.MAX_SAFE_INTEGER when it is unset or <= 1, i.e. a send that never fails while the
 *   broker is down. We pass our own bound (> 1) so the call fails and the outbox publisher's own
 *   backoff takes over.
 * - one request in flight per broker (the library forces this for idempotence): ordering within a
 *   partition does not depend on retry timing.
 */
export const producerDurability = (options: Pick<KafkaProducerOptions, "retries">) => ({
  idempotent: true,
  // ProduceAcks.ALL: every in-sync replica (the protocol's -1; the library is imported lazily,
  // KafkaLibrary.ts, and a test compares this with its constant).
  acks: -1,
  retries: Math.max(options.retries, 2),
  maxInflights: 1,
  compression: "none" as const
})

/** The client, with every option chosen explicitly (closed when the scope ends). */
const acquireProducer = (kafka: KafkaLibrary, options: KafkaProducerOptions, bootstrapBrokers: Array<string>) =>
  Effect.acquireRelease(
    Effect.sync(() => new kafka.Producer({ ...baseClientOptions(options, bootstrapBrokers), ...producerDurability(options) })),
    (client) => closeClient("producer.close", () => client.close())
  )


// Partition count per topic from the client's metadata cache (refreshed every 5 s and on
// stale-metadata errors). We pick each message's partition ourselves so that the broker's
// per-partition base offsets map back to individual messages.
const makePartitionCounts = (producer: Producer, options: KafkaProducerOptions) => (topics: Array<string>) =>
  kafkaCall("send.metadata", options.operationTimeout_ms, () => producer.metadata({ topics })).pipe(
    Effect.flatMap((metadata) =>
      Effect.forEach(topics, (topic) => {
        const count = metadata.topics.get(topic)?.partitionsCount
        return count === undefined || count < 1
          ? Effect.fail(
              new KafkaError({ operation: "send", message: `unknown topic ${topic}`, retriable: true, code: "UNKNOWN_TOPIC_OR_PARTITION" })
            )
          : Effect.succeed([topic, count] as const)
      })
    ),
    Effect.map((entries) => new Map(entries))
  )


interface PreparedMessage {
  readonly topic: string
  readonly key: Buffer
  readonly value: Buffer
  readonly headers: Map<Buffer, Buffer>
  readonly partition: number
  /** ms since the epoch. */
  readonly timestamp: bigint
}

/** Encodes the messages and picks each one's partition. */
const prepareMessages = ({ compatibilityPartitioner }: KafkaLibrary, messages: ReadonlyArray<ProducerMessage>, counts: ReadonlyMap<string, number>, timestamp: bigint) =>
  Effect.gen(function* () {
    const prepared: Array<PreparedMessage> = []
    for (const message of messages) {
      const count = counts.get(message.topic) ?? 0
      const key = Buffer.from(message.key, "utf8")
      const value = toBuffer(message.value)
      const headers = new Map<Buffer, Buffer>()
      for (const [name, headerValue] of Object.entries(message.headers)) headers.set(Buffer.from(name), Buffer.from(headerValue))
      // A key's partition as the Java client computes it (murmur2 & 0x7fffffff), so any other
      // producer of the same keys lands on the same partitions.
      const partition = message.partition ?? compatibilityPartitioner({ topic: message.topic, key, value }, key) % count
      if (!Number.isInteger(partition) || partition < 0 || partition >= count) {
        return yield* Effect.fail(invalidArgument(`partition ${partition} out of range for ${message.topic} (${count} partitions)`))
      }
      prepared.push({ topic: message.topic, key, value, headers, partition, timestamp })
    }
    return prepared
  })

/**
 * The broker answers one base offset per partition; the library keeps each partition's messages
 * in call order, so the n-th message for a partition got base + n.
 */
const offsetsOf = (
  prepared: ReadonlyArray<PreparedMessage>,
  offsets: ReadonlyArray<{ readonly topic: string; readonly partition: number; readonly offset: bigint }>
) =>
  Effect.gen(function* () {
    const baseOffsets = new Map<string, bigint>()
    for (const entry of offsets) baseOffsets.set(`${entry.topic}\u0000${entry.partition}`, entry.offset)
    const seen = new Map<string, bigint>()
    const produced: Array<ProducedRecord> = []
    for (const message of prepared) {
      const slot = `${message.topic}\u0000${message.partition}`
      const base = baseOffsets.get(slot)
      if (base === undefined) {
        return yield* Effect.die(new Error(`broker acknowledged no offset for ${message.topic}[${message.partition}]`))
      }
      const ordinal = seen.get(slot) ?? 0n
      seen.set(slot, ordinal + 1n)
      produced.push({ topic: message.topic, partition: message.partition, offset: base + ordinal })
    }
    return produced
  })
