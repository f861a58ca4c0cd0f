import type { Consumer } from "@platformatic/kafka"
import { Effect } from "effect"
import { kafkaCall, KafkaError, wallClockSleep } from "./KafkaCommon.ts"
import type { KafkaLibrary } from "./KafkaLibrary.ts"
import {
  controlBatchBit,
  invalidArgument,
  type KafkaConsumerOptions,
  type KafkaRecord,
  legalName,
  readFetchWait_ms,
  type ReadFromBeginningOptions,
  type ScanFromBeginningOptions,
  readRecords_max,
  toRecord
} from "./KafkaConsumerModel.ts"

/**
 * `readFromBeginning`: a group-less read of a whole topic from offset 0, Fetch requests straight to
 * each partition's leader, until `count` records or the deadline. A test tool (it holds what it
 * reads in memory, at most `readRecords_max` records).
 */
type Reader = Consumer<Buffer, Buffer, Buffer, Buffer>

interface LeaderFetch {
  readonly topicId: string
  readonly leader: number
  readonly partitions: ReadonlyArray<number>
  readonly nextOffset: ReadonlyMap<number, bigint>
}

const fetchFromLeader = (kafka: KafkaLibrary, reader: Reader, options: KafkaConsumerOptions, fetch: LeaderFetch) =>
  kafkaCall("read.fetch", options.operationTimeout_ms, () =>
    reader.fetch({
      node: fetch.leader,
      minBytes: 1,
      maxBytes: options.fetch_bytes_max,
      maxWaitTime: readFetchWait_ms,
      isolationLevel: kafka.FetchIsolationLevels.READ_UNCOMMITTED,
      topics: [{
        topicId: fetch.topicId,
        partitions: fetch.partitions.map((partition) => ({
          partition,
          // -1: no leader-epoch fencing; a stale leader answers with an error and we
          // refresh metadata on the next round.
          currentLeaderEpoch: -1,
          fetchOffset: fetch.nextOffset.get(partition) ?? 0n,
          lastFetchedEpoch: -1,
          partitionMaxBytes: options.fetch_bytes_max
        }))
      }]
    })
  )

type FetchResponses = Effect.Success<ReturnType<typeof fetchFromLeader>>["responses"]

/** Appends the fetched records past each partition's next offset; true when metadata must be refreshed. */
const collectRecords = (topic: string, responses: FetchResponses, nextOffset: Map<number, bigint>, records: Array<KafkaRecord>): boolean => {
  let forceUpdate = false
  for (const topicResponse of responses) {
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
            topic,
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
  return forceUpdate
}

/** Where a read stops: `count` records collected, or every partition read up to its end offset as of the start. */
type Until = { readonly count: number } | { readonly end: ReadonlyArray<bigint> }

const reached = (until: Until, collected: number, nextOffset: ReadonlyMap<number, bigint>) =>
  "count" in until ? collected >= until.count : until.end.every((end, partition) => (nextOffset.get(partition) ?? 0n) >= end)

/**
 * The read loop shared by `readFromBeginning` (collects) and `scanFromBeginning` (hands each record
 * to `sink` and keeps none): metadata, one Fetch per leader, until `until` or the deadline.
 */
const readLoop = (kafka: KafkaLibrary, reader: Reader, options: KafkaConsumerOptions, read: { readonly topic: string; readonly timeout_ms: number }, until: Until, sink: (records: ReadonlyArray<KafkaRecord>) => Effect.Effect<void, KafkaError>) =>
  Effect.gen(function* () {
    if (!legalName.test(read.topic)) return yield* Effect.fail(invalidArgument("read", `illegal topic name ${JSON.stringify(read.topic)}`))
    const deadline = Date.now() + read.timeout_ms
    const nextOffset = new Map<number, bigint>()
    let collected = 0
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
        const response = yield* fetchFromLeader(kafka, reader, options, { topicId: topic.id, leader, partitions, nextOffset })
        const records: Array<KafkaRecord> = []
        if (collectRecords(read.topic, response.responses, nextOffset, records)) forceUpdate = true
        collected += records.length
        if (records.length > 0) yield* sink(records)
      }
      if (reached(until, collected, nextOffset)) return collected
      if (forceUpdate) yield* wallClockSleep(readFetchWait_ms)
      if (Date.now() >= deadline) {
        return yield* Effect.fail(
          new KafkaError({ operation: "read", message: `read ${collected} of ${"count" in until ? until.count : "all"} records from ${read.topic} within ${read.timeout_ms} ms`, retriable: true, code: "TIMEOUT" })
        )
      }
    }
  })

export const makeReadFromBeginning = (kafka: KafkaLibrary, reader: Reader, options: KafkaConsumerOptions) =>
  Effect.fn("KafkaConsumer.readFromBeginning")(function* (read: ReadFromBeginningOptions) {
    const records: Array<KafkaRecord> = []
    yield* readLoop(kafka, reader, options, read, { count: read.count }, (batch) => {
      for (const record of batch) records.push(record)
      return records.length > readRecords_max
        ? Effect.fail(invalidArgument("read", `more than ${readRecords_max} records in ${read.topic}`))
        : Effect.void
    })
    return records.sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0))
  })

/**
 * `scanFromBeginning`: every record of `topic` from offset 0 up to each partition's end offset as
 * of the call, handed to `onRecords` one Fetch at a time (per partition in offset order) and not
 * kept: bounded memory for a topic of any size, bounded in time by `timeout_ms`. Returns how many
 * records were read.
 */
export const makeScanFromBeginning = (kafka: KafkaLibrary, reader: Reader, options: KafkaConsumerOptions) =>
  Effect.fn("KafkaConsumer.scanFromBeginning")(function* (scan: ScanFromBeginningOptions) {
    if (!legalName.test(scan.topic)) return yield* Effect.fail(invalidArgument("scan", `illegal topic name ${JSON.stringify(scan.topic)}`))
    const offsets = yield* kafkaCall("scan.endOffsets", options.operationTimeout_ms, () =>
      reader.listOffsets({ topics: [scan.topic], timestamp: -1n, isolationLevel: kafka.FetchIsolationLevels.READ_UNCOMMITTED })
    )
    const end = [...(offsets.get(scan.topic) ?? [])]
    return yield* readLoop(kafka, reader, options, scan, { end }, (records) => Effect.sync(() => scan.onRecords(records)))
  })
