import type { Admin } from "@platformatic/kafka"
import { Context, Effect, Layer } from "effect"
import { KafkaBrokers } from "./Config.ts"
import {
  allLeavesAre,
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
import { kafkaLibrary, type KafkaLibrary } from "./KafkaLibrary.ts"
import { makePing, makePingTopic } from "./KafkaPing.ts"

export interface TopicSpec {
  readonly topic: string
  /** At least 1. An existing topic with fewer partitions is an error, not silently accepted. */
  readonly partitions: number
  /**
   * Replicas per partition (1..32). Omitted: the broker's `default.replication.factor`. An existing
   * topic with fewer replicas is an error (raising it is a reassignment, an operator's act).
   */
  readonly replicationFactor?: number
  /**
   * Topic-level settings (`min.insync.replicas`, `retention.ms`, …), at most 20: given at creation,
   * and set again on an existing topic, so the configuration in force is the one asked for.
   */
  readonly configs?: Readonly<Record<string, string>>
}

/** What the broker says about a topic (for checks and operators). */
export interface TopicDescription {
  readonly topic: string
  readonly partitions: number
  /** The smallest replica count over its partitions. */
  readonly replicationFactor: number
  /** Every topic-level setting with its value in force (explicit or default). */
  readonly configs: Readonly<Record<string, string>>
  /** The id the broker gave this topic at creation: another one means it was deleted and created again. */
  readonly topicId: string
}

export interface TopicReady {
  readonly topic: string
  /** The topic's partition count as the broker reports it (may exceed the requested count). */
  readonly partitions: number
  /** false when the topic already existed. */
  readonly created: boolean
}

export interface KafkaClusterHealth {
  readonly clusterId: string
  readonly brokerCount: number
  readonly controllerId: number
  readonly latency_ms: number
}

export interface KafkaAdminOptions extends KafkaClientOptions {
  /** How long createTopic waits for every partition to have a leader. */
  readonly leaderWaitTimeout_ms: number
  /** Bound on `ping` (the readiness probe): short, so a dead broker fails the probe quickly. */
  readonly pingTimeout_ms: number
}

export const defaultKafkaAdminTimeouts = {
  ...defaultKafkaTimeouts,
  leaderWaitTimeout_ms: 10_000,
  pingTimeout_ms: 1_000
} as const

/** Topic and group names the broker accepts (Kafka's own rule: [a-zA-Z0-9._-], at most 249). */
const legalName = /^[a-zA-Z0-9._-]{1,249}$/
const deleteBatchSize = 100
const leaderPollInterval_ms = 50

const invalidArgument = (operation: string, message: string) =>
  new KafkaError({ operation, message, retriable: false, code: "INVALID_ARGUMENT" })

/**
 * Topics, consumer groups and a health check. Topics are created here and only here (producers and
 * consumers run with auto-creation off), and `createTopic` returns only once every partition has a
 * leader: a consumer that subscribes earlier races the leader election and may miss partitions.
 */
export class KafkaAdmin extends Context.Service<KafkaAdmin, {
  /** Idempotent: an existing topic with at least `partitions` partitions (and replicas) is fine; its configs are set again. */
  readonly createTopic: (spec: TopicSpec) => Effect.Effect<TopicReady, KafkaError>
  readonly describeTopic: (topic: string) => Effect.Effect<TopicDescription, KafkaError>
  /** Topics that do not exist are ignored. */
  readonly deleteTopics: (topics: ReadonlyArray<string>) => Effect.Effect<void, KafkaError>
  /** User topics (no `__consumer_offsets` and friends), sorted. */
  readonly listTopics: Effect.Effect<ReadonlyArray<string>, KafkaError>
  readonly listGroups: Effect.Effect<ReadonlyArray<string>, KafkaError>
  /** Groups that do not exist are ignored; a group with live members is an error. */
  readonly deleteGroups: (groupIds: ReadonlyArray<string>) => Effect.Effect<void, KafkaError>
  /** One group: `deleted` (or there was none), or `group_active` when it still has members (nothing deleted). */
  readonly deleteGroup: (groupId: string) => Effect.Effect<"deleted" | "group_active", KafkaError>
  /**
   * Sets a group's committed offsets for one topic (the "seek" of a consumer that keeps its
   * position elsewhere). Only an empty group can be altered: `group_active` when it has members.
   */
  readonly alterGroupOffsets: (
    groupId: string,
    topic: string,
    offsets: ReadonlyArray<{ readonly partition: number; readonly offset: bigint }>
  ) => Effect.Effect<"altered" | "group_active", KafkaError>
  /** A group's committed offset per partition of `topic` (-1: none). */
  readonly groupOffsets: (groupId: string, topic: string) => Effect.Effect<ReadonlyArray<{ readonly partition: number; readonly offset: bigint }>, KafkaError>
  /** A fresh metadata round trip, bounded by `pingTimeout_ms`: what `/health/ready` asks. */
  readonly ping: Effect.Effect<KafkaClusterHealth, KafkaError>
  /**
   * A fresh metadata round trip for one topic, bounded by `pingTimeout_ms`: fails when the topic
   * does not exist, has fewer than `partitionsMin` partitions (the publisher refuses it) or a
   * partition has no leader (nothing can be written to it). Never creates it.
   */
  readonly pingTopic: (topic: string, partitionsMin?: number) => Effect.Effect<void, KafkaError>
}>()("infra/KafkaAdmin") {
  static readonly make = (options: KafkaAdminOptions) =>
    Effect.gen(function* () {
      const bootstrapBrokers = yield* parseBrokers(options.brokers)
      const kafka = yield* kafkaLibrary
      const admin = yield* Effect.acquireRelease(
        Effect.sync(() => new kafka.Admin(baseClientOptions(options, bootstrapBrokers))),
        (client) => closeClient("admin.close", () => client.close())
      )
      return KafkaAdmin.of({
        ...makeTopics(admin, options, kafka),
        ...makeGroups(admin, options),
        ...makeGroupOffsets(admin, options),
        ping: makePing(admin, options),
        pingTopic: makePingTopic(admin, options)
      })
    })

  static readonly layerWith = (options: KafkaAdminOptions) => Layer.effect(KafkaAdmin, KafkaAdmin.make(options))

  /** Configured from `KAFKA_BROKERS`. */
  static readonly layer = Layer.unwrap(
    Effect.gen(function* () {
      const brokers = yield* KafkaBrokers
      return KafkaAdmin.layerWith({ brokers, clientId: "pay-admin", ...defaultKafkaAdminTimeouts })
    })
  )
}

/** Waits (bounded) until every partition of a new topic has a leader. */
const makeWaitForLeaders = (admin: Admin, options: KafkaAdminOptions) => {
  const call = <A>(operation: string, run: () => Promise<A>) => kafkaCall(operation, options.operationTimeout_ms, run)
  // Metadata straight from the broker (no cache, no client-side retries: the caller loops).
  const freshMetadata = (operation: string, topics: Array<string>) =>
    call(operation, () => admin.metadata({ topics, forceUpdate: true, retries: 0 }))

  const waitForLeaders = (spec: TopicSpec) =>
    Effect.gen(function* () {
      const deadline = Date.now() + options.leaderWaitTimeout_ms
      let last = "no metadata yet"
      while (Date.now() < deadline) {
        const attempt = yield* freshMetadata("createTopic.metadata", [spec.topic]).pipe(Effect.result)
        if (attempt._tag === "Success") {
          const topic = attempt.success.topics.get(spec.topic)
          if (topic !== undefined) {
            if (topic.partitionsCount < spec.partitions) {
              return yield* Effect.fail(
                invalidArgument(
                  "createTopic",
                  `topic ${spec.topic} exists with ${topic.partitionsCount} partitions, ${spec.partitions} wanted`
                )
              )
            }
            const replicas = Math.min(...topic.partitions.map((partition) => partition.replicas.length))
            if (spec.replicationFactor !== undefined && topic.partitions.length > 0 && replicas < spec.replicationFactor) {
              return yield* Effect.fail(
                invalidArgument("createTopic", `topic ${spec.topic} exists with ${replicas} replicas, ${spec.replicationFactor} wanted`)
              )
            }
            const leaderless = topic.partitions.filter((partition) => partition.leader < 0).length
            if (leaderless === 0 && topic.partitions.length === topic.partitionsCount) return topic.partitionsCount
            last = `${leaderless} of ${topic.partitionsCount} partitions without a leader`
          }
        } else if (attempt.failure.retriable) {
          // A topic created a moment ago may still be unknown to the broker's metadata cache.
          last = attempt.failure.message
        } else {
          return yield* Effect.fail(attempt.failure)
        }
        yield* wallClockSleep(leaderPollInterval_ms)
      }
      return yield* Effect.fail(
        new KafkaError({
          operation: "createTopic",
          message: `topic ${spec.topic} not ready after ${options.leaderWaitTimeout_ms} ms: ${last}`,
          retriable: true,
          code: "LEADER_NOT_AVAILABLE"
        })
      )
    })

  return waitForLeaders
}

const configName = /^[a-z][a-z0-9.]{0,99}$/
const configsMax = 20
const replicationFactorMax = 32

/** The spec's own problems, before any broker is asked. */
const specProblem = (spec: TopicSpec): string | undefined => {
  if (!legalName.test(spec.topic)) return `illegal topic name ${JSON.stringify(spec.topic)}`
  if (!Number.isInteger(spec.partitions) || spec.partitions < 1) return `partitions must be a positive integer, got ${spec.partitions}`
  const rf = spec.replicationFactor
  if (rf !== undefined && (!Number.isInteger(rf) || rf < 1 || rf > replicationFactorMax)) {
    return `replicationFactor must be an integer within 1..${replicationFactorMax}, got ${rf}`
  }
  const entries = Object.entries(spec.configs ?? {})
  if (entries.length > configsMax) return `at most ${configsMax} topic configs, got ${entries.length}`
  const bad = entries.find(([name, value]) => !configName.test(name) || value.length > 1_000)
  return bad === undefined ? undefined : `illegal topic config ${JSON.stringify(bad[0])}`
}

/** Partitions, replicas and the topic-level settings in force, as the broker reports them. */
const makeDescribeTopic = (admin: Admin, options: KafkaAdminOptions, { ConfigResourceTypes }: KafkaLibrary) =>
  Effect.fn("KafkaAdmin.describeTopic")(function* (topic: string) {
    if (!legalName.test(topic)) return yield* Effect.fail(invalidArgument("describeTopic", `illegal topic name ${JSON.stringify(topic)}`))
    const metadata = yield* kafkaCall("describeTopic.metadata", options.operationTimeout_ms, () =>
      admin.metadata({ topics: [topic], forceUpdate: true, retries: 0 }))
    const found = metadata.topics.get(topic)
    if (found === undefined) return yield* Effect.fail(new KafkaError({ operation: "describeTopic", message: `no topic ${topic}`, retriable: false, code: "UNKNOWN_TOPIC_OR_PARTITION" }))
    const described = yield* kafkaCall("describeTopic.configs", options.operationTimeout_ms, () =>
      admin.describeConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic }] }))
    const configs: Record<string, string> = {}
    for (const config of described.flatMap((resource) => resource.configs)) {
      if (typeof config.value === "string" && !config.isSensitive) configs[config.name] = config.value
    }
    const replicationFactor = Math.min(...found.partitions.map((partition) => partition.replicas.length))
    return { topic, partitions: found.partitionsCount, replicationFactor, configs, topicId: found.id } satisfies TopicDescription
  })

