import { Effect, Schema } from "effect"

/**
 * Kafka did not do what was asked: the broker could not be reached, answered with an error, or did
 * not answer in time. `retriable` is true when trying the same call again later may succeed (the
 * broker was down or busy, a leader moved); false when it cannot (bad request, a topic with the
 * wrong shape, a closed client). `code` is the client's or the broker's error name when one is
 * known (`PLT_KFK_NETWORK`, `TOPIC_ALREADY_EXISTS`, `TIMEOUT`, ...).
 */
export class KafkaError extends Schema.TaggedError<KafkaError>()("KafkaError", {
  operation: Schema.String,
  message: Schema.String,
  retriable: Schema.Boolean,
  code: Schema.String
}) {}

/**
 * How a client reaches the cluster and how long it may wait. Every Kafka call made through these
 * services is bounded twice: by the client's own retry budget (`retries` x (`connectTimeout_ms` or
 * `requestTimeout_ms`) + delays) and by `operationTimeout_ms` around the whole call, so a broker
 * that accepts connections but never answers still produces a KafkaError instead of a hang.
 */
export interface KafkaClientOptions {
  /** Comma-separated `host:port` list (the `KAFKA_BROKERS` format). Use 127.0.0.1, not localhost. */
  readonly brokers: string
  /** Shows up in broker logs and quotas; one per role (publisher, consumer, admin). */
  readonly clientId: string
  readonly connectTimeout_ms: number
  /** Client-side bound on one request; also the broker-side bound on waiting for acks=all. */
  readonly requestTimeout_ms: number
  /** Retries of one request after a retriable error (0 = one attempt). */
  readonly retries: number
  readonly retryDelay_ms: number
  /** Outer bound on one service call, whatever the client does inside. */
  readonly operationTimeout_ms: number
}

/**
 * Loopback defaults. A broker on this machine answers in milliseconds; a dead one refuses the
 * connection at once, so 3 retries 250 ms apart fail a call in about a second, which is what
 * the publisher's backoff and the readiness probe want. `requestTimeout_ms` leaves room for a
 * leader election (a few seconds) before an acks=all produce gives up.
 */
export const defaultKafkaTimeouts = {
  connectTimeout_ms: 2_000,
  requestTimeout_ms: 10_000,
  retries: 3,
  retryDelay_ms: 250,
  operationTimeout_ms: 20_000
} as const

/** `"a:9092, b:9092"` -> `["a:9092", "b:9092"]`; an empty list is a configuration error. */
export const parseBrokers = (brokers: string): Effect.Effect<Array<string>, KafkaError> => {
  const list = brokers
    .split(",")
    .map((broker) => broker.trim())
    .filter((broker) => broker.length > 0)
  const bad = list.find((broker) => !/^[^\s:]+:\d{1,5}$/.test(broker))
  if (list.length === 0 || bad !== undefined) {
    return Effect.fail(
      new KafkaError({
        operation: "configure",
        message: `KAFKA_BROKERS must be a comma-separated host:port list, got ${JSON.stringify(brokers)}`,
        retriable: false,
        code: "CONFIG"
      })
    )
  }
  return Effect.succeed(list)
}

// --- turning the client's errors into KafkaError -------------------------------------------------
// @platformatic/kafka nests errors: MultipleErrors (an AggregateError: "produce failed 4 times")
// holding ResponseErrors holding ProtocolErrors (`apiId: "TOPIC_ALREADY_EXISTS"`, `canRetry`), or
// NetworkErrors whose `cause` is the socket error. We read those fields structurally so that no
// client type leaks into our signatures.

const leafLimit = 8
const depthLimit = 5

/** The innermost errors, at most `leafLimit`, depth-first. */
export const leafErrors = (error: unknown): Array<Error> => {
  const leaves: Array<Error> = []
  const visit = (current: unknown, depth: number): void => {
    if (leaves.length >= leafLimit) return
    if (current instanceof AggregateError && depth < depthLimit && current.errors.length > 0) {
      for (const inner of current.errors) visit(inner, depth + 1)
      return
    }
    if (current instanceof Error) leaves.push(current)
    else leaves.push(new Error(String(current)))
  }
  visit(error, 0)
  return leaves
}

const stringField = (error: Error, field: "code" | "apiId"): string | undefined => {
  if (!(field in error)) return undefined
  const value: unknown = Reflect.get(error, field)
  return typeof value === "string" ? value : undefined
}

// The client turns the broker's UNKNOWN_TOPIC_OR_PARTITION answer to a Metadata request into a bare
// UserError("Unknown topic <name>.") that keeps neither the error name nor a cause. Kafka counts it
// as retriable: a broker's metadata cache learns of a new topic a moment after CreateTopics returns.
const isUnknownTopic = (error: Error): boolean =>
  stringField(error, "code") === "PLT_KFK_USER" && error.message.startsWith("Unknown topic ")

