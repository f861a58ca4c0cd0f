import {
  ConsumersPostgresToolLive,
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
  DISMISS_REASON_CHARS_MAX,
  ConsumerStore,
  DeadLetters,
  Reconciliation,
  makeSettlementProjection,
  rebuildSettlement,
  redrive
} from "@pay/consumers"
import { StorableText } from "@pay/domain"
import { paymentsEventsPartitions, paymentsEventsTopic } from "@pay/outbox/OutboxTopics"
import { WEBHOOK_CONSUMER_NAME } from "@pay/webhooks"
import { Console, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { wholeNumberArgument } from "./Arguments.ts"

/**
 * The consumers' operator commands (docs/consumers.md § Operations):
 *
 *   pnpm cli reconcile                       projection vs ledger vs payments, per merchant+currency, and
 *                                            each payable's balance and each payment's refunds;
 *                                            prints the differences and the operators' corrections,
 *                                            exit code 1 if any difference; 3 when it agrees only
 *                                            with events in flight counted (run again)
 *   pnpm cli replay settlement               rebuilds the settlement projection from offset 0 into
 *                                            a new generation, then swaps it in
 *   pnpm cli consumers lag [consumer]        log end offset minus the stored offset, per partition (no name: every deployed consumer)
 *   pnpm cli consumers offsets               stored offsets and counters of every consumer
 *   pnpm cli consumers reset <consumer> <offset> [--skip]   forward past unapplied records only with --skip
 *                                            moves a consumer's stored offsets (backwards allowed;
 *                                            above a partition's log end offset refused, exit 1)
 *                                            and deletes its Kafka group (stop its instances first)
 *   pnpm cli dlq list [consumer | --all]     parked records neither re-driven nor dismissed: of the
 *                                            live consumers (no name), of one, or of every generation
 *   pnpm cli dlq redrive <id>                runs a parked record through its handler again (the
 *                                            settlement generations' and the webhooks consumer's);
 *                                            exit 1 when it still fails
 *   pnpm cli dlq dismiss <id> "<reason>"     an open parked record that must never be applied:
 *                                            out of the open list for good, never re-driven (the
 *                                            row stays, with the reason); exit 1 when no open row
 *
 * Results (JSON) on stdout only; logs (a replay's progress) and refusals on stderr (main.ts).
 * Extra arguments are refused like any malformed command line (exit 2).
 */
export const consumerUsage = `  pnpm cli reconcile
  pnpm cli replay settlement
  pnpm cli consumers lag [consumer]
  pnpm cli consumers offsets
  pnpm cli consumers reset <consumer> <offset> [--skip]
  pnpm cli dlq list [consumer | --all]
  pnpm cli dlq redrive <id>
  pnpm cli dlq dismiss <id> "<reason, 1-500 characters>"`

/** Replay waits at most this long for the new generation to catch up. */
const REPLAY_TIMEOUT_MS = 30 * 60_000

const OffsetArgument = wholeNumberArgument("offset", { minimum: 0n, maximum: 2n ** 62n })
const IdArgument = wholeNumberArgument("a parked event's id", { minimum: 1n, maximum: 2n ** 62n })
const ReasonArgument = StorableText("reason", { min: 1, max: DISMISS_REASON_CHARS_MAX })

/** `dlq dismiss` of an id no open parked row has (none, re-driven, or dismissed already). */
export class NoOpenDeadLetter extends Schema.TaggedError<NoOpenDeadLetter>()("NoOpenDeadLetter", { id: Schema.BigInt }) {}

/** `consumers reset` to an offset above a partition's log end offset: nothing moved. */
export class OffsetBeyondEnd extends Schema.TaggedError<OffsetBeyondEnd>()("OffsetBeyondEnd", {
  consumer: Schema.String,
  offset: Schema.BigInt,
  endOffsets: Schema.Array(Schema.BigInt)
}) {}

/** `dlq redrive` whose record still fails: the outcome is on stdout, the error on stderr, exit 1. */
export class RedriveFailed extends Schema.TaggedError<RedriveFailed>()("RedriveFailed", { id: Schema.BigInt, error: Schema.String }) {}

/**
 * `consumers reset` forward past records the consumer has not applied, without `--skip`: those
 * records would never be applied (the projection short of the ledger until a replay); nothing moved.
 */
export class OffsetSkipsRecords extends Schema.TaggedError<OffsetSkipsRecords>()("OffsetSkipsRecords", {
  consumer: Schema.String,
  offset: Schema.BigInt,
  storedOffsets: Schema.Array(Schema.BigInt),
  skipped: Schema.BigInt
}) {}

/** `consumers reset` while a process still runs the consumer: its Kafka group has members, and would overwrite the reset. */
export class ConsumerGroupActive extends Schema.TaggedError<ConsumerGroupActive>()("ConsumerGroupActive", { consumer: Schema.String, group: Schema.String }) {}

export class InvalidConsumerName extends Schema.TaggedError<InvalidConsumerName>()("InvalidConsumerName", { consumer: Schema.String }) {}

/** `consumers lag`, `consumers reset` or `dlq list` of a name that is neither a deployed consumer nor one with stored offsets (knownConsumer). */
export class UnknownConsumer extends Schema.TaggedError<UnknownConsumer>()("UnknownConsumer", {
  consumer: Schema.String,
  known: Schema.Array(Schema.String)
}) {}

/** Stands for a bigint in JSON.stringify's output until it is written as its digits (no text of ours holds a NUL). */
const bigintMark = "\u0000bigint:"
const markedBigint = /"\\u0000bigint:(-?[0-9]+)"/g

/**
 * Offsets, lags, counts and money as JSON numbers written with their exact digits, as the API
 * writes amounts: `jq '.total_lag > 1000'` compares numbers (outside operator review: as strings,
 * such a filter was always true), and a value past 2^53 keeps its digits and its type (outside
 * re-test: a number below 2^53 and a string above it in one field).
 */
export const json = (value: unknown) =>
  // A NUL in a string (none of ours holds one: PostgreSQL text cannot) is written U+FFFD, so no
  // string can forge the mark (outside re-test).
  JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? `${bigintMark}${item}` : typeof item === "string" ? item.replaceAll("\u0000", "\uFFFD") : item), 2)
    .replace(markedBigint, "$1")