const makeTopics = (admin: Admin, options: KafkaAdminOptions, kafka: KafkaLibrary) => {
  const { ConfigResourceTypes, IncrementalAlterConfigOperationTypes } = kafka
  const waitForLeaders = makeWaitForLeaders(admin, options)
  const setConfigs = (topic: string, configs: ReadonlyArray<readonly [string, string]>) =>
    Effect.tryPromise({
      try: () =>
        admin.incrementalAlterConfigs({
          resources: [{
            resourceType: ConfigResourceTypes.TOPIC,
            resourceName: topic,
            configs: configs.map(([name, value]) => ({ name, value, configOperation: IncrementalAlterConfigOperationTypes.SET }))
          }]
        }),
      catch: (error) => toKafkaError("createTopic.configs", error)
    }).pipe(boundedBy("createTopic.configs", options.operationTimeout_ms))

  const createTopic = Effect.fn("KafkaAdmin.createTopic")(function* (spec: TopicSpec) {
    const problem = specProblem(spec)
    if (problem !== undefined) return yield* Effect.fail(invalidArgument("createTopic", problem))
    const configs = Object.entries(spec.configs ?? {})
    const created = yield* Effect.tryPromise({
      // replicas -1 (no replicationFactor given): the broker's default.replication.factor.
      try: () =>
        admin.createTopics({
          topics: [spec.topic],
          partitions: spec.partitions,
          replicas: spec.replicationFactor ?? -1,
          configs: configs.map(([name, value]) => ({ name, value }))
        }),
      catch: (error) => error
    }).pipe(
      Effect.as(true),
      Effect.catch((error) =>
        allLeavesAre(error, "TOPIC_ALREADY_EXISTS") ? Effect.succeed(false) : Effect.fail(toKafkaError("createTopic", error))
      ),
      boundedBy("createTopic", options.operationTimeout_ms)
    )
    const partitions = yield* waitForLeaders(spec)
    // An existing topic keeps whatever it was created with unless told again (e.g. a retention
    // the configuration no longer asks for): SET is idempotent.
    if (!created && configs.length > 0) yield* setConfigs(spec.topic, configs)
    return { topic: spec.topic, partitions, created }
  })

  const deleteTopics = Effect.fn("KafkaAdmin.deleteTopics")(function* (topics: ReadonlyArray<string>) {
    const bad = topics.find((topic) => !legalName.test(topic))
    if (bad !== undefined) return yield* Effect.fail(invalidArgument("deleteTopics", `illegal topic name ${JSON.stringify(bad)}`))
    for (let start = 0; start < topics.length; start += deleteBatchSize) {
      const batch = topics.slice(start, start + deleteBatchSize)
      yield* Effect.tryPromise({ try: () => admin.deleteTopics({ topics: batch }), catch: (error) => error }).pipe(
        Effect.catch((error) =>
          allLeavesAre(error, "UNKNOWN_TOPIC_OR_PARTITION") ? Effect.void : Effect.fail(toKafkaError("deleteTopics", error))
        ),
        boundedBy("deleteTopics", options.operationTimeout_ms)
      )
    }
  })

  const listTopics = kafkaCall("listTopics", options.operationTimeout_ms, () => admin.listTopics({ includeInternals: false })).pipe(
    Effect.map((topics) => [...topics].sort())
  )

  return { createTopic, describeTopic: makeDescribeTopic(admin, options, kafka), deleteTopics, listTopics }
}

