import { failureText, KafkaAdmin, KafkaConsumer, type KafkaError } from "@pay/infra"
import { Clock, Duration, Effect, Metric, Ref } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { backoff_ms } from "./ConsumerConfig.ts"
import { consumerLag, consumerLagMeasuredAt, consumerLagUnavailable, consumerName, consumerOffsetsRewound, type ConsumerStatus } from "./ConsumerModel.ts"
import { type ConsumerStore, makeConsumerStore } from "./ConsumerStore.ts"
import { makePartitionHandler } from "./PartitionBatch.ts"
import { makeRecordProcessor, type ProcessorSettings } from "./RecordProcessor.ts"
import { makeKafkaCommits, makePartitionLanes } from "./SubscriptionPipeline.ts"

export interface RunnerSettings extends ProcessorSettings {
  readonly topic: string
  /** The Kafka consumer group: `<topic prefix><consumer name>`. */
  readonly groupId: string
  /**
   * Checked before every poll: false ends the run cleanly (a replay caught up to its target; the
   * live projection moved to another generation). Absent: run until interrupted.
   */
  readonly keepGoing?: Effect.Effect<boolean, SqlError>
  /**
   * While records flow, ask `keepGoing` at most this often (it is always asked after an empty
   * poll). 0 (default): before every poll — the live consumer, so that a retired generation stops
   * at once. A replay may overshoot its target harmlessly and saves the round trip.
   */
  readonly keepGoingInterval_ms?: number
}

type PartitionHandler = Effect.Success<ReturnType<typeof makePartitionHandler>>

export const initialStatus = (name: string): ConsumerStatus => ({
  name,
  running: false,
  handled_count: 0,
  consecutiveFailure_count: 0,
  lastError: null,
  lastBatchAt_ms: null
})

/**
 * The seek at start: before joining, the group's committed offsets are set to the ones stored in
 * the database, so the client resumes exactly there. Only an empty group can be altered; with
 * other instances alive (their commits are never ahead of the database) or Kafka refusing, the
 * group's offsets stand and the records below the stored offsets are skipped in their
 * transactions instead ("behind"), which is always correct. After a rebalance the client reads
 * the group's committed offsets again (committed mode): see docs/consumers.md.
 */
const seekGroupToStoredOffsets = (settings: RunnerSettings, endOffsets: (topic: string) => Effect.Effect<ReadonlyArray<bigint>, KafkaError>) =>
  Effect.gen(function* () {
    const admin = yield* KafkaAdmin
    const store = makeConsumerStore(yield* SqlClient.SqlClient)
    const name = settings.handler.name
    const found = (yield* store.offsets(name))
      .filter((row) => row.topic === settings.topic)
      .map((row) => ({ partition: row.partition, offset: row.next_offset }))
    const { topicId } = yield* admin.describeTopic(settings.topic)
    const previousId = yield* store.storedTopicId(name, settings.topic)
    const log = { recreated: previousId !== undefined && previousId !== topicId, logEnds: yield* endOffsets(settings.topic) }
    const { stored, rewound } = yield* rewindForAnotherLog(settings, store, found, log)
    // Recorded once the offsets are positions in this log: a failure before it checks again next start.
    yield* store.recordTopicId(name, settings.topic, topicId)
    if (stored.length === 0) return
    const outcome = yield* admin.alterGroupOffsets(settings.groupId, settings.topic, stored)
    if (rewound && outcome === "group_active") {
      // The database reads the new log from its start, but the group's position is the other
      // members' and stays: what they skipped as "behind" would never come back to them.
      yield* Effect.logError(`consumer rewound for a re-created topic, but its group has other members, whose positions stand: records they skipped as behind are not applied; stop every instance of ${name}, then pnpm cli consumers reset ${name} 0`).pipe(
        Effect.annotateLogs({ consumer: name, group: settings.groupId })
      )
    }
    yield* Effect.logDebug("consumer group seek to the stored offsets").pipe(Effect.annotateLogs({ consumer: name, outcome }))
  }).pipe(
    Effect.catch((error) =>
      // Nothing is lost: the records below the stored offsets were applied already, and are
      // skipped as "behind" in their transactions (the words an operator reads during an outage).
      Effect.logWarning("consumer group seek failed; the group resumes from its committed offsets, and records below the stored offsets (already applied) are skipped as behind").pipe(
        Effect.annotateLogs({ consumer: settings.handler.name, error: failureText(error) })
      )
    )
  )