/**
 * The Kafka clients of the commands that talk to the broker (replay, consumers lag|reset), provided
 * by those commands alone: the others never build them. main.ts imports the Kafka library before
 * the database layer connects (`ConsumerCommand.kafka`).
 */
const KafkaClientsLive = Layer.unwrap(
  Effect.gen(function* () {
    const brokers = yield* KafkaBrokers
    return Layer.mergeAll(
      KafkaConsumer.layerWith({ brokers, clientId: "pay-cli-consumer", ...defaultKafkaConsumerOptions }),
      KafkaAdmin.layerWith({ brokers, clientId: "pay-cli-admin", ...defaultKafkaAdminTimeouts })
    )
  })
)

const reconcile = Effect.gen(function* () {
  const report = yield* (yield* Reconciliation).reconcile()
  const { generation, in_flight_events, differences, corrections } = report
  yield* Console.log(json({ generation, rows: report.rows.length, in_flight_events, differences, corrections }))
  // Corrections are legitimate (an operator's `correction:<incident>`) but move a merchant's money
  // outside any payment: whoever reads the result is told, whatever the exit code.
  if (corrections.length > 0) {
    yield* Console.error(`${corrections.length} merchant payable(s) carry operators' corrections (listed under "corrections"): check each against its incident`)
  }
  if (differences.length > 0) return yield* Effect.sync(() => { process.exitCode = 1 })
  // Agrees, counting settlements and refunds committed but not yet applied to the projection: not
  // an exact answer yet (exit 3), said on stderr (stdout stays the JSON).
  if (report.in_flight_events > 0) {
    yield* Console.error(`agrees with the ${report.in_flight_events} settlement/refund event(s) not yet applied counted as in flight; run again for an exact answer`)
    yield* Effect.sync(() => { process.exitCode = 3 })
  }
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
    const stored = yield* (yield* ConsumerStore).allOffsets
    const known = [...new Set([(yield* makeSettlementProjection(sql).live).consumer, WEBHOOK_CONSUMER_NAME, ...stored.map((row) => row.consumer)])].sort()
    if (!known.includes(consumer)) return yield* new UnknownConsumer({ consumer, known })
  })

