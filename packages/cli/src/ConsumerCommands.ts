import {
  defaultKafkaAdminTimeouts,
  defaultKafkaConsumerOptions,
  KafkaAdmin,
  KafkaBrokers,
  KafkaConsumer,
  KafkaTopicPrefix
} from "@pay/infra"
import {
  ConsumerOptionsFromEnv,
  consumerLagOf,
  consumerName,
  DEAD_LETTER_LIST_MAX,
  deadLetterTopic,
  makeConsumerStore,
  makeDeadLetters,
  makeReconciliation,
  makeSettlementProjection,
  rebuildSettlement,
  redrive
} from "@pay/consumers"
import { paymentsEventsPartitions, paymentsEventsTopic } from "@pay/outbox/OutboxTopics"
import { WEBHOOK_CONSUMER_NAME } from "@pay/webhooks"
import { Console, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"

/**
 * The consumers' operator commands (docs/consumers.md § Operations):
 *
 *   pnpm cli reconcile                       projection vs ledger vs payments, per merchant+currency;
 *                                            prints the differences, exit code 1 if any
 *   pnpm cli replay settlement               rebuilds the settlement projection from offset 0 into
 *                                            a new generation, then swaps it in
 *   pnpm cli consumers lag [consumer]        log end offset minus the stored offset, per partition
 *   pnpm cli consumers offsets               stored offsets and counters of every consumer
 *   pnpm cli consumers reset <consumer> <offset>
 *                                            moves a consumer's stored offsets (backwards allowed)
 *                                            and deletes its Kafka group (stop its instances first)
 *   pnpm cli dlq list [consumer]             parked records not yet re-driven
 *   pnpm cli dlq redrive <id>                runs a parked record through its handler again
 */
export const consumerUsage = `  pnpm cli reconcile
  pnpm cli replay settlement
  pnpm cli consumers lag [consumer]
  pnpm cli consumers offsets
  pnpm cli consumers reset <consumer> <offset>
  pnpm cli dlq list [consumer]
  pnpm cli dlq redrive <id>`

/** Replay waits at most this long for the new generation to catch up. */
const REPLAY_TIMEOUT_MS = 30 * 60_000

const OffsetArgument = Schema.BigIntFromString.pipe(Schema.decodeTo(Schema.BigInt.check(Schema.isBetweenBigInt({ minimum: 0n, maximum: 2n ** 62n }))))
const IdArgument = Schema.BigIntFromString.pipe(Schema.decodeTo(Schema.BigInt.check(Schema.isBetweenBigInt({ minimum: 1n, maximum: 2n ** 62n }))))

export class InvalidConsumerName extends Schema.TaggedError<InvalidConsumerName>()("InvalidConsumerName", { consumer: Schema.String }) {}

/** `consumers lag`, `consumers reset` or `dlq list` of a name that is neither a deployed consumer nor one with stored offsets (knownConsumer). */
export class UnknownConsumer extends Schema.TaggedError<UnknownConsumer>()("UnknownConsumer", {
  consumer: Schema.String,
  known: Schema.Array(Schema.String)
}) {}

const json = (value: unknown) => JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? String(item) : item), 2)

export const KafkaClientsLive = Layer.unwrap(
  Effect.gen(function* () {
    const brokers = yield* KafkaBrokers
    return Layer.mergeAll(
      KafkaConsumer.layerWith({ brokers, clientId: "pay-cli-consumer", ...defaultKafkaConsumerOptions }),
      KafkaAdmin.layerWith({ brokers, clientId: "pay-cli-admin", ...defaultKafkaAdminTimeouts })
    )
  })
)

const reconcile = Effect.gen(function* () {
  const report = yield* makeReconciliation(yield* SqlClient.SqlClient).reconcile()
  yield* Console.log(json({ generation: report.generation, rows: report.rows.length, differences: report.differences }))
  if (report.differences.length > 0) yield* Effect.sync(() => { process.exitCode = 1 })
})