/**
 * Stored offsets that are not positions in the topic's log: the topic was deleted and created
 * again, seen by its id (another than the one recorded with the offsets, migrations/0086), or, where
 * no id was recorded yet, by a stored offset above its partition's log end. Left alone, every
 * record of the new log below the old offsets was skipped as "behind", with a lag of 0 and nothing
 * parked: the consumers silently missed every new event, and the runbook's re-publication of the
 * outbox was skipped the same way (outside fault review; the offsets alone missed a topic refilled
 * past them before the consumers subscribed again: outside re-test). Checked when a subscription
 * starts (a deletion makes a running one fail and start again). Each such partition is read again
 * from its start; effects stay exactly once (processed_events knows every event already applied,
 * by id), and an ERROR says what happened.
 */
const rewindForAnotherLog = (
  settings: RunnerSettings,
  store: ConsumerStore["Service"],
  stored: ReadonlyArray<{ readonly partition: number; readonly offset: bigint }>,
  log: { readonly recreated: boolean; readonly logEnds: ReadonlyArray<bigint> }
) =>
  Effect.forEach(stored, (entry) => {
    const logEnd = log.logEnds[entry.partition]
    const beyondEnd = logEnd !== undefined && entry.offset > logEnd
    if (entry.offset === 0n || (!log.recreated && !beyondEnd)) return Effect.succeed({ entry, moved: false })
    return store.rewindPartition(settings.handler.name, settings.topic, entry.partition, entry.offset).pipe(
      // Not moved: another instance wrote the row meanwhile (it rewound it, or moved on): its word stands.
      Effect.tap((moved) =>
        moved
          ? Effect.andThen(Metric.update(Metric.withAttributes(consumerOffsetsRewound, { consumer: settings.handler.name }), 1), Effect.logError("consumer's stored offsets are for another log of this topic (it was deleted and created again); the partition is read again from its start (events already applied are duplicates, no effect twice)").pipe(
            Effect.annotateLogs({
              consumer: settings.handler.name, topic: settings.topic, partition: entry.partition, stored_offset: String(entry.offset),
              log_end_offset: String(logEnd ?? "unknown"), seen_by: log.recreated ? "topic id" : "offset beyond the log end"
            })
          ))
          : Effect.void
      ),
      Effect.map((moved) => ({ entry: moved ? { partition: entry.partition, offset: 0n } : entry, moved }))
    )
  }).pipe(Effect.map((results) => ({ stored: results.map((result) => result.entry), rewound: results.some((result) => result.moved) })))

/** Polled batches dispatched to the partitions' lanes and not finished, at most (× `batch_max` records). */
const inFlightBatches_max = 8

/**
 * One subscription's life: poll a bounded batch and hand each partition's records to its lane
 * (SubscriptionPipeline.ts: a partition's records in order, partitions concurrently, pipelined
 * with the next poll, at most `inFlightRecords_max` records dispatched and not finished); each
 * lane handles its records in one transaction per `transactionRecords_max` slice (one per record
 * when a slice fails: PartitionBatch.ts; uninterruptible: SIGTERM finishes the transaction in
 * flight). What committed goes to the Kafka commits (every `kafkaCommitInterval_ms`, in the
 * background; everything after an empty poll and at the end). Kafka's committed offset is never
 * ahead of the database's; records handled but not yet committed to Kafka (a crash, an
 * interruption, a rebalance) come back as "behind" (below the stored offset, skipped) or as duplicates.
 */
