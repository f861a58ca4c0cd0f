/**
 * The outbox publisher as a process of its own: `node packages/outbox/src/main.ts`.
 *
 * Environment: METRICS_PORT (its /metrics, only when set), LOG_LEVEL, OTEL_EXPORTER_OTLP_ENDPOINT (docs/observability.md),
 * PUBLISHER_DATABASE_URL and PUBLISHER_DATABASE_POOL_SIZE (the role pay_publisher, migrations/0108;
 * derived from DATABASE_URL when unset: infra Config.ts), KAFKA_BROKERS, KAFKA_TOPIC_PREFIX and the
 * `OUTBOX_*` settings of `PublisherConfig`. It does not run migrations (the server owns the
 * schema); started before them, it logs the SQL errors and retries with backoff.
 *
 * SIGTERM/SIGINT: `runProcessMain` (infra) interrupts the launched layer; the batch in hand finishes
 * (it is uninterruptible and bounded by the producer's timeouts), then the producer and the
 * pool close.
 *
 * Fault injection (tests only): `OUTBOX_FAULT_CRASH_AFTER_ACK=1` makes the process SIGKILL itself
 * right after the broker acknowledged its first batch and before the rows are marked published:
 * a real crash in the at-least-once window.
 */
import {
  defaultKafkaAdminTimeouts,
  defaultKafkaProducerLimits,
  KafkaAdmin,
  KafkaBrokers,
  JsonLoggingLive,
  KafkaProducer,
  MetricsServerWhenConfigured,
  DatabaseClockLive,
  ProcessMetricsLive,
  PublisherDatabasePoolMetricsLive,
  PublisherPostgresLive,
  preloadKafkaLibrary,
  runProcessMain,
  TracingLive
} from "@pay/infra"
import { Config, Effect, Layer } from "effect"
import { outboxPublisherLayer, PublisherRoleCheck } from "./PublisherConfig.ts"

const CrashAfterAck = Config.Boolean("OUTBOX_FAULT_CRASH_AFTER_ACK").pipe(Config.withDefault(false))

const crashAfterAck = Effect.gen(function* () {
  yield* Effect.logWarning("OUTBOX_FAULT_CRASH_AFTER_ACK: killing this process after the ack, before marking")
  // SIGKILL: no finalizer runs, the transaction is neither committed nor rolled back by us
  // (Postgres aborts it when the connection drops), exactly like a crash or an OOM kill.
  yield* Effect.sync(() => process.kill(process.pid, "SIGKILL"))
  // The signal is delivered asynchronously; never go on to mark the rows.
  return yield* Effect.never
})

const KafkaClientsLive = Layer.unwrap(
  Effect.gen(function* () {
    const brokers = yield* KafkaBrokers
    return Layer.mergeAll(
      KafkaProducer.layerWith({ brokers, clientId: "pay-outbox-publisher", ...defaultKafkaProducerLimits }),
      KafkaAdmin.layerWith({ brokers, clientId: "pay-outbox-admin", ...defaultKafkaAdminTimeouts })
    )
  })
)

const PublisherProcess = Layer.unwrap(
  Effect.gen(function* () {
    const crash = yield* CrashAfterAck
    // Its figures (backlog, age, publish counters, runtime) on METRICS_PORT when set.
    // Retention compares published_at with the Clock: the database's (infra DatabaseClock.ts).
    return Layer.mergeAll(outboxPublisherLayer(crash ? { afterAck: crashAfterAck } : {}), MetricsServerWhenConfigured, ProcessMetricsLive, PublisherDatabasePoolMetricsLive)
      .pipe(Layer.provide(DatabaseClockLive))
  })
).pipe(
  // The role's grants first: a PUBLISHER_DATABASE_URL that may not mark rows stops the process, naming it.
  Layer.provide(Layer.mergeAll(PublisherRoleCheck.pipe(Layer.provideMerge(PublisherPostgresLive)), KafkaClientsLive)),
  Layer.provide(Layer.merge(JsonLoggingLive, TracingLive("payments-outbox-publisher"))))

// The Kafka library imported before anything connects (infra Kafka.ts, preloadKafkaLibrary).
Effect.andThen(preloadKafkaLibrary, Layer.launch(PublisherProcess)).pipe(runProcessMain("outbox publisher"))
