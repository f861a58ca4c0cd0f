import { Consumer, FetchIsolationLevels, type Message } from "@platformatic/kafka"
import { Context, Effect, Layer, type Scope, Stream } from "effect"
import { KafkaBrokers } from "./Config.ts"
import {
  baseClientOptions,
  boundedBy,
  closeClient,
  defaultKafkaTimeouts,
  kafkaCall,
  KafkaError,
  type KafkaClientOptions,
  parseBrokers,
  toKafkaError,
  wallClockSleep
} from "./KafkaCommon.ts"

/** One message as read from Kafka. Plain data: safe to log (minus the value), store, compare. */
export interface KafkaRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: bigint
  /** null when the producer sent no key (ours always do). */
  readonly key: string | null
  /** The value decoded as UTF-8 (our events are JSON). */
  readonly value: string
  readonly value_bytes: Uint8Array
  /** A header repeated under one name keeps its last value. */
  readonly headers: Readonly<Record<string, string>>
  /** The producer's create time, milliseconds since the epoch. */
  readonly timestamp_ms: number
}

export interface SubscribeOptions {
  readonly groupId: string
  readonly topics: ReadonlyArray<string>
  /**
   * false (default): resume from the group's committed offsets; a group with none starts at the
   * earliest offset, never the latest, so no fact published before the group existed is skipped.
   * true: start at the earliest offset even if the group has committed offsets (re-read all).
   */
  readonly fromBeginning?: boolean
}

export interface PollOptions {
  /** Upper bound on the records one poll returns. */
  readonly maxRecords: number
  /** How long a poll waits when nothing is buffered; then it returns an empty array. */
  readonly timeout_ms: number
}

export interface KafkaSubscription {
  /** Buffered records first; else waits up to `timeout_ms` for some. Fails once the stream broke. */
  readonly poll: (options: PollOptions) => Effect.Effect<ReadonlyArray<KafkaRecord>, KafkaError>
  /** `poll` repeated forever, flattened (empty polls emit nothing). Do not mix with `poll`. */
  readonly records: (options: PollOptions) => Stream.Stream<KafkaRecord, KafkaError>
  /**
   * Marks these records (and everything before them in their partitions) as done for the group:
   * commits offset + 1 of the highest record per partition and waits for the broker's answer.
   * Call it only after the work for the records has committed in Postgres (at-least-once).
   */
  readonly commit: (records: ReadonlyArray<KafkaRecord>) => Effect.Effect<void, KafkaError>
}

export interface ReadFromBeginningOptions {
  readonly topic: string
  /** Reads until at least this many records have been seen (then returns all of them). */
  readonly count: number
  readonly timeout_ms: number
}

export interface KafkaConsumerOptions extends KafkaClientOptions {
  /** A member silent for this long is dropped from its group and its partitions reassigned. */
  readonly sessionTimeout_ms: number
  readonly heartbeatInterval_ms: number
  /** How long the group waits for members to rejoin during a rebalance (>= session timeout). */
  readonly rebalanceTimeout_ms: number
  /** Long-poll bound of one fetch when there is no new data. */
  readonly fetchMaxWait_ms: number
  readonly fetch_bytes_max: number
  /** Records buffered ahead of `poll` per subscription; bounds memory. */
  readonly bufferedRecords_max: number
}

export const defaultKafkaConsumerOptions = {
  ...defaultKafkaTimeouts,
  // 10 s instead of the library's 60 s: a crashed consumer's partitions move on within seconds.
  sessionTimeout_ms: 10_000,
  heartbeatInterval_ms: 1_000,
  rebalanceTimeout_ms: 15_000,
  fetchMaxWait_ms: 500,
  fetch_bytes_max: 8 * 1024 * 1024,
  // The library's default is 1024 records per stream; a consumer's batch is far smaller.
  bufferedRecords_max: 512
} as const

const legalName = /^[a-zA-Z0-9._-]{1,249}$/
/** readFromBeginning is a test tool; it refuses to hold more than this in memory. */
const readRecords_max = 100_000
const readFetchWait_ms = 100
/** Bit 5 of a record batch's attributes: a transaction marker, not a message. */
const controlBatchBit = 1 << 5

