import type { Effect, Stream } from "effect"
import { defaultKafkaTimeouts, KafkaError, type KafkaClientOptions } from "./KafkaCommon.ts"

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

export interface ScanFromBeginningOptions {
  readonly topic: string
  readonly timeout_ms: number
  /** Each Fetch's records (one partition's in offset order); the scan keeps none of them. */
  readonly onRecords: (records: ReadonlyArray<KafkaRecord>) => void
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
  /**
   * Bytes of one partition in one fetch. A fetch's records are buffered partition after partition:
   * a bound well below `fetch_bytes_max` interleaves the partitions in the buffer, so a consumer
   * working on several partitions at once gets records of each soon.
   */
  readonly fetchPartition_bytes_max: number
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
  fetchPartition_bytes_max: 256 * 1024,
  // The library's default is 1024 records per stream; a consumer's batch is far smaller.
  bufferedRecords_max: 512
} as const

export const legalName = /^[a-zA-Z0-9._-]{1,249}$/
/** readFromBeginning is a test tool; it refuses to hold more than this in memory. */
export const readRecords_max = 100_000
export const readFetchWait_ms = 100
/** Bit 5 of a record batch's attributes: a transaction marker, not a message. */
export const controlBatchBit = 1 << 5

export const invalidArgument = (operation: string, message: string) =>
  new KafkaError({ operation, message, retriable: false, code: "INVALID_ARGUMENT" })

export const decoder = new TextDecoder("utf-8")
const emptyValue = new Uint8Array(0)

export const toRecord = (raw: {
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
  // The client's own bytes (a view of the fetch response, which the subscription keeps while the
  // record lives: `underlying`), not a copy: a copy of a few hundred bytes is a backing store of
  // its own, about 1 µs to allocate and more for the collector to free (consumers.md, 15th round).
  const value_bytes: Uint8Array = raw.value ?? emptyValue
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