/** The broker's error name (`UNKNOWN_TOPIC_OR_PARTITION`) or else the client's (`PLT_KFK_NETWORK`). */
export const errorCode = (error: Error): string =>
  isUnknownTopic(error) ? "UNKNOWN_TOPIC_OR_PARTITION" : (stringField(error, "apiId") ?? stringField(error, "code") ?? "UNKNOWN")

const isClientError = (error: Error): boolean => stringField(error, "code")?.startsWith("PLT_KFK_") ?? false

const canRetry = (error: Error): boolean => {
  if (!isClientError(error)) return false
  if (isUnknownTopic(error)) return true
  // PLT_KFK_USER: our own bad arguments (or a closed client); repeating them cannot help.
  if (stringField(error, "code") === "PLT_KFK_USER") return false
  return !("canRetry" in error && error.canRetry === false)
}

const describe = (error: Error): string => {
  const cause: unknown = "cause" in error ? error.cause : undefined
  const serverMessage: unknown = "serverErrorMessage" in error ? error.serverErrorMessage : undefined
  const parts = [error.message]
  if (typeof serverMessage === "string" && serverMessage.length > 0) parts.push(serverMessage)
  if (cause instanceof Error) parts.push(cause.message)
  return parts.join(": ")
}

/** Every leaf is the broker's `code` (e.g. deleting topics that are already gone). */
export const allLeavesAre = (error: unknown, code: string): boolean => leafErrors(error).every((leaf) => errorCode(leaf) === code)

export const toKafkaError = (operation: string, error: unknown): KafkaError => {
  if (error instanceof KafkaError) return error
  const leaves = leafErrors(error)
  const top = error instanceof Error ? error.message : String(error)
  const details = [...new Set(leaves.map(describe))].join("; ")
  const first = leaves[0]
  return new KafkaError({
    operation,
    message: details === top ? top : `${top} (${details})`,
    retriable: leaves.length > 0 && leaves.every(canRetry),
    code: first === undefined ? "UNKNOWN" : errorCode(first)
  })
}

/** Runs one client call: maps its rejection to KafkaError and bounds it by `timeout_ms`. */
export const kafkaCall = <A>(operation: string, timeout_ms: number, run: () => Promise<A>): Effect.Effect<A, KafkaError> =>
  Effect.tryPromise({ try: run, catch: (error) => toKafkaError(operation, error) }).pipe(
    boundedBy(operation, timeout_ms),
    Effect.withSpan(`kafka.${operation}`)
  )

/**
 * A sleep on the wall clock (setTimeout), not on Effect's Clock. Kafka calls are real network I/O:
 * their bounds must hold even inside a test that runs on a TestClock (`it.effect` provides one),
 * where `Effect.sleep`/`Effect.timeout` would only advance when the test moves the clock.
 */
export const wallClockSleep = (duration_ms: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), duration_ms)
    return Effect.sync(() => clearTimeout(timer))
  })

/** Fails with a retriable KafkaError (code TIMEOUT) when `self` has not finished in `timeout_ms`. */
export const boundedBy =
  (operation: string, timeout_ms: number) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | KafkaError, R> =>
    Effect.raceFirst(
      self,
      wallClockSleep(timeout_ms).pipe(
        Effect.andThen(
          Effect.fail(new KafkaError({ operation, message: `no answer within ${timeout_ms} ms`, retriable: true, code: "TIMEOUT" }))
        )
      )
    )

/** The base options every @platformatic/kafka client gets from ours. */
export const baseClientOptions = (options: KafkaClientOptions, bootstrapBrokers: Array<string>) => ({
  clientId: options.clientId,
  bootstrapBrokers,
  connectTimeout: options.connectTimeout_ms,
  requestTimeout: options.requestTimeout_ms,
  // `timeout` is what the client passes to the broker as the Produce/CreateTopics timeout.
  timeout: options.requestTimeout_ms,
  retries: options.retries,
  retryDelay: options.retryDelay_ms,
  // Cached metadata is refreshed at least this often, and at once after a stale-metadata error.
  metadataMaxAge: 5_000,
  // Never create a topic as a side effect of producing to or reading from it: a typo would
  // silently make a one-partition topic. Topics are created by KafkaAdmin.createTopic only.
  autocreateTopics: false
})

/** Closing is bounded too; a client that will not close is logged, never waited on forever. */
export const closeClient = (operation: string, close: () => Promise<void>) =>
  kafkaCall(operation, defaultKafkaTimeouts.operationTimeout_ms, close).pipe(
    Effect.catch((error) => Effect.logWarning(`kafka client did not close cleanly: ${error.message}`))
  )
