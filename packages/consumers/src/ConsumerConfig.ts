import { assertWithin, boundedInt, type IntBounds } from "@pay/infra"
import { Config, Effect } from "effect"

/**
 * The bounds of every consumer setting (TIGER_STYLE: a limit on everything), shared by the
 * environment (`CONSUMER_*`, checked at start-up) and by `assertConsumerOptions` (options handed
 * directly by tests and the CLI).
 */
export const consumerBounds = {
  batch_max: { min: 1, max: 1_000 },
  transactionRecords_max: { min: 1, max: 1_000 },
  pollTimeout_ms: { min: 10, max: 60_000 },
  kafkaCommitInterval_ms: { min: 0, max: 60_000 },
  attempt_max: { min: 1, max: 20 },
  backoffBase_ms: { min: 1, max: 60_000 },
  backoffMax_ms: { min: 1, max: 300_000 },
  recordTimeout_ms: { min: 100, max: 300_000 },
  restartBackoffMax_ms: { min: 10, max: 300_000 },
  lagInterval_ms: { min: 100, max: 600_000 },
  reconcileInterval_ms: { min: 1_000, max: 86_400_000 }
} as const satisfies Record<string, IntBounds>

export interface ConsumerOptions {
  /** Records handled per poll; the Kafka commit follows the batch. */
  readonly batch_max: number
  /**
   * Records of one partition handled in ONE transaction (one COMMIT, the offset stored once); a
   * failure inside rolls it back and the records are handled one transaction each. 1: always one each.
   */
  readonly transactionRecords_max: number
  /** How long a poll waits for records before returning empty. */
  readonly pollTimeout_ms: number
  /**
   * How often, at most, the handled records' offsets are committed to Kafka (in the background,
   * and always after an empty poll); 0: after every poll. The database's stored offsets are the
   * position (a consumer seeks its group to them on start; a record below them is skipped), so a
   * Kafka commit that lags behind costs only re-reading, never a lost or doubled effect.
   */
  readonly kafkaCommitInterval_ms: number
  /** Attempts of one record before it is parked (a decode failure is parked at once). */
  readonly attempt_max: number
  readonly backoffBase_ms: number
  readonly backoffMax_ms: number
  /** Bound on one attempt at one record (its whole transaction). */
  readonly recordTimeout_ms: number
  /** Bound on the wait before a failed subscription is started again. */
  readonly restartBackoffMax_ms: number
  /** How often the lag gauge is refreshed. */
  readonly lagInterval_ms: number
  /** How often the server reconciles (the `reconciliation_differences` gauge). */
  readonly reconcileInterval_ms: number
}

export const defaultConsumerOptions: ConsumerOptions = {
  batch_max: 1_000,
  transactionRecords_max: 1_000,
  pollTimeout_ms: 500,
  kafkaCommitInterval_ms: 1_000,
  attempt_max: 5,
  backoffBase_ms: 100,
  backoffMax_ms: 5_000,
  recordTimeout_ms: 10_000,
  restartBackoffMax_ms: 10_000,
  lagInterval_ms: 5_000,
  reconcileInterval_ms: 60_000
}

export const assertConsumerOptions = (options: ConsumerOptions): void => {
  assertWithin("consumer", { ...options }, consumerBounds)
  if (options.backoffBase_ms > options.backoffMax_ms) throw new RangeError("consumer: backoffBase_ms above backoffMax_ms")
}

/** The options from `CONSUMER_*` environment variables. */
export const ConsumerOptionsFromEnv: Config.Config<ConsumerOptions> = Config.all({
  batch_max: boundedInt("CONSUMER_BATCH_SIZE", consumerBounds.batch_max, defaultConsumerOptions.batch_max),
  transactionRecords_max: boundedInt(
    "CONSUMER_TRANSACTION_RECORDS_MAX",
    consumerBounds.transactionRecords_max,
    defaultConsumerOptions.transactionRecords_max
  ),
  pollTimeout_ms: boundedInt("CONSUMER_POLL_TIMEOUT_MS", consumerBounds.pollTimeout_ms, defaultConsumerOptions.pollTimeout_ms),
  kafkaCommitInterval_ms: boundedInt(
    "CONSUMER_KAFKA_COMMIT_INTERVAL_MS",
    consumerBounds.kafkaCommitInterval_ms,
    defaultConsumerOptions.kafkaCommitInterval_ms
  ),
  attempt_max: boundedInt("CONSUMER_ATTEMPTS_MAX", consumerBounds.attempt_max, defaultConsumerOptions.attempt_max),
  backoffBase_ms: boundedInt("CONSUMER_BACKOFF_BASE_MS", consumerBounds.backoffBase_ms, defaultConsumerOptions.backoffBase_ms),
  backoffMax_ms: boundedInt("CONSUMER_BACKOFF_MAX_MS", consumerBounds.backoffMax_ms, defaultConsumerOptions.backoffMax_ms),
  recordTimeout_ms: boundedInt("CONSUMER_RECORD_TIMEOUT_MS", consumerBounds.recordTimeout_ms, defaultConsumerOptions.recordTimeout_ms),
  restartBackoffMax_ms: boundedInt(
    "CONSUMER_RESTART_BACKOFF_MAX_MS",
    consumerBounds.restartBackoffMax_ms,
    defaultConsumerOptions.restartBackoffMax_ms
  ),
  lagInterval_ms: boundedInt("CONSUMER_LAG_INTERVAL_MS", consumerBounds.lagInterval_ms, defaultConsumerOptions.lagInterval_ms),
  reconcileInterval_ms: boundedInt(
    "CONSUMER_RECONCILE_INTERVAL_MS",
    consumerBounds.reconcileInterval_ms,
    defaultConsumerOptions.reconcileInterval_ms
  )
})

/** Whether the server runs the consumers in its own process (the issue: configurable; default on). */
export const ConsumersEnabled = Config.Boolean("CONSUMERS_ENABLED").pipe(Config.withDefault(true))

/** Exponential backoff, capped: base·2^(attempt-1), at most max. */
export const backoff_ms = (attempt: number, base_ms: number, max_ms: number): number =>
  Math.min(max_ms, base_ms * 2 ** Math.min(30, Math.max(0, attempt - 1)))

export const checkedOptions = (options: ConsumerOptions) =>
  Effect.sync(() => {
    assertConsumerOptions(options)
    return options
  })
