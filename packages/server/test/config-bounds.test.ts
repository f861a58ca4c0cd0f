// Every setting has bounds, checked when the configuration is read (at start-up), with a message
// that names the variable and its bounds: a COMPLETER_BATCH of 5000 used to pass start-up and then
// fail every completer round.
import { assert, describe, it } from "@effect/vitest"
import { AcquirerOptionsConfig } from "@pay/acquirer"
import { CompleterRetryPolicyConfig, IdempotencyCacheSecretConfig, IdempotencyOptionsConfig } from "@pay/idempotency"
import { DatabasePoolSize, KafkaTopicPrefix } from "@pay/infra"
import { DefaultFeeScheduleConfig } from "@pay/settlement"
import { SenderConfig } from "@pay/webhooks"
import { type Config, ConfigProvider, Effect, Redacted, Result } from "effect"
import { ExpiryBatch, ExpiryInterval } from "../src/workers/AuthorizationExpiry.ts"
import { SocketLimitsConfig } from "../src/http/Socket.ts"
import { IdempotencyWorkerConfig } from "../src/workers/IdempotencyWorkers.ts"

const read = <A>(config: Config.Config<A>, env: Record<string, string>) =>
  Effect.result(config.parse(ConfigProvider.fromEnv({ env })))

const refusal = <A>(config: Config.Config<A>, env: Record<string, string>) =>
  Effect.gen(function* () {
    const result = yield* read(config, env)
    return Result.isFailure(result) ? String(result.failure) : assert.fail(`accepted ${JSON.stringify(env)}`)
  })