const runSubscription = (settings: RunnerSettings, handlePartition: PartitionHandler, status: Ref.Ref<ConsumerStatus>) =>
  Effect.scoped(Effect.gen(function* () {
    const kafka = yield* KafkaConsumer
    yield* seekGroupToStoredOffsets(settings, kafka.endOffsets)
    // `consumer` on the client's own lines too ("consumer group joined", "rebalancing"), as on every
    // other consumer line: a search by the alerts' label found none of them (outside operator drill).
    const subscription = yield* kafka.subscribe({ groupId: settings.groupId, topics: [settings.topic] }).pipe(
      Effect.annotateLogs({ consumer: settings.handler.name })
    )
    const commits = yield* makeKafkaCommits(subscription, settings.options.kafkaCommitInterval_ms)
    const lanes = yield* makePartitionLanes(handlePartition, commits.note, settings.options.transactionRecords_max)
    const report = (handled: number) =>
      handled === 0 ? Effect.void : Ref.update(status, (current) => ({
        ...current,
        handled_count: current.handled_count + handled,
        consecutiveFailure_count: 0,
        lastError: null,
        lastBatchAt_ms: Date.now()
      }))
    // Everything dispatched finished and committed to Kafka.
    const drain = Effect.andThen(Effect.flatMap(lanes.settle(0), report), commits.flush)
    const inFlightRecords_max = settings.options.batch_max * inFlightBatches_max
    yield* Ref.update(status, (current) => ({ ...current, running: true }))
    // Operators (and the chaos run's readiness wait) see when an instance has joined its group.
    yield* Effect.logInfo("consumer subscribed").pipe(Effect.annotateLogs({ consumer: settings.handler.name, group: settings.groupId }))
    let lastCheck_ms = 0
    while (true) {
      if (settings.keepGoing !== undefined && Date.now() - lastCheck_ms >= (settings.keepGoingInterval_ms ?? 0)) {
        if (!(yield* settings.keepGoing)) return yield* drain
        lastCheck_ms = Date.now()
      }
      yield* report(yield* lanes.settle(inFlightRecords_max))
      yield* commits.tick
      const records = yield* subscription.poll({ maxRecords: settings.options.batch_max, timeout_ms: settings.options.pollTimeout_ms })
      if (records.length === 0) {
        yield* drain
        lastCheck_ms = 0
        continue
      }
      yield* lanes.dispatch(records)
    }
  })).pipe(Effect.ensuring(Ref.update(status, (current) => ({ ...current, running: false }))))

/**
 * A consumer: subscriptions started again after any failure (Kafka or database unreachable,
 * a rebalance that broke the stream), with capped exponential backoff. Returns when
 * `keepGoing` says so; otherwise runs until interrupted.
 */
export const runConsumer = (settings: RunnerSettings, status?: Ref.Ref<ConsumerStatus>) =>
  Effect.gen(function* () {
    if (!consumerName.test(settings.handler.name)) return yield* Effect.die(new Error(`illegal consumer name ${settings.handler.name}`))
    const handlePartition = yield* makePartitionHandler(settings, yield* makeRecordProcessor(settings))
    const state = status ?? (yield* Ref.make(initialStatus(settings.handler.name)))
    while (true) {
      const result = yield* Effect.result(runSubscription(settings, handlePartition, state))
      if (result._tag === "Success") return
      const failure: KafkaError | SqlError = result.failure
      const next = yield* Ref.updateAndGet(state, (current) => ({
        ...current,
        consecutiveFailure_count: current.consecutiveFailure_count + 1,
        lastError: failureText(failure)
      }))
      const delay_ms = backoff_ms(next.consecutiveFailure_count, 100, settings.options.restartBackoffMax_ms)
      yield* Effect.logWarning("consumer subscription failed; starting again").pipe(
        Effect.annotateLogs({ consumer: settings.handler.name, error: failureText(failure), retry_in_ms: delay_ms })
      )
      yield* Effect.sleep(Duration.millis(delay_ms))
    }
  })

export interface PartitionLag {
  readonly partition: number
  readonly logEndOffset: bigint
  readonly storedOffset: bigint
  readonly lag: bigint
}

