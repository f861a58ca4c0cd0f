import { failureText, KafkaAdmin, type KafkaConsumer, KafkaTopicPrefix } from "@pay/infra"
import { OutboxTopics, PaymentsEventsTopicConfig, type PaymentsEventsTopicSettings, paymentsEventsTopic } from "@pay/outbox/OutboxTopics"
import { makeWebhookConsumerHandler, WEBHOOK_CONSUMER_NAME } from "@pay/webhooks"
import { Context, Duration, Effect, Layer, Ref, Schedule, type Scope } from "effect"
import { SqlClient } from "effect/sql"
import { ConsumerOptionsFromEnv, ConsumersEnabled } from "./ConsumerConfig.ts"
import { type ConsumerFaults, type ConsumerStatus } from "./ConsumerModel.ts"
import { initialStatus, reportLag, runConsumer } from "./ConsumerRunner.ts"
import { makeReconciliation, type ReconciliationRow } from "./Reconciliation.ts"
import { runSettlementLive } from "./SettlementConsumer.ts"

/** The dead-letter topic beside the events topic: `<prefix>payments.events.dlq`. */
export const deadLetterTopic = (prefix: string): string => `${paymentsEventsTopic(prefix)}.dlq`
/** One partition: parked records are rare and read by operators, in order. */
export const DEAD_LETTER_TOPIC_PARTITIONS = 1

/** The health signal of the consumers running in this process (readiness, `/health`). */
export class ConsumersStatus extends Context.Service<ConsumersStatus, {
  readonly settlement: Effect.Effect<ConsumerStatus>
  readonly webhooks?: Effect.Effect<ConsumerStatus>
}>()("consumers/ConsumersStatus") {}

/**
 * The events topic (retried until Kafka answers, like the publisher does), then the DLQ topic.
 * True when the DLQ topic exists; otherwise parking uses the table only (producing to a missing
 * topic would fail every park and stall the partition).
 */
const ensureTopics = (prefix: string, topicSettings: PaymentsEventsTopicSettings) =>
  Effect.gen(function* () {
    const admin = yield* KafkaAdmin
    // The topic's replication and retention as the publisher makes it (a consumer may start first).
    yield* OutboxTopics.ensureWithRetry(prefix, topicSettings, { waiting: "the consumers: no event is consumed until then (consumer_lag_unavailable_total rises)" })
    return yield* admin.createTopic({ topic: deadLetterTopic(prefix), partitions: DEAD_LETTER_TOPIC_PARTITIONS }).pipe(
      Effect.retry({ times: 20, schedule: Schedule.spaced("500 millis") }),
      Effect.as(true),
      Effect.catch((error) =>
        Effect.logError("cannot create the dead-letter topic; parking in the table only").pipe(
          Effect.annotateLogs({ error: error.message }),
          Effect.as(false)
        )
      )
    )
  })

const RECONCILE_LOGGED_ROWS_MAX = 10

/** One differing row in words: merchant, currency, net, count and refunded per source (projection / ledger / payments), the payable, the refunds that do not fit. */
export const describeDifference = (row: ReconciliationRow): string =>
  `${row.merchant_id} ${row.currency}: net ${row.projection_net_minor}/${row.ledger_net_minor}/${row.payments_net_minor}, ` +
  `count ${row.projection_count}/${row.ledger_count}/${row.payments_count}, ` +
  `refunded ${row.projection_refunded_minor}/${row.ledger_refunded_minor}/${row.refunds_refunded_minor} (projection/ledger/payments), ` +
  `payable ${row.payable_balance_minor}/${row.payable_expected_minor} (balance/expected), ` +
  `payments with refunds past the capture or unreversed ${row.refund_mismatched_payment_count}`

/** Keeps `reconciliation_differences` current in this process (errors logged, never fatal). */
const reconcileEvery = (interval_ms: number) =>
  Effect.gen(function* () {
    const reconciliation = makeReconciliation(yield* SqlClient.SqlClient)
    while (true) {
      yield* Effect.sleep(Duration.millis(interval_ms))
      yield* reconciliation.reconcile().pipe(
        Effect.flatMap((report) =>
          report.differences.length === 0 ? Effect.void : Effect.logWarning("reconciliation found differences").pipe(
            Effect.annotateLogs({
              generation: report.generation,
              difference_count: report.differences.length,
              in_flight_events: report.in_flight_events,
              // Which rows, while they differ: a transient (lag) is gone by the time an operator runs
              // `pnpm cli reconcile` (outside operator review). At most the first 10.
              differences: report.differences.slice(0, RECONCILE_LOGGED_ROWS_MAX).map(describeDifference).join("; ")
            })
          )),
        Effect.catch((error) => Effect.logWarning("reconciliation failed").pipe(Effect.annotateLogs({ error: failureText(error) })))
      )
    }
  })