const lagOf = (name: string) =>
  Effect.gen(function* () {
    const partitions = yield* consumerLagOf(name, paymentsEventsTopic(yield* KafkaTopicPrefix))
    const total = partitions.reduce((sum, partition) => sum + partition.lag, 0n)
    // snake_case like every other command's output (and total_lag beside them): one jq for all.
    return {
      consumer: name,
      total_lag: total,
      partitions: partitions.map((partition) => ({
        partition: partition.partition,
        log_end_offset: partition.logEndOffset,
        stored_offset: partition.storedOffset,
        lag: partition.lag
      }))
    }
  })

/**
 * One consumer's lag (an object), or, with no name, every consumer this deployment runs (an array:
 * the live settlement generation and the webhooks consumer), so that a page for either one is
 * answered by the bare command.
 */
const lag = (consumer: string | undefined) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    if (consumer !== undefined) {
      yield* knownConsumer(sql, consumer)
      return yield* Console.log(json(yield* lagOf(consumer)))
    }
    const deployed = [(yield* makeSettlementProjection(sql).live).consumer, WEBHOOK_CONSUMER_NAME]
    yield* Console.log(json(yield* Effect.forEach(deployed, lagOf)))
  })

/**
 * Stored offsets above a partition's log end offset would make the consumer skip every record
 * ("behind") until the topic reached them, with its lag reading 0 (end − stored, clamped): a
 * consumer silently stopped. One offset is stored for every partition, so it must be at most the
 * lowest end offset. The topic only grows: an offset accepted here stays within it.
 */
const reset = (consumer: string, offsetText: string, skip: boolean) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* knownConsumer(sql, consumer)
    const offset = yield* Schema.decodeUnknownEffect(OffsetArgument)(offsetText)
    const store = yield* ConsumerStore
    const prefix = yield* KafkaTopicPrefix
    const topic = paymentsEventsTopic(prefix)
    const endOffsets = yield* (yield* KafkaConsumer).endOffsets(topic)
    // A partition the broker did not answer for counts as empty (end 0).
    const ends = Array.from({ length: paymentsEventsPartitions }, (_, partition) => endOffsets[partition] ?? 0n)
    if (ends.some((end) => offset > end)) {
      return yield* new OffsetBeyondEnd({ consumer, offset, endOffsets: ends })
    }
    // Forward of a partition's stored offset: the records between were never applied, and never
    // would be. Only on purpose (--skip); backward (re-reading, effects stay once) always.
    const stored = yield* Effect.forEach(ends, (_, partition) => store.storedOffset(consumer, topic, partition))
    const skipped = stored.reduce((sum, next) => sum + (offset > next ? offset - next : 0n), 0n)
    if (skipped > 0n && !skip) return yield* new OffsetSkipsRecords({ consumer, offset, storedOffsets: stored, skipped })
    const admin = yield* KafkaAdmin
    // The group first: it refuses while instances are alive, before anything moved.
    const group = `${prefix}${consumer}`
    if ((yield* admin.deleteGroup(group)) === "group_active") return yield* new ConsumerGroupActive({ consumer, group })
    // The offsets are positions in the topic as it is now: its id is recorded with them, or a reset
    // made after the topic was re-created would be undone (to 0) at the consumer's next start.
    const { topicId } = yield* admin.describeTopic(topic)
    yield* store.resetOffsets(consumer, topic, paymentsEventsPartitions, offset)
    yield* store.recordTopicId(consumer, topic, topicId)
    // Where each partition was: a reset moves some forward (skipped) and others back (re-read).
    yield* Console.log(json({ consumer, offset, partitions: paymentsEventsPartitions, previous_offsets: stored, skipped_records: skipped }))
  })

const redriveCommand = (argument: string) =>
  Effect.gen(function* () {
    const id = yield* Schema.decodeUnknownEffect(IdArgument)(argument)
    const outcome = yield* redrive(id)
    yield* Console.log(json({ id, outcome }))
    if (outcome !== "failed") return
    const [letter] = yield* (yield* DeadLetters).find(id)
    return yield* new RedriveFailed({ id, error: letter?.redrive_error ?? "(no error recorded)" })
  })

const dismissCommand = (idArgument: string, reasonArgument: string) =>
  Effect.gen(function* () {
    const id = yield* Schema.decodeUnknownEffect(IdArgument)(idArgument)
    const reason = yield* Schema.decodeUnknownEffect(ReasonArgument)(reasonArgument)
    if (!(yield* (yield* DeadLetters).dismiss(id, reason))) return yield* new NoOpenDeadLetter({ id })
    yield* Console.log(json({ id, dismissed: true, reason }))
  })

