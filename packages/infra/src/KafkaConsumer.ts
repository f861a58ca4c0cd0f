import type { Message, MessagesStream } from "@platformatic/kafka"
import { Context, Effect, Layer, Queue, type Scope, Stream } from "effect"
import { KafkaBrokers } from "./Config.ts"
import { baseClientOptions, boundedBy, closeClient, kafkaCall, KafkaError, parseBrokers, toKafkaError } from "./KafkaCommon.ts"
import {
  defaultKafkaConsumerOptions,
  invalidArgument,
  type KafkaConsumerOptions,
  type KafkaRecord,
  type KafkaSubscription,
  legalName,
  type PollOptions,
  type ReadFromBeginningOptions,
  type ScanFromBeginningOptions,
  type SubscribeOptions,
  toRecord
} from "./KafkaConsumerModel.ts"
import { kafkaLibrary, type KafkaLibrary } from "./KafkaLibrary.ts"
import { makeReadFromBeginning, makeScanFromBeginning } from "./KafkaReader.ts"

export * from "./KafkaConsumerModel.ts"

/**
 * Reads topics. `subscribe` joins a consumer group (scoped: leaving the scope leaves the group) and
 * never commits on its own; `readFromBeginning` reads a topic from offset 0 with no group at all.
 */
export class KafkaConsumer extends Context.Service<KafkaConsumer, {
  readonly subscribe: (options: SubscribeOptions) => Effect.Effect<KafkaSubscription, KafkaError, Scope.Scope>
  readonly readFromBeginning: (options: ReadFromBeginningOptions) => Effect.Effect<ReadonlyArray<KafkaRecord>, KafkaError>
  /** Every record from offset 0 to the end offsets as of the call, streamed to a callback (a topic of any size). */
  readonly scanFromBeginning: (options: ScanFromBeginningOptions) => Effect.Effect<number, KafkaError>
  /**
   * The log end offset of each partition of `topic` (index = partition): the offset the next
   * record will get. Read-committed (the last stable offset). Lag = this minus a consumer's offset.
   */
  readonly endOffsets: (topic: string) => Effect.Effect<ReadonlyArray<bigint>, KafkaError>
}>()("infra/KafkaConsumer") {
  /** `library`: the client library (a test passes the real one with its clients observed). */
  static readonly make = (options: KafkaConsumerOptions, library: Effect.Effect<KafkaLibrary> = kafkaLibrary) =>
    Effect.gen(function* () {
      const bootstrapBrokers = yield* parseBrokers(options.brokers)
      const kafka = yield* library
      const base = baseClientOptions(options, bootstrapBrokers)
      const subscribe = Effect.fn("KafkaConsumer.subscribe")(function* (subscription: SubscribeOptions) {
        if (!legalName.test(subscription.groupId)) {
          return yield* Effect.fail(invalidArgument("subscribe", `illegal group id ${JSON.stringify(subscription.groupId)}`))
        }
        const badTopic = subscription.topics.find((topic) => !legalName.test(topic))
        if (subscription.topics.length === 0 || badTopic !== undefined) {
          return yield* Effect.fail(invalidArgument("subscribe", `illegal topic list ${JSON.stringify(subscription.topics)}`))
        }
        const { stream, clientFailures } = yield* acquireGroupStream(kafka, base, options, subscription)
        const polling = makePolling(stream, clientFailures)
        const commit = makeCommit(polling.underlying, options)
        const subscriptionHandle: KafkaSubscription = {
          poll: polling.poll,
          records: (pollOptions) => Stream.fromEffectRepeat(polling.poll(pollOptions)).pipe(Stream.flattenIterable),
          commit
        }
        return subscriptionHandle
      })

      // A group-less reader: Fetch requests straight to each partition's leader, from offset 0.
      const reader = yield* Effect.acquireRelease(
        // groupId is mandatory in the constructor, but Fetch never joins a group.
        Effect.sync(() => new kafka.Consumer({ ...base, clientId: `${options.clientId}-reader`, groupId: `${options.clientId}-reader`, autocommit: false })),
        (client) => closeClient("reader.close", () => client.close())
      )
      const endOffsets = (topic: string) =>
        legalName.test(topic)
          ? kafkaCall("endOffsets", options.operationTimeout_ms, () =>
            reader.listOffsets({ topics: [topic], timestamp: -1n, isolationLevel: kafka.FetchIsolationLevels.READ_COMMITTED })
          ).pipe(Effect.map((offsets): ReadonlyArray<bigint> => [...(offsets.get(topic) ?? [])]))
          : Effect.fail(invalidArgument("endOffsets", `illegal topic name ${JSON.stringify(topic)}`))
      return KafkaConsumer.of({ subscribe, readFromBeginning: makeReadFromBeginning(kafka, reader, options), scanFromBeginning: makeScanFromBeginning(kafka, reader, options), endOffsets })
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

type BaseOptions = ReturnType<typeof baseClientOptions>

/**
 * Errors the group client emits as an `'error'` event (today: a rejoin after a heartbeat failed,
 * `@platformatic/kafka` 2.12 consumer.js). An `'error'` event nobody listens to ends the process
 * (Node's rule): a broker coming back from a pause killed a whole server, API included, with a raw
 * stack trace (outside fault review). Kept here from the client's construction, and read by the
 * poll as the subscription's failure: the subscription ends and starts again, like any other.
 */
interface ClientFailures {
  first: KafkaError | undefined
  notify: (() => void) | undefined
}

/** What the group's coordinator did to this member, as the client tells it. */
type GroupChange =
  | { readonly _tag: "Rebalancing" }
  | { readonly _tag: "Joined"; readonly generation: number; readonly partitions: string }

/** The client's `assignments` payload as `topic:p,p; …` (empty: none assigned). */
const assignedPartitions = (assignments: unknown): string =>
  Array.isArray(assignments)
    ? assignments.flatMap((assignment: unknown) =>
      typeof assignment === "object" && assignment !== null && "topic" in assignment && "partitions" in assignment && Array.isArray(assignment.partitions)
        ? [`${String(assignment.topic)}:${assignment.partitions.join(",")}`]
        : []).join("; ")
    : ""

/**
 * One INFO line each time the group rebalances this member and each time it joins (its generation
 * and partitions): a process paused past its session (SIGSTOP, a long GC) was evicted and rejoined
 * without a word in its log, and an operator reading its last lines saw a healthy one from minutes
 * before (outside operator review). Bounded: the last 16 changes are kept until logged.
 */
const logGroupChanges = (client: { on: (event: string, listener: (payload: unknown) => void) => unknown }, groupId: string) =>
  Effect.gen(function* () {
    const changes = yield* Queue.sliding<GroupChange>(16)
    client.on("consumer:group:rebalance", () => {
      Queue.offerUnsafe(changes, { _tag: "Rebalancing" })
    })
    client.on("consumer:group:join", (payload: unknown) => {
      const generation = typeof payload === "object" && payload !== null && "generationId" in payload && typeof payload.generationId === "number" ? payload.generationId : -1
      const assignments = typeof payload === "object" && payload !== null && "assignments" in payload ? payload.assignments : undefined
      Queue.offerUnsafe(changes, { _tag: "Joined", generation, partitions: assignedPartitions(assignments) })
    })
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(changes), (change) =>
      change._tag === "Rebalancing"
        ? Effect.logInfo("consumer group rebalancing", { group: groupId })
        : Effect.logInfo("consumer group joined", { group: groupId, generation: change.generation, partitions: change.partitions }))))
  })