/**
 * The consumers as part of a process (the server, or `main.ts`): ensures the topics in the
 * background, then runs the webhooks consumer and the settlement consumer and its lag gauge until the layer is released
 * (SIGTERM: the record in flight finishes, the batch is not committed to Kafka, the group is left).
 * Needs `SqlClient`, `KafkaConsumer`, `KafkaProducer` (the DLQ topic) and `KafkaAdmin`.
 */
/** The settlement consumer's status name before the live generation is read. */
const settlementPending = "settlement"

export const consumersLayer = (faults: ConsumerFaults = {}) =>
  Layer.effect(
    ConsumersStatus,
    Effect.gen(function* () {
      const prefix = yield* KafkaTopicPrefix
      const options = yield* ConsumerOptionsFromEnv
      const topicSettings = yield* PaymentsEventsTopicConfig
      // "settlement" until runSettlementLive names the live generation's consumer (settlement.g<N>).
      const status = yield* Ref.make(initialStatus(settlementPending))
      const webhookStatus = yield* Ref.make(initialStatus(WEBHOOK_CONSUMER_NAME))
      const topic = paymentsEventsTopic(prefix)
      const run: Effect.Effect<void, never, SqlClient.SqlClient | KafkaConsumer | KafkaAdmin | Scope.Scope> = Effect.gen(function* () {
        // The lag of the consumers running here; the settlement one once its generation is known
        // (the placeholder name has no stored offsets: its "lag" would be the whole topic).
        const lagged = () => {
          const settlement = Ref.getUnsafe(status).name
          return settlement === settlementPending ? [WEBHOOK_CONSUMER_NAME] : [settlement, WEBHOOK_CONSUMER_NAME]
        }
        // Lag and reconciliation reported from the start, before the topic is there: a process
        // started while Kafka is down exported none of the consumers' series, and
        // PaymentsWorkerNotReporting paged "runs nowhere" (outside operator drill); now each failed
        // lag measurement counts (consumer_lag_unavailable_total) and reconciliation runs on.
        yield* Effect.forkScoped(reportLag(lagged, topic, options.lagInterval_ms))
        yield* Effect.forkScoped(reconcileEvery(options.reconcileInterval_ms))
        const dlqReady = yield* ensureTopics(prefix, topicSettings)
        const dlqTopic = dlqReady ? deadLetterTopic(prefix) : null
        // Webhooks (docs/webhooks.md): each event's deliveries are queued in the record's
        // transaction; the sender (packages/webhooks) sends them. A group of its own.
        const webhooks = yield* makeWebhookConsumerHandler
        // Injected faults (tests) count the settlement consumer's records only: shared with the
        // webhooks consumer, the Nth record would be whichever consumer got there first.
        yield* Effect.forkScoped(runConsumer({ topic, groupId: `${prefix}${webhooks.name}`, handler: webhooks, dlqTopic, options }, webhookStatus))
        yield* runSettlementLive({ topic, prefix, dlqTopic, options, faults }, status)
      })
      yield* Effect.forkScoped(run)
      return ConsumersStatus.of({ settlement: Ref.get(status), webhooks: Ref.get(webhookStatus) })
    })
  )

/**
 * Tables the consumers write, whose INSERT grant their database role is checked for at start
 * (checkDatabaseRole: the claims of both consumers, the webhooks consumer's deliveries).
 */
export const consumersWrittenTables = ["processed_events", "webhook_deliveries"] as const

/** The layer the server adds: on unless `CONSUMERS_ENABLED=false` (then run `node packages/consumers/src/main.ts`). */
export const ConsumersLive = Layer.unwrap(
  Effect.map(ConsumersEnabled, (enabled) =>
    enabled
      ? consumersLayer()
      : Layer.succeed(ConsumersStatus, ConsumersStatus.of({ settlement: Effect.succeed(initialStatus("settlement (disabled here)")) })))
)