type DeleteOutcome = "deleted" | { readonly _tag: "GroupActive"; readonly error: KafkaError }

const makeGroups = (admin: Admin, options: KafkaAdminOptions) => {
  const listGroups = kafkaCall("listGroups", options.operationTimeout_ms, () => admin.listGroups()).pipe(Effect.map((groups) => [...groups.keys()].sort()))

  /** One DeleteGroups request for both: a group that does not exist is deleted; one with members an outcome (with deleteGroups' error). */
  const deleteRequest = (operation: string, groups: Array<string>): Effect.Effect<DeleteOutcome, KafkaError> =>
    Effect.tryPromise({ try: () => admin.deleteGroups({ groups }), catch: (error) => error }).pipe(
      Effect.as<DeleteOutcome>("deleted"),
      Effect.catch((error): Effect.Effect<DeleteOutcome, KafkaError> =>
        allLeavesAre(error, "GROUP_ID_NOT_FOUND")
          ? Effect.succeed("deleted" as const)
          : groupActiveCodes.some((code) => allLeavesAre(error, code))
          ? Effect.succeed({ _tag: "GroupActive" as const, error: toKafkaError(operation, error) })
          : Effect.fail(toKafkaError(operation, error))
      ),
      boundedBy(operation, options.operationTimeout_ms)
    )

  const deleteGroups = Effect.fn("KafkaAdmin.deleteGroups")(function* (groupIds: ReadonlyArray<string>) {
    for (let start = 0; start < groupIds.length; start += deleteBatchSize) {
      const outcome = yield* deleteRequest("deleteGroups", groupIds.slice(start, start + deleteBatchSize))
      if (outcome !== "deleted") return yield* Effect.fail(outcome.error)
    }
  })

  const deleteGroup = (groupId: string) => Effect.map(deleteRequest("deleteGroup", [groupId]), (outcome) => (outcome === "deleted" ? outcome : "group_active" as const))

  return { listGroups, deleteGroups, deleteGroup }
}