/**
 * With no name, the open rows of the live consumers and of a replay being built (the settlement
 * generations from the live one on, the webhooks consumer's): after a replay a poison record showed once per generation, the old ones' rows
 * mattering to nothing served (outside consumer operator's review). How many rows of generations
 * no longer live were left out is said on stderr; `--all` lists them, a name lists that consumer's.
 */
const dlqList = (argument: string | undefined) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const consumer = argument === "--all" ? undefined : argument
    // A mistyped name would list nothing, which reads as "nothing parked".
    if (consumer !== undefined) yield* knownConsumer(sql, consumer)
    const deadLetters = yield* DeadLetters
    const live = argument === undefined ? yield* makeSettlementProjection(sql).live : undefined
    const rows = yield* deadLetters.list({
      ...(consumer === undefined ? {} : { consumer }),
      ...(live === undefined ? {} : { liveGeneration: live.generation }),
      includeRedriven: false,
      limit: DEAD_LETTER_LIST_MAX
    })
    if (live !== undefined) {
      const left = yield* deadLetters.countOlderGenerations(live.generation)
      if (left > 0n) yield* Console.error(`${left} open row(s) of settlement generations no longer live (older than ${live.consumer}) left out: pnpm cli dlq list --all`)
    }
    if (rows.length === DEAD_LETTER_LIST_MAX) yield* Console.error(`the first ${DEAD_LETTER_LIST_MAX} rows by id: more may be open (dismiss or re-drive these first)`)
    yield* Console.log(json(rows))
  })

const offsets = Effect.gen(function* () {
  yield* Console.log(json(yield* (yield* ConsumerStore).allOffsets))
})

/**
 * The consumers' services the commands use, over a client of the consumers' role (CONSUMERS_DATABASE_URL,
 * `pay_consumer`: the only one that writes their tables, migrations/0096), which the commands' own
 * statements use too. The CLI's other client (DATABASE_URL) has applied pending migrations first.
 */
const ConsumerServicesLive = Layer.mergeAll(ConsumerStore.layer, DeadLetters.layer, Reconciliation.layer).pipe(
  Layer.provideMerge(ConsumersPostgresToolLive)
)
type ConsumerServices = ConsumerStore | DeadLetters | Reconciliation

/** A command that only reads and writes the database. */
const database = <E>(effect: Effect.Effect<void, E, SqlClient.SqlClient | ConsumerServices>) =>
  ({ effect: Effect.provide(effect, ConsumerServicesLive), kafka: false })

/** A command that talks to Kafka: its clients provided to it alone; main.ts imports the library first (`kafka`). */
const broker = <E>(effect: Effect.Effect<void, E, SqlClient.SqlClient | ConsumerServices | KafkaConsumer | KafkaAdmin>) =>
  ({ effect: Effect.provide(effect, Layer.merge(KafkaClientsLive, ConsumerServicesLive)), kafka: true })

/**
 * Dispatches the consumer commands; undefined when the arguments are not one of them, with their
 * exact number of arguments (an extra one is not ignored: the caller answers with the usage, exit 2).
 */
export const consumerCommand = (args: ReadonlyArray<string>) => {
  const [group, command, argument, extra] = args
  const count = args.length
  if (group === "reconcile" && count === 1) return database(reconcile)
  if (group === "replay" && command === "settlement" && count === 2) return broker(replay)
  if (group === "consumers" && command === "lag" && count <= 3) return broker(lag(argument))
  if (group === "consumers" && command === "offsets" && count === 2) return database(offsets)
  if (group === "consumers" && command === "reset" && argument !== undefined && extra !== undefined && (count === 4 || (count === 5 && args[4] === "--skip"))) {
    return broker(reset(argument, extra, count === 5))
  }
  if (group === "dlq" && command === "list" && count <= 3) return database(dlqList(argument))
  if (group === "dlq" && command === "redrive" && argument !== undefined && count === 3) return database(redriveCommand(argument))
  if (group === "dlq" && command === "dismiss" && argument !== undefined && extra !== undefined && count === 4) return database(dismissCommand(argument, extra))
  return undefined
}