/** Lag per partition: the log end offset minus the offset stored in the database (0 if none). */
export const consumerLagOf = (consumer: string, topic: string) =>
  Effect.gen(function* () {
    const kafka = yield* KafkaConsumer
    const store = makeConsumerStore(yield* SqlClient.SqlClient)
    const ends = yield* kafka.endOffsets(topic)
    const stored = yield* store.offsets(consumer)
    return ends.map((logEndOffset, partition): PartitionLag => {
      const storedOffset = stored.find((row) => row.topic === topic && row.partition === partition)?.next_offset ?? 0n
      return { partition, logEndOffset, storedOffset, lag: logEndOffset > storedOffset ? logEndOffset - storedOffset : 0n }
    })
  })

/**
 * Refreshes the `consumer_lag_records` gauge every `interval_ms` for each consumer `consumers()`
 * names now (errors logged, never fatal). A consumer no longer named (the settlement consumer
 * after a swap follows the new generation) has its series set to 0 once: a gauge cannot be
 * removed, and one frozen at its last value would keep ConsumerLagHigh firing for a consumer
 * nobody runs.
 */
export const reportLag = (consumers: () => ReadonlyArray<string>, topic: string, interval_ms: number) =>
  Effect.gen(function* () {
    const reported = new Map<string, ReadonlyArray<number>>()
    // Consumers no longer run here (a generation swapped out): nothing to measure, so their
    // measurement time is kept current; left at its last value, ConsumerLagUnmeasured paged for
    // the old generation after every replay (outside re-test).
    const retired = new Set<string>()
    const set = (name: string, partition: number, lag: number) =>
      Metric.update(Metric.withAttributes(consumerLag, { consumer: name, partition: String(partition) }), lag)
    const measuredNow = (name: string) =>
      Clock.currentTimeMillis.pipe(Effect.flatMap((now_ms) => Metric.update(Metric.withAttributes(consumerLagMeasuredAt, { consumer: name }), now_ms / 1_000)))
    while (true) {
      const names = consumers()
      for (const [name, partitions] of reported) {
        if (names.includes(name)) continue
        reported.delete(name)
        retired.add(name)
        yield* Effect.forEach(partitions, (partition) => set(name, partition, 0), { discard: true })
      }
      for (const name of retired) {
        if (names.includes(name)) retired.delete(name)
        else yield* measuredNow(name)
      }
      for (const name of names) {
        // From 0 for each consumer before its first measurement, so that a first one that fails
        // (Kafka down at start) is seen by increase() (outside review).
        yield* Metric.update(Metric.withAttributes(consumerLagUnavailable, { consumer: name }), 0)
        yield* Metric.update(Metric.withAttributes(consumerOffsetsRewound, { consumer: name }), 0)
        yield* consumerLagOf(name, topic).pipe(
          Effect.flatMap((lags) => {
            reported.set(name, lags.map((lag) => lag.partition))
            return Effect.forEach(lags, (lag) => set(name, lag.partition, Number(lag.lag)), { discard: true }).pipe(
              Effect.andThen(measuredNow(name))
            )
          }),
          // A failure counted: a stale lag can be told from a real 0 (outside operator review).
          Effect.catch((error) =>
            Metric.update(Metric.withAttributes(consumerLagUnavailable, { consumer: name }), 1).pipe(
              Effect.andThen(Effect.logWarning("consumer lag unavailable").pipe(Effect.annotateLogs({ consumer: name, error: failureText(error) })))
            ))
        )
      }
      yield* Effect.sleep(Duration.millis(interval_ms))
    }
  })

/** True while any partition's stored offset is below `target` (a replay's end-offset snapshot). */
export const behindTarget = (sql: SqlClient.SqlClient, consumer: string, topic: string, target: ReadonlyArray<bigint>) =>
  Effect.gen(function* () {
    const stored = yield* makeConsumerStore(sql).offsets(consumer)
    return target.some((end, partition) => {
      const offset = stored.find((row) => row.topic === topic && row.partition === partition)?.next_offset ?? 0n
      return offset < end
    })
  })