const makeGroupOffsets = (admin: Admin, options: KafkaAdminOptions) => {
  const alterGroupOffsets = Effect.fn("KafkaAdmin.alterGroupOffsets")(function* (
    groupId: string,
    topic: string,
    offsets: ReadonlyArray<{ readonly partition: number; readonly offset: bigint }>
  ) {
    if (!legalName.test(groupId) || !legalName.test(topic)) {
      return yield* Effect.fail(invalidArgument("alterGroupOffsets", `illegal group or topic ${JSON.stringify([groupId, topic])}`))
    }
    return yield* Effect.tryPromise({
      try: () => admin.alterConsumerGroupOffsets({
        groupId,
        topics: [{ name: topic, partitionOffsets: offsets.map((entry) => ({ partition: entry.partition, offset: entry.offset })) }]
      }),
      catch: (error) => error
    }).pipe(
      Effect.as("altered" as const),
      Effect.catch((error) =>
        groupActiveCodes.some((code) => allLeavesAre(error, code))
          ? Effect.succeed("group_active" as const)
          : Effect.fail(toKafkaError("alterGroupOffsets", error))
      ),
      boundedBy("alterGroupOffsets", options.operationTimeout_ms)
    )
  })

  const groupOffsets = (groupId: string, topic: string) =>
    kafkaCall("groupOffsets", options.operationTimeout_ms, () => admin.listConsumerGroupOffsets({ groups: [groupId] })).pipe(
      Effect.map((groups) =>
        (groups[0]?.topics ?? [])
          .filter((entry) => entry.name === topic)
          .flatMap((entry) => entry.partitions.map((partition) => ({ partition: partition.partitionIndex, offset: partition.committedOffset })))
          .sort((a, b) => a.partition - b.partition)
      )
    )

  return { alterGroupOffsets, groupOffsets }
}

/** What the coordinator answers when an offset change is asked of a group that has members. */
const groupActiveCodes = ["UNKNOWN_MEMBER_ID", "NON_EMPTY_GROUP", "REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION"]