const invalidArgument = (operation: string, message: string) =>
  new KafkaError({ operation, message, retriable: false, code: "INVALID_ARGUMENT" })

const decoder = new TextDecoder("utf-8")

const toRecord = (raw: {
  readonly topic: string
  readonly partition: number
  readonly offset: bigint
  readonly key: Buffer | null | undefined
  readonly value: Buffer | null | undefined
  readonly headers: Iterable<readonly [Buffer | null | undefined, Buffer | null | undefined]>
  readonly timestamp: bigint
}): KafkaRecord => {
  const headers: Record<string, string> = {}
  for (const [name, value] of raw.headers) {
    if (name === null || name === undefined) continue
    headers[decoder.decode(name)] = value === null || value === undefined ? "" : decoder.decode(value)
  }
  const value_bytes = raw.value === null || raw.value === undefined ? new Uint8Array(0) : new Uint8Array(raw.value)
  return {
    topic: raw.topic,
    partition: raw.partition,
    offset: raw.offset,
    key: raw.key === null || raw.key === undefined ? null : decoder.decode(raw.key),
    value: decoder.decode(value_bytes),
    value_bytes,
    headers,
    timestamp_ms: Number(raw.timestamp)
  }
}

/**
 * Reads topics. `subscribe` joins a consumer group (scoped: leaving the scope leaves the group) and
 * never commits on its own; `readFromBeginning` reads a topic from offset 0 with no group at all.
 */