describe("bounded configuration", () => {
  it.effect("defaults when unset; values inside the bounds are taken", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* IdempotencyWorkerConfig.parse(ConfigProvider.fromEnv({ env: {} })), {
        completerInterval_ms: 5_000,
        abandonedAfter_ms: 10_000,
        completerBatch: 50,
        reaperInterval_ms: 3_600_000
      })
      const custom = yield* IdempotencyWorkerConfig.parse(ConfigProvider.fromEnv({ env: { COMPLETER_BATCH: "1000" } }))
      assert.strictEqual(custom.completerBatch, 1_000)
      assert.deepStrictEqual(yield* CompleterRetryPolicyConfig.parse(ConfigProvider.fromEnv({ env: {} })), {
        attemptsMax: 8,
        backoffBase_ms: 5_000,
        backoffMax_ms: 600_000
      })
      assert.isUndefined(yield* IdempotencyCacheSecretConfig.parse(ConfigProvider.fromEnv({ env: {} })), "unset: a random secret per process")
      const secret = yield* IdempotencyCacheSecretConfig.parse(ConfigProvider.fromEnv({ env: { IDEMPOTENCY_CACHE_SECRET: "s".repeat(32) } }))
      assert.strictEqual(secret === undefined ? undefined : Redacted.value(secret), "s".repeat(32))
    }))

  it.effect("a value out of bounds is refused when read, naming the variable and its bounds", () =>
    Effect.gen(function* () {
      assert.include(yield* refusal(IdempotencyWorkerConfig, { COMPLETER_BATCH: "5000" }), "COMPLETER_BATCH must be an integer between 1 and 1000")
      // A delay past 48 h is refused when read, like the rest (it passed and threw a RangeError with
      // a stack trace when the sender started: outside code review); 48 h itself is taken.
      assert.include(yield* refusal(SenderConfig, { WEBHOOK_RETRY_SCHEDULE_MS: "0,5000,172800001" }), "WEBHOOK_RETRY_SCHEDULE_MS: each delay must be at most 172800000 ms")
      assert.deepStrictEqual((yield* SenderConfig.parse(ConfigProvider.fromEnv({ env: { WEBHOOK_RETRY_SCHEDULE_MS: "0,172800000" } }))).retrySchedule_ms, [0, 172_800_000])
      assert.include(yield* refusal(ExpiryBatch, { EXPIRY_BATCH_MAX: "1001" }), "EXPIRY_BATCH_MAX must be an integer between 1 and 1000")
      assert.include(yield* refusal(ExpiryInterval, { EXPIRY_INTERVAL_MS: "-1" }), "EXPIRY_INTERVAL_MS must be 0 (off) or an integer between 1000 and 86400000")
      assert.include(yield* refusal(IdempotencyWorkerConfig, { COMPLETER_INTERVAL_MS: "0" }), "COMPLETER_INTERVAL_MS must be an integer between 100")
      assert.include(yield* refusal(IdempotencyOptionsConfig, { IDEMPOTENCY_LOCK_TIMEOUT_MS: "-1" }), "IDEMPOTENCY_LOCK_TIMEOUT_MS must be an integer between 1 and 600000")
      assert.include(yield* refusal(AcquirerOptionsConfig, { ACQUIRER_TIMEOUT_MS: "999999" }), "ACQUIRER_TIMEOUT_MS must be an integer between 1 and 120000")
      assert.include(yield* refusal(DefaultFeeScheduleConfig, { SETTLEMENT_FEE_BPS: "10001" }), "SETTLEMENT_FEE_BPS must be an integer between 0 and 10000")
      assert.include(yield* refusal(DatabasePoolSize, { DATABASE_POOL_SIZE: "1000" }), "DATABASE_POOL_SIZE must be an integer between 1 and 200")
      assert.include(yield* refusal(CompleterRetryPolicyConfig, { COMPLETER_ATTEMPTS_MAX: "0" }), "COMPLETER_ATTEMPTS_MAX must be an integer between 1 and 100")
      assert.include(yield* refusal(CompleterRetryPolicyConfig, { COMPLETER_BACKOFF_MAX_MS: "86400001" }), "COMPLETER_BACKOFF_MAX_MS must be an integer between 10 and 86400000")
      assert.include(yield* refusal(IdempotencyCacheSecretConfig, { IDEMPOTENCY_CACHE_SECRET: "too-short" }), "IDEMPOTENCY_CACHE_SECRET must be empty (a random secret per process) or at least 32")
      assert.include(yield* refusal(IdempotencyCacheSecretConfig, { IDEMPOTENCY_CACHE_SECRET: "x".repeat(1_025) }), "IDEMPOTENCY_CACHE_SECRET must be at most 1024 characters")
      assert.include(yield* refusal(KafkaTopicPrefix, { KAFKA_TOPIC_PREFIX: "bad prefix/" }), "KAFKA_TOPIC_PREFIX must be letters, digits")
      // Each within its bounds, together impossible: Node refused the server when it started listening.
      assert.include(
        yield* refusal(SocketLimitsConfig, { HTTP_HEADERS_TIMEOUT_MS: "40000", HTTP_REQUEST_TIMEOUT_MS: "30000" }),
        "HTTP_HEADERS_TIMEOUT_MS (40000) exceeds HTTP_REQUEST_TIMEOUT_MS (30000)"
      )
      assert.strictEqual((yield* SocketLimitsConfig.parse(ConfigProvider.fromEnv({ env: { HTTP_HEADERS_TIMEOUT_MS: "30000" } }))).headersTimeout_ms, 30_000)
    }))

  // The variable used to be read as a structured array: the environment's plain string fell back to
  // "no faults" without a word, and the kill -9 test of settlement ran against an acquirer that
  // answered every call (it passed only when the kill beat the commit).
  it.effect("ACQUIRER_FAULTS is read from the comma-separated string the environment holds; an unknown name or too many are refused", () =>
    Effect.gen(function* () {
      const faults = (env: Record<string, string>) => Effect.map(AcquirerOptionsConfig.parse(ConfigProvider.fromEnv({ env })), (o) => o.faults)
      assert.deepStrictEqual(yield* faults({}), {})
      assert.deepStrictEqual(yield* faults({ ACQUIRER_FAULTS: "capture_answer_lost_first_call" }), { failCaptureAfterPerforming: "first_call" })
      assert.deepStrictEqual(yield* faults({ ACQUIRER_FAULTS: "authorize_answer_lost_every_call,unavailable" }), {
        failAuthorizeAfterPerforming: "every_call",
        unavailable: true
      })
      assert.include(yield* refusal(AcquirerOptionsConfig, { ACQUIRER_FAULTS: "capture_answer_lost" }), "capture_answer_lost_first_call")
      assert.include(yield* refusal(AcquirerOptionsConfig, { ACQUIRER_FAULTS: Array.from({ length: 10 }, () => "unavailable").join(",") }), "ACQUIRER_FAULTS names at most 9 faults")
      assert.deepStrictEqual(yield* faults({ ACQUIRER_FAULTS: "refund_answer_lost_first_call,void_answer_lost_every_call" }), {
        failVoidAfterPerforming: "every_call",
        failRefundAfterPerforming: "first_call"
      })
    }))
})
