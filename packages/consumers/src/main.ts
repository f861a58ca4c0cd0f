/**
 * The consumers as a process of their own: `node packages/consumers/src/main.ts` (run it when the
 * server has `CONSUMERS_ENABLED=false`, or beside it: instances share the partitions of a group).
 *
 * Environment: CONSUMERS_DATABASE_URL (the role pay_consumer; derived from DATABASE_URL when unset:
 * infra Config.ts), CONSUMERS_DATABASE_POOL_SIZE, KAFKA_BROKERS, KAFKA_TOPIC_PREFIX,
 * KAFKA_SESSION_TIMEOUT_MS (6 000..300 000, default 10 000) and the `CONSUMER_*` settings of
 * `ConsumerConfig`. It does not run migrations (the server owns the schema). Its figures (lag,
 * parked records, reconciliation differences, the runtime's) on `/metrics` at METRICS_PORT when
 * that is set (a listener of its own, never the server's 9464 by default); logs as the server's
 * (JSON with trace ids, LOG_LEVEL), traces to OTEL_EXPORTER_OTLP_ENDPOINT when set.
 *
 * Its Postgres pool is measured like the server's (`db_client_connections`, DatabasePoolSaturated).
 *
 * SIGTERM/SIGINT: `NodeRuntime.runMain` interrupts the layer; the record in flight finishes (its
 * transaction is uninterruptible), the group is left, the pool closes, and the process exits 0 (a
 * clean stop is not a failure; runMain's default is 130, which a process manager records as one).
 * A failure (at start-up: a setting out of bounds, METRICS_PORT taken; or later) is logged as one
 * JSON line like every other (`consumers process failed`, with `error`) and exits 1.
 *
 * Fault injection (tests only): `CONSUMER_FAULT_CRASH_AT=before_transaction|inside_transaction|after_transaction`
 * with `CONSUMER_FAULT_CRASH_AT_RECORD=N` makes the process SIGKILL itself at the Nth record the settlement consumer
 * handles: before its transaction, inside it after the record's effect (mid-batch: records
 * before it applied in the same, uncommitted transaction), or after the transaction committed
 * and before the Kafka commit.
 */
import {
  boundedInt,
  ConsumersDatabasePoolMetricsLive,
  defaultKafkaAdminTimeouts,
  defaultKafkaConsumerOptions,
  defaultKafkaProducerLimits,
  KafkaAdmin,
  KafkaBrokers,
  KafkaConsumer,
  JsonLoggingLive,
  KafkaProducer,
  MetricsServerWhenConfigured,
  checkDatabaseRole,
  ConsumersPostgresLive,
  databaseClockLayer,
  ProcessMetricsLive,
  preloadKafkaLibrary,
  runProcessMain,
  TracingLive
} from "@pay/infra"
import { Config, Effect, Layer } from "effect"
import type { ConsumerFaults } from "./ConsumerModel.ts"
import { consumersLayer, consumersWrittenTables } from "./ConsumersProcess.ts"

const CrashAt = Config.Literals(["none", "before_transaction", "inside_transaction", "after_transaction"], "CONSUMER_FAULT_CRASH_AT").pipe(Config.withDefault("none" as const))
const CrashAtRecord = boundedInt("CONSUMER_FAULT_CRASH_AT_RECORD", { min: 1, max: 1_000_000 }, 1)

const crash = Effect.gen(function* () {
  yield* Effect.logWarning("CONSUMER_FAULT_CRASH_AT: killing this process (SIGKILL)")
  // SIGKILL: no finalizer runs, like an OOM kill; Postgres aborts an open transaction.
  yield* Effect.sync(() => process.kill(process.pid, "SIGKILL"))
  return yield* Effect.never
})

const faultsFromEnv = Effect.gen(function* () {
  const at = yield* CrashAt
  const record = yield* CrashAtRecord
  let seen = 0
  const maybeCrash = () => Effect.suspend(() => (++seen >= record ? crash : Effect.void))
  const faults: ConsumerFaults = at === "before_transaction"
    ? { beforeTransaction: maybeCrash }
    : at === "inside_transaction"
    ? { insideTransaction: maybeCrash }
    : at === "after_transaction"
    ? { afterTransaction: maybeCrash }
    : {}
  return faults
})

/** How long the group waits for a silent (crashed) instance before moving its partitions. */
const SessionTimeout_ms = boundedInt("KAFKA_SESSION_TIMEOUT_MS", { min: 6_000, max: 300_000 }, defaultKafkaConsumerOptions.sessionTimeout_ms)

const KafkaClientsLive = Layer.unwrap(
  Effect.gen(function* () {
    const brokers = yield* KafkaBrokers
    const sessionTimeout_ms = yield* SessionTimeout_ms
    const group = {
      sessionTimeout_ms,
      rebalanceTimeout_ms: Math.max(defaultKafkaConsumerOptions.rebalanceTimeout_ms, sessionTimeout_ms),
      heartbeatInterval_ms: Math.min(defaultKafkaConsumerOptions.heartbeatInterval_ms, Math.floor(sessionTimeout_ms / 3))
    }
    return Layer.mergeAll(
      KafkaConsumer.layerWith({ brokers, clientId: "pay-consumers", ...defaultKafkaConsumerOptions, ...group }),
      KafkaProducer.layerWith({ brokers, clientId: "pay-consumers-dlq", ...defaultKafkaProducerLimits }),
      KafkaAdmin.layerWith({ brokers, clientId: "pay-consumers-admin", ...defaultKafkaAdminTimeouts })
    )
  })
)

const ConsumersProcess = Layer.unwrap(
  Effect.map(faultsFromEnv, (faults) =>
    // One clock with the server's: the database's (infra DatabaseClock.ts).
    Layer.mergeAll(consumersLayer(faults), MetricsServerWhenConfigured, ProcessMetricsLive, ConsumersDatabasePoolMetricsLive).pipe(Layer.provide(databaseClockLayer("background"))))
).pipe(
  Layer.provide(Layer.mergeAll(checkDatabaseRole("CONSUMERS_DATABASE_URL", consumersWrittenTables).pipe(Layer.provideMerge(ConsumersPostgresLive)), KafkaClientsLive)),
  Layer.provide(Layer.merge(JsonLoggingLive, TracingLive("payments-consumers")))
)

// The Kafka library imported before anything connects (infra Kafka.ts, preloadKafkaLibrary).
Effect.andThen(preloadKafkaLibrary, Layer.launch(ConsumersProcess)).pipe(runProcessMain("consumers process"))
