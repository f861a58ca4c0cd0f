import { ABANDONED_LIMIT_MAX, type AbandonedKey, IdempotencyKeys, storedAsIs } from "@pay/idempotency"
import { boundedInt } from "@pay/infra"
import { decodePaymentOperation, PaymentUseCases } from "@pay/payments"
import { Config, Duration, Effect, Layer, Result } from "effect"
import { randomUUID } from "node:crypto"
import { renderOutcome } from "../payments/Render.ts"
import { decodeWebhookOperation, makeWebhookOperations, type WebhookOperation } from "../webhooks/Operations.ts"

export interface IdempotencyWorkerOptions {
  /** How often the completer looks for abandoned keys. */
  readonly completerInterval_ms: number
  /** A key counts as abandoned once its lease is gone and it has been idle this long. */
  readonly abandonedAfter_ms: number
  /** Keys finished per round (bounded by what one `abandoned` query may return). */
  readonly completerBatch: number
  /** How often the reaper deletes keys past the retention. */
  readonly reaperInterval_ms: number
}

/**
 * | variable                        | default | bounds            |
 * | ------------------------------- | ------- | ----------------- |
 * | `COMPLETER_INTERVAL_MS`         | 5000    | 100..3600000      |
 * | `COMPLETER_ABANDONED_AFTER_MS`  | 10000   | 100..86400000     |
 * | `COMPLETER_BATCH`               | 50      | 1..1000           |
 * | `REAPER_INTERVAL_MS`            | 1 h     | 1000..86400000    |
 */
export const idempotencyWorkerBounds = {
  completerInterval_ms: { min: 100, max: 60 * 60 * 1_000 },
  abandonedAfter_ms: { min: 100, max: 24 * 60 * 60 * 1_000 },
  completerBatch: { min: 1, max: ABANDONED_LIMIT_MAX },
  reaperInterval_ms: { min: 1_000, max: 24 * 60 * 60 * 1_000 }
} as const

export const IdempotencyWorkerConfig: Config.Config<IdempotencyWorkerOptions> = Config.all({
  completerInterval_ms: boundedInt("COMPLETER_INTERVAL_MS", idempotencyWorkerBounds.completerInterval_ms, 5_000),
  abandonedAfter_ms: boundedInt("COMPLETER_ABANDONED_AFTER_MS", idempotencyWorkerBounds.abandonedAfter_ms, 10_000),
  completerBatch: boundedInt("COMPLETER_BATCH", idempotencyWorkerBounds.completerBatch, 50),
  reaperInterval_ms: boundedInt("REAPER_INTERVAL_MS", idempotencyWorkerBounds.reaperInterval_ms, 60 * 60 * 1_000)
})

/**
 * The completer finishes idempotency keys that a client abandoned mid-way (a crash, an unknown
 * acquirer outcome nobody retried): it decodes the operation stored with the key, takes the key's
 * lease and re-runs the use case from its recovery point, storing the rendered outcome for the
 * client's eventual retry. The reaper deletes keys past the retention. Both are bounded loops,
 * interrupted with the server (SIGTERM).
 */
export const IdempotencyWorkersLive = Layer.effectDiscard(
  Effect.gen(function* () {
    const options = yield* IdempotencyWorkerConfig
    const keys = yield* IdempotencyKeys
    const useCases = yield* PaymentUseCases

    const webhookOperations = yield* makeWebhookOperations

    /** A webhook operation (one transaction: nothing durable happened unless it finished). */
    const completeWebhook = (key: AbandonedKey, operation: WebhookOperation) =>
      keys.resume(key, storedAsIs, (execution) => webhookOperations.execute(key.merchantId, operation, execution)).pipe(
        Effect.tap((outcome) => Effect.logInfo("completer finished an abandoned key", { key_id: key.id, path: key.path, status: outcome.response.status })),
        Effect.catchCause((cause) => Effect.logWarning("completer could not finish a key yet", { key_id: key.id, cause }))
      )

    const completeOne = (key: AbandonedKey) => {
      const webhookOperation = decodeWebhookOperation(key.operation)
      if (Result.isSuccess(webhookOperation)) return completeWebhook(key, webhookOperation.success)
      const operation = decodePaymentOperation(key.operation)
      if (Result.isFailure(operation)) {
        return Effect.logError("completer: the operation stored with an abandoned key is not one", {
          key_id: key.id,
          path: key.path,
          reason: operation.failure.message
        })
      }
      const context = { actor: "system:completer", correlationId: randomUUID() }
      return keys.resume(key, renderOutcome, (execution) => useCases.execute(key.merchantId, operation.success, context, execution)).pipe(
        Effect.tap((outcome) =>
          Effect.logInfo("completer finished an abandoned key", {
            key_id: key.id,
            path: key.path,
            recovery_point: key.recoveryPoint,
            status: outcome.response.status
          })
        ),
        Effect.catchCause((cause) => Effect.logWarning("completer could not finish a key yet", { key_id: key.id, cause }))
      )
    }

    const completerRound = keys.abandoned({ olderThan_ms: options.abandonedAfter_ms, limit: options.completerBatch }).pipe(
      Effect.flatMap((abandoned) => Effect.forEach(abandoned, completeOne, { discard: true })),
      Effect.catchCause((cause) => Effect.logWarning("completer round failed", cause))
    )

    const reaperRound = keys.reap().pipe(
      Effect.tap((reaped) => reaped.finished + reaped.neverStarted > 0 ? Effect.logInfo("reaper deleted idempotency keys", reaped) : Effect.void),
      Effect.catchCause((cause) => Effect.logWarning("reaper round failed", cause))
    )

    const every = (interval_ms: number, round: Effect.Effect<void>) =>
      Effect.forever(round.pipe(Effect.andThen(Effect.sleep(Duration.millis(interval_ms)))))

    yield* Effect.forkScoped(every(options.completerInterval_ms, completerRound).pipe(Effect.withSpan("IdempotencyCompleter")))
    yield* Effect.forkScoped(every(options.reaperInterval_ms, reaperRound).pipe(Effect.withSpan("IdempotencyReaper")))
  })
)
