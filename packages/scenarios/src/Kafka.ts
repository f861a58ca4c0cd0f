import { defaultKafkaConsumerOptions, KafkaConsumer, type KafkaRecord } from "@pay/infra"
import { Effect } from "effect"

/** A payment event as read back from Kafka: offset, its outbox id (`ce_id`) and type (`ce_type`). */
export interface ReadBack {
  readonly partition: number
  readonly offset: string
  readonly key: string
  readonly eventId: string
  readonly type: string
}

const readBack = (record: KafkaRecord): ReadBack => ({
  partition: record.partition,
  offset: record.offset.toString(),
  key: record.key ?? "",
  eventId: record.headers["ce_id"] ?? "",
  type: record.headers["ce_type"] ?? ""
})

/**
 * Reads the topic from offset 0 with no consumer group (nothing committed, nobody disturbed) until
 * at least `count` records or `timeout_ms`; a topic that does not exist yet reads as empty.
 */
export const readTopic = (brokers: string, topic: string, count: number, timeout_ms: number) =>
  Effect.gen(function* () {
    const consumer = yield* KafkaConsumer.make({ brokers, clientId: "pay-scenario-reader", ...defaultKafkaConsumerOptions })
    const records = yield* consumer.readFromBeginning({ topic, count, timeout_ms })
    return records.map(readBack)
  }).pipe(Effect.scoped)

/**
 * Streams the topic from offset 0 to its end offsets as of the call (no consumer group) to
 * `onRecord`, keeping nothing: a long run's ~10^6 records in bounded memory, within `timeout_ms`.
 * Returns how many records were read.
 */
export const scanTopic = (brokers: string, topic: string, timeout_ms: number, onRecord: (record: ReadBack) => void) =>
  Effect.gen(function* () {
    const consumer = yield* KafkaConsumer.make({ brokers, clientId: "pay-scenario-reader", ...defaultKafkaConsumerOptions })
    return yield* consumer.scanFromBeginning({ topic, timeout_ms, onRecords: (records) => {
      for (const record of records) onRecord(readBack(record))
    } })
  }).pipe(Effect.scoped)
