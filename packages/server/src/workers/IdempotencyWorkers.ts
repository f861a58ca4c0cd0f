import { CreatePaymentBody } from "@pay/api"
import { type AbandonedKey, IdempotencyKeys } from "@pay/idempotency"
import { Config, Duration, Effect, Layer, Option, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { type Operation, PaymentOperations } from "../payments/Operations.ts"

export interface IdempotencyWorkerOptions {
  /** How often the completer looks for abandoned keys. */
  readonly completerInterval_ms: number
  /** A key counts as abandoned once its lease is gone and it has been idle this long. */
  readonly abandonedAfter_ms: number
  /** Keys finished per round (bounded). */
  readonly completerBatch: number
  /** How often the reaper deletes keys past the retention. */
  readonly reaperInterval_ms: number
}

export const IdempotencyWorkerConfig: Config.Config<IdempotencyWorkerOptions> = Config.all({
  completerInterval_ms: Config.Int("COMPLETER_INTERVAL_MS").pipe(Config.withDefault(5_000)),
  abandonedAfter_ms: Config.Int("COMPLETER_ABANDONED_AFTER_MS").pipe(Config.withDefault(10_000)),
  completerBatch: Config.Int("COMPLETER_BATCH").pipe(Config.withDefault(50)),
  reaperInterval_ms: Config.Int("REAPER_INTERVAL_MS").pipe(Config.withDefault(60 * 60 * 1_000))
})

const decodeCreateBody = Schema.decodeUnknownOption(CreatePaymentBody)
const actionPath = /^\/v1\/payments\/([^/]+)\/(authorize|settle)$/

/** Rebuilds the operation a stored request asked for (the same one the handler built). */
export const operationOf = (key: AbandonedKey): Option.Option<Operation> => {
  if (key.method !== "POST") return Option.none()
  if (key.path === "/v1/payments") {
    return Option.map(decodeCreateBody(key.requestBody ?? {}), (body): Operation => ({ _tag: "create", body }))
  }
  const match = actionPath.exec(key.path)
  if (match === null || match[1] === undefined) return Option.none()
  return Option.some(match[2] === "authorize"
    ? { _tag: "authorize", paymentId: match[1] }
    : { _tag: "settle", paymentId: match[1] })
}

/**
 * The completer finishes idempotency keys that a client abandoned mid-way (a crash, an unknown
 * acquirer outcome nobody retried): it takes the key's lease and re-runs the operation from its
 * recovery point, storing the response for the client's eventual retry. The reaper deletes keys
 * past the retention. Both are bounded loops, interrupted with the server (SIGTERM).
 */
export const IdempotencyWorkersLive = Layer.effectDiscard(
  Effect.gen(function* () {
    const options = yield* IdempotencyWorkerConfig
    const keys = yield* IdempotencyKeys
    const operations = yield* PaymentOperations

    const completeOne = (key: AbandonedKey) =>
      Option.match(operationOf(key), {
        onNone: () => Effect.logError("completer: cannot rebuild the operation of an abandoned key", { path: key.path, key_id: key.id }),
        onSome: (operation) =>
          keys.resume(key, (execution) =>
            operations.execute(key.merchantId, operation, { actor: "system:completer", correlationId: randomUUID() }, execution)
          ).pipe(
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
      })

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