const replay = Effect.gen(function* () {
  const prefix = yield* KafkaTopicPrefix
  const options = yield* ConsumerOptionsFromEnv
  const result = yield* rebuildSettlement({
    topic: paymentsEventsTopic(prefix),
    prefix,
    dlqTopic: deadLetterTopic(prefix),
    options,
    timeout_ms: REPLAY_TIMEOUT_MS
  })
  yield* Console.log(json(result))
})

/**
 * The consumers this deployment runs (the live settlement generation, the webhooks consumer) and
 * any with stored offsets (an older generation, a replay's). A name outside them is refused: its
 * lag would read as the whole topic, and a reset would store offsets nobody reads.
 */
const knownConsumer = (sql: SqlClient.SqlClient, consumer: string) =>
  Effect.gen(function* () {
    if (!consumerName.test(consumer)) return yield* new InvalidConsumerName({ consumer })
    const stored = yield* makeConsumerStore(sql).allOffsets
    const known = [...new Set([(yield* makeSettlementProjection(sql).live).consumer, WEBHOOK_CONSUMER_NAME, ...stored.map((row) => row.consumer)])].sort()
    if (!known.includes(consumer)) return yield* new UnknownConsumer({ consumer, known })
  })

const lag = (consumer: string | undefined) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    if (consumer !== undefined) yield* knownConsumer(sql, consumer)
    const name = consumer ?? (yield* makeSettlementProjection(sql).live).consumer
    const prefix = yield* KafkaTopicPrefix
    const partitions = yield* consumerLagOf(name, paymentsEventsTopic(prefix))
    const total = partitions.reduce((sum, partition) => sum + partition.lag, 0n)
    yield* Console.log(json({ consumer: name, total_lag: total, partitions }))
  })

const reset = (consumer: string, offsetText: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* knownConsumer(sql, consumer)
    const offset = yield* Schema.decodeUnknownEffect(OffsetArgument)(offsetText)
    const store = makeConsumerStore(sql)
    const prefix = yield* KafkaTopicPrefix
    const admin = yield* KafkaAdmin
    // The group first: it refuses while instances are alive, before anything moved.
    yield* admin.deleteGroups([`${prefix}${consumer}`])
    yield* store.resetOffsets(consumer, paymentsEventsTopic(prefix), paymentsEventsPartitions, offset)
    yield* Console.log(json({ consumer, offset, partitions: paymentsEventsPartitions }))
  })

/** Dispatches the consumer commands; undefined when the arguments are not one of them. */
export const consumerCommand = (args: ReadonlyArray<string | undefined>) => {
  const [group, command, argument, extra] = args
  if (group === "reconcile" && command === undefined) return reconcile
  if (group === "replay" && command === "settlement") return replay
  if (group === "consumers" && command === "lag") return lag(argument)
  if (group === "consumers" && command === "offsets") {
    return Effect.gen(function* () {
      yield* Console.log(json(yield* makeConsumerStore(yield* SqlClient.SqlClient).allOffsets))
    })
  }
  if (group === "consumers" && command === "reset" && argument !== undefined && extra !== undefined) return reset(argument, extra)
  if (group === "dlq" && command === "list") {
    return Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // A mistyped name would list nothing, which reads as "nothing parked".
      if (argument !== undefined) yield* knownConsumer(sql, argument)
      const rows = yield* makeDeadLetters(sql).list({
        ...(argument === undefined ? {} : { consumer: argument }),
        includeRedriven: false,
        limit: DEAD_LETTER_LIST_MAX
      })
      yield* Console.log(json(rows))
    })
  }
  if (group === "dlq" && command === "redrive" && argument !== undefined) {
    return Effect.gen(function* () {
      const id = yield* Schema.decodeUnknownEffect(IdArgument)(argument)
      yield* Console.log(json({ id, outcome: yield* redrive(id) }))
    })
  }
  return undefined
}