export class KafkaConsumer extends Context.Service<KafkaConsumer, {
  readonly subscribe: (options: SubscribeOptions) => Effect.Effect<KafkaSubscription, KafkaError, Scope.Scope>
  readonly readFromBeginning: (options: ReadFromBeginningOptions) => Effect.Effect<ReadonlyArray<KafkaRecord>, KafkaError>
}>()("infra/KafkaConsumer") {
  static readonly make = (options: KafkaConsumerOptions) =>
    Effect.gen(function* () {
      const bootstrapBrokers = yield* parseBrokers(options.brokers)
      const base = baseClientOptions(options, bootstrapBrokers)

      const subscribe = Effect.fn("KafkaConsumer.subscribe")(function* (subscription: SubscribeOptions) {
        if (!legalName.test(subscription.groupId)) {
          return yield* Effect.fail(invalidArgument("subscribe", `illegal group id ${JSON.stringify(subscription.groupId)}`))
        }
        const badTopic = subscription.topics.find((topic) => !legalName.test(topic))
        if (subscription.topics.length === 0 || badTopic !== undefined) {
          return yield* Effect.fail(invalidArgument("subscribe", `illegal topic list ${JSON.stringify(subscription.topics)}`))
        }
        const consumer = yield* Effect.acquireRelease(
          Effect.sync(
            () =>
              new Consumer({
                ...base,
                groupId: subscription.groupId,
                // Offsets are committed by `commit` only, after the caller's Postgres transaction.
                autocommit: false,
                sessionTimeout: options.sessionTimeout_ms,
                heartbeatInterval: options.heartbeatInterval_ms,
                rebalanceTimeout: options.rebalanceTimeout_ms,
                minBytes: 1,
                maxBytes: options.fetch_bytes_max,
                maxWaitTime: options.fetchMaxWait_ms,
                // Never see records of aborted transactions (we do not produce any today; this
                // keeps it true if a transactional producer ever appears).
                isolationLevel: FetchIsolationLevels.READ_COMMITTED,
                highWaterMark: options.bufferedRecords_max
              })
          ),
          (client) => closeClient("consumer.close", () => client.close())
        )
        const stream = yield* Effect.acquireRelease(
          kafkaCall("subscribe", options.operationTimeout_ms, () =>
            consumer.consume({
              topics: [...subscription.topics],
              mode: subscription.fromBeginning === true ? "earliest" : "committed",
              fallbackMode: "earliest",
              autocommit: false
            })
          ),
          (messages) => closeClient("consumer.stream.close", () => messages.close())
        )

        // The stream buffers up to `bufferedRecords_max` records; `poll` takes from that buffer.
        // A 'readable' listener keeps the stream in paused mode and fetching, and wakes a waiting poll.
        const underlying = new WeakMap<KafkaRecord, Message>()
        let failure: KafkaError | undefined
        let closed = false
        let wake: (() => void) | undefined
        stream.on("readable", () => wake?.())
        stream.on("error", (error) => {
          failure = toKafkaError("consume", error)
          wake?.()
        })
        stream.on("close", () => {
          closed = true
          wake?.()
        })

        const take = (maxRecords: number): Array<KafkaRecord> => {
          const out: Array<KafkaRecord> = []
          while (out.length < maxRecords) {
            const message: Message | null = stream.read()
            if (message === null) break
            const record = toRecord({ ...message, headers: message.headers.entries() })
            underlying.set(record, message)
            out.push(record)
          }
          return out
        }

        const poll = (pollOptions: PollOptions) =>
          Effect.callback<ReadonlyArray<KafkaRecord>, KafkaError>((resume) => {
            if (wake !== undefined) {
              resume(Effect.die(new Error("KafkaSubscription.poll called while another poll is waiting")))
              return
            }
            const settle = (): boolean => {
              if (failure !== undefined) {
                resume(Effect.fail(failure))
                return true
              }
              const records = take(Math.max(1, pollOptions.maxRecords))
              if (records.length > 0) {
                resume(Effect.succeed(records))
                return true
              }
              if (closed) {
                resume(Effect.fail(new KafkaError({ operation: "poll", message: "subscription closed", retriable: false, code: "CLOSED" })))
                return true
              }
              return false
            }
            if (settle()) return
            const timer = setTimeout(() => {
              wake = undefined
              resume(Effect.succeed([]))
            }, pollOptions.timeout_ms)
            wake = () => {
              if (settle()) {
                clearTimeout(timer)
                wake = undefined
              }
            }
            return Effect.sync(() => {
              clearTimeout(timer)
              wake = undefined
            })
          })

        const commitOne = (message: Message) =>
          Effect.callback<void, KafkaError>((resume) => {
            // The library funnels manual commits through one in-flight request per partition and
            // never lets a lower offset overwrite a higher one.
            void message.commit((error) => resume(error === undefined || error === null ? Effect.void : Effect.fail(toKafkaError("commit", error))))
          }).pipe(boundedBy("commit", options.operationTimeout_ms))

        const commit = Effect.fn("KafkaSubscription.commit")(function* (records: ReadonlyArray<KafkaRecord>) {
          const highest = new Map<string, KafkaRecord>()
          for (const record of records) {
            const slot = `${record.topic}\u0000${record.partition}`
            const current = highest.get(slot)
            if (current === undefined || current.offset < record.offset) highest.set(slot, record)
          }
          const messages: Array<Message> = []
          for (const record of highest.values()) {
            const message = underlying.get(record)
            if (message === undefined) return yield* Effect.die(new Error("commit: record was not polled from this subscription"))
            messages.push(message)
          }
          yield* Effect.forEach(messages, commitOne, { concurrency: "unbounded", discard: true })
        })

        const subscriptionHandle: KafkaSubscription = {
          poll,
          records: (pollOptions) => Stream.fromEffectRepeat(poll(pollOptions)).pipe(Stream.flattenIterable),
          commit
        }
        return subscriptionHandle
      })

      // A group-less reader: Fetch requests straight to each partition's leader, from offset 0.
      const reader = yield* Effect.acquireRelease(
        // groupId is mandatory in the constructor, but Fetch never joins a group.
        Effect.sync(() => new Consumer({ ...base, clientId: `${options.clientId}-reader`, groupId: `${options.clientId}-reader`, autocommit: false })),
        (client) => closeClient("reader.close", () => client.close())
      )

      const readFromBeginning = Effect.fn("KafkaConsumer.readFromBeginning")(function* (read: ReadFromBeginningOptions) {
        if (!legalName.test(read.topic)) return yield* Effect.fail(invalidArgument("read", `illegal topic name ${JSON.stringify(read.topic)}`))
        const deadline = Date.now() + read.timeout_ms
        const nextOffset = new Map<number, bigint>()
        const records: Array<KafkaRecord> = []
        let forceUpdate = true
        while (true) {
          const attempt = yield* kafkaCall("read.metadata", options.operationTimeout_ms, () =>
            reader.metadata({ topics: [read.topic], forceUpdate, retries: 0 })
          ).pipe(Effect.result)
          if (attempt._tag === "Failure") {
            // A topic created a moment ago may not be known yet: retry until the deadline.
            if (!attempt.failure.retriable || Date.now() >= deadline) return yield* Effect.fail(attempt.failure)
            yield* wallClockSleep(readFetchWait_ms)
            continue
          }
          forceUpdate = false
          const topic = attempt.success.topics.get(read.topic)
          if (topic === undefined) return yield* Effect.fail(new KafkaError({ operation: "read", message: `unknown topic ${read.topic}`, retriable: true, code: "UNKNOWN_TOPIC_OR_PARTITION" }))
          const byLeader = new Map<number, Array<number>>()
          topic.partitions.forEach((partition, index) => byLeader.set(partition.leader, [...(byLeader.get(partition.leader) ?? []), index]))
          for (const [leader, partitions] of byLeader) {
            const response = yield* kafkaCall("read.fetch", options.operationTimeout_ms, () =>
              reader.fetch({
                node: leader,
                minBytes: 1,
                maxBytes: options.fetch_bytes_max,
                maxWaitTime: readFetchWait_ms,
                isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED,
                topics: [{
                  topicId: topic.id,
                  partitions: partitions.map((partition) => ({
                    partition,
                    // -1: no leader-epoch fencing; a stale leader answers with an error and we
                    // refresh metadata on the next round.
                    currentLeaderEpoch: -1,
                    fetchOffset: nextOffset.get(partition) ?? 0n,
                    lastFetchedEpoch: -1,
                    partitionMaxBytes: options.fetch_bytes_max
                  }))
                }]
              })
            )
            for (const topicResponse of response.responses) {
              for (const partitionResponse of topicResponse.partitions) {
                if (partitionResponse.errorCode !== 0) {
                  // e.g. NOT_LEADER_OR_FOLLOWER after a leader change: refresh metadata and retry.
                  forceUpdate = true
                  continue
                }
                const from = nextOffset.get(partitionResponse.partitionIndex) ?? 0n
                for (const batch of partitionResponse.records ?? []) {
                  nextOffset.set(partitionResponse.partitionIndex, batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n)
                  if ((batch.attributes & controlBatchBit) !== 0) continue
                  for (const record of batch.records) {
                    const offset = batch.firstOffset + BigInt(record.offsetDelta)
                    // A batch can start before the requested offset; skip what we already have.
                    if (offset < from) continue
                    records.push(toRecord({
                      topic: read.topic,
                      partition: partitionResponse.partitionIndex,
                      offset,
                      key: record.key,
                      value: record.value,
                      headers: record.headers,
                      timestamp: batch.firstTimestamp + record.timestampDelta
                    }))
                  }
                }
              }
            }
          }
          if (records.length > readRecords_max) return yield* Effect.fail(invalidArgument("read", `more than ${readRecords_max} records in ${read.topic}`))
          if (records.length >= read.count) {
            return records.sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0))
          }
          if (forceUpdate) yield* wallClockSleep(readFetchWait_ms)
          if (Date.now() >= deadline) {
            return yield* Effect.fail(
              new KafkaError({ operation: "read", message: `read ${records.length} of ${read.count} records from ${read.topic} within ${read.timeout_ms} ms`, retriable: true, code: "TIMEOUT" })
            )
          }
        }
      })

      return KafkaConsumer.of({ subscribe, readFromBeginning })
    })

  static readonly layerWith = (options: KafkaConsumerOptions) => Layer.effect(KafkaConsumer, KafkaConsumer.make(options))

  /** Configured from `KAFKA_BROKERS`. */
  static readonly layer = Layer.unwrap(
    Effect.gen(function* () {
      const brokers = yield* KafkaBrokers
      return KafkaConsumer.layerWith({ brokers, clientId: "pay-consumer", ...defaultKafkaConsumerOptions })
    })
  )
}