/** A group member that never commits on its own, and its message stream (both closed with the scope). */
const acquireGroupStream = (kafka: KafkaLibrary, base: BaseOptions, options: KafkaConsumerOptions, subscription: SubscribeOptions) =>
  Effect.gen(function* () {
    const clientFailures: ClientFailures = { first: undefined, notify: undefined }
    const consumer = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const client = new kafka.Consumer({
          ...base,
          groupId: subscription.groupId,
          // Offsets are committed by `commit` only, after the caller's Postgres transaction.
          autocommit: false,
          sessionTimeout: options.sessionTimeout_ms,
          heartbeatInterval: options.heartbeatInterval_ms,
          rebalanceTimeout: options.rebalanceTimeout_ms,
          minBytes: 1,
          maxBytes: options.fetch_bytes_max,
          maxBytesPerPartition: options.fetchPartition_bytes_max,
          maxWaitTime: options.fetchMaxWait_ms,
          // Never see records of aborted transactions (we do not produce any today; this
          // keeps it true if a transactional producer ever appears).
          isolationLevel: kafka.FetchIsolationLevels.READ_COMMITTED,
          highWaterMark: options.bufferedRecords_max
        })
        // Attached before anything can emit, and never removed: one emitted while or after the
        // client closes has nobody left to tell, and must still not end the process.
        client.on("error", (error: unknown) => {
          clientFailures.first ??= toKafkaError("consume", error)
          clientFailures.notify?.()
        })
        return client
      }),
      (client) => closeClient("consumer.close", () => client.close())
    )
    yield* logGroupChanges(consumer, subscription.groupId)
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

    return { stream, clientFailures }
  })

/** `poll`: takes from the stream's buffer, or waits (bounded) for it to fill. */
const makePolling = (stream: MessagesStream<Buffer, Buffer, Buffer, Buffer>, clientFailures: ClientFailures) => {
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
  clientFailures.notify = () => wake?.()

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
      // What the poll answers now, or undefined to keep waiting. The caller clears its own state
      // BEFORE resuming: a resumed fiber may call `poll` again synchronously.
      const answer = (): Effect.Effect<ReadonlyArray<KafkaRecord>, KafkaError> | undefined => {
        const failed = failure ?? clientFailures.first
        if (failed !== undefined) return Effect.fail(failed)
        const records = take(Math.max(1, pollOptions.maxRecords))
        if (records.length > 0) return Effect.succeed(records)
        if (closed) return Effect.fail(new KafkaError({ operation: "poll", message: "subscription closed", retriable: false, code: "CLOSED" }))
        return undefined
      }
      const now = answer()
      if (now !== undefined) {
        resume(now)
        return
      }
      const timer = setTimeout(() => {
        wake = undefined
        resume(Effect.succeed([]))
      }, pollOptions.timeout_ms)
      wake = () => {
        const later = answer()
        if (later === undefined) return
        clearTimeout(timer)
        wake = undefined
        resume(later)
      }
      return Effect.sync(() => {
        clearTimeout(timer)
        wake = undefined
      })
    })

  return { poll, underlying }
}

/** `commit`: the highest polled offset per partition, after the caller's work is durable. */
const makeCommit = (underlying: WeakMap<KafkaRecord, Message>, options: KafkaConsumerOptions) => {
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

  return commit
}
