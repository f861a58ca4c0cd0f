import {
  ABANDONED_LIMIT_MAX,
  type AbandonedKey,
  type CompleterFailureRecorded,
  CompleterRetryPolicyConfig,
  IdempotencyKeys,
  idempotencyCompleterFailures,
  idempotencyParkedKeys,
  ParkedKeys,
  type RunOutcome,
  storedAsIs
} from "@pay/idempotency"
import { paymentIdPattern } from "@pay/domain"
import { boundedInt, sqlFailureKind } from "@pay/infra"
import { isSqlError } from "effect/sql/SqlError"
import { decodePaymentOperation, PaymentUseCases } from "@pay/payments"
import { Cause, Config, Duration, Effect, Layer, Metric, Option, Result } from "effect"
import { randomUUID } from "node:crypto"
import { renderOutcome } from "../payments/Render.ts"
import { decodeWebhookOperation, makeWebhookOperations } from "../webhooks/Operations.ts"

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

/** The payment a `/v1/payments/{id}…` path names, when its segment is a payment id (the domain's pattern). */
const paymentInPath = (path: string): string | undefined => {
  const [, v1, payments, id] = path.split("/")
  return v1 === "v1" && payments === "payments" && id !== undefined && paymentIdPattern.test(id) ? id : undefined
}

/**
 * The key on the completer's lines, with the ids an operator searches by: the merchant, and the
 * payment its path names (outside operator drill: "completer finished an abandoned key" had neither,
 * so a search by payment id found the client's six 503s and not that its authorization succeeded).
 */
const aboutKey = (key: AbandonedKey) => {
  const paymentId = paymentInPath(key.path)
  return {
    key_id: key.id,
    merchant_id: key.merchantId,
    ...(paymentId === undefined ? {} : { payment_id: paymentId }),
    path: key.path,
    recovery_point: key.recoveryPoint
  }
}

/** What the operator reads in the logs about a failed attempt (one line per attempt, WARN; ERROR when parked). */
const logAttempt = (key: AbandonedKey, recorded: CompleterFailureRecorded, reason: string) => {
  const about = { ...aboutKey(key), reason }
  switch (recorded._tag) {
    case "BackedOff":
      return Effect.logWarning("completer could not finish a key yet; backing off", { ...about, attempt: recorded.attempt, retry_in_ms: recorded.retryIn_ms })
    case "Parked":
      return Effect.logError("completer parked a key for an operator (pnpm cli idempotency parked; docs/runbook.md)", { ...about, attempt: recorded.attempt })
    case "Unchanged":
      return Effect.logInfo("completer attempt failed on a key finished or counted meanwhile", about)
  }
}

/**
 * The completer finishes idempotency keys that a client abandoned mid-way (a crash, an unknown
 * acquirer outcome nobody retried): it decodes the operation stored with the key, takes the key's
 * lease and re-runs the use case from its recovery point, storing the rendered outcome for the
 * client's eventual retry. Each failed attempt backs off exponentially (with jitter) and after
 * `COMPLETER_ATTEMPTS_MAX` the key is parked for an operator (`@pay/idempotency` Parking.ts); a key
 * whose stored operation does not decode is parked at once. The reaper deletes keys past the
 * retention. Both are bounded loops, interrupted with the server (SIGTERM).
 */
export const IdempotencyWorkersLive = Layer.effectDiscard(
  Effect.gen(function* () {
    const options = yield* IdempotencyWorkerConfig
    const policy = yield* CompleterRetryPolicyConfig
    const keys = yield* IdempotencyKeys
    const parked = yield* ParkedKeys
    const useCases = yield* PaymentUseCases

    const failed = (key: AbandonedKey, reason: string, parkNow: boolean) =>
      Metric.update(idempotencyCompleterFailures, 1).pipe(
        Effect.andThen(keys.recordCompleterFailure(key, { reason, policy, parkNow })),
        Effect.flatMap((recorded) => logAttempt(key, recorded, reason)),
        // The database did not take the count: the key stays as it was and comes back next round.
        Effect.catch((error) => Effect.logWarning("completer could not record a failed attempt", { key_id: key.id, error: error.message }))
      )

    const webhookOperations = yield* makeWebhookOperations

    /** A resumed run: logged when it finished, counted (and maybe parked) when it failed. */
    const attempted = <E extends { readonly _tag: string }>(key: AbandonedKey, run: Effect.Effect<RunOutcome, E>, correlationId?: string) =>
      run.pipe(
        Effect.tap((outcome) =>
          Effect.logInfo("completer finished an abandoned key", {
            ...aboutKey(key),
            // The resumed run's events carry it: the client's own, or a new one for an older key.
            ...(correlationId === undefined ? {} : { correlation_id: correlationId }),
            status: outcome.response.status,
            attempt: key.completerAttempts + 1
          })
        ),
        Effect.asVoid,
        // A client's run holds the key right now: not a failed attempt of ours.
        Effect.catch((error) => (error._tag === "IdempotencyKeyInUse" ? Effect.void : Effect.fail(error))),
        Effect.catchCause((cause) =>
          // Interrupted (shutdown): not an attempt that failed.
          Cause.hasInterruptsOnly(cause) ? Effect.interrupt : failed(key, completerErrorText(cause), false)
        )
      )

    const completeOne = (key: AbandonedKey) => {
      // Webhook POSTs store their own operations (one transaction each, server/src/webhooks/Operations.ts).
      const webhookOperation = decodeWebhookOperation(key.operation)
      if (Result.isSuccess(webhookOperation)) {
        return attempted(key, keys.resume(key, storedAsIs, (execution) => webhookOperations.execute(key.merchantId, webhookOperation.success, execution)))
      }
      const operation = decodePaymentOperation(key.operation)
      if (Result.isFailure(operation)) {
        // No later attempt can decode it better: straight to the operator.
        return failed(key, `the operation stored with the key is not one: ${operation.failure.message}`, true)
      }
      // The client's correlation id, kept with the key (0118): the resumed run's events and the
      // completer's lines carry it, so a merchant's X-Request-Id finds the end of its request
      // (outside on-call drill). A key from before 0118 gets a new one.
      const context = {
        actor: "system:completer",
        correlationId: key.correlationId ?? randomUUID(),
        // The request's trace context (0121): the resumed run's history rows and events carry it.
        ...(key.traceparent === undefined ? {} : { traceparent: key.traceparent })
      }
      return attempted(key, keys.resume(key, renderOutcome, (execution) => useCases.execute(key.merchantId, operation.success, context, execution)), context.correlationId)
    }

    const refreshParkedGauge = parked.count.pipe(Effect.flatMap((count) => Metric.update(idempotencyParkedKeys, count)))

    const completerRound = keys.abandoned({ olderThan_ms: options.abandonedAfter_ms, limit: options.completerBatch }).pipe(
      Effect.flatMap((abandoned) => Effect.forEach(abandoned, completeOne, { discard: true })),
      Effect.andThen(refreshParkedGauge),
      Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.interrupt : Effect.logWarning("completer round failed", cause))
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

/**
 * What `completer_last_error` (and the completer's WARN and ERROR lines) say. A failure the code
 * expects (the acquirer unavailable or timing out, a locked payment, the database) is one line: its
 * name, its message and the messages of up to three causes (`SqlError: PgConnection: Failed to
 * connect (connect ECONNREFUSED …)`). A defect keeps its stack trace, which is how the runbook tells
 * an operator to escalate a bug: an acquirer timeout rendered with a stack trace sent on-call to
 * escalate an outage (outside operator review). At most 2,000 characters.
 */
export const completerErrorText = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.hasDies(cause) ? Option.none() : Cause.findErrorOption(cause)
  if (Option.isNone(error)) return Cause.pretty(cause).slice(0, 2_000)
  // A statement the database refused (a constraint, a trigger, a missing grant: SqlFailure.ts's
  // `invariant_violation` and `bug`) is a defect too, though typed: said so, since a retry fails the
  // same way (outside review: it read like an outage to wait out).
  const kind = isSqlError(error.value) ? sqlFailureKind(error.value) : "unavailable"
  return `${oneLine(error.value)}${kind === "unavailable" ? "" : ` [${kind}: the database refused the statement; a bug: escalate, a retry fails the same way]`}`.slice(0, 2_000)
}

const oneLine = (error: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    if (!(current instanceof Error)) {
      parts.push(String(current))
      break
    }
    parts.push(depth === 0 ? `${current.name}: ${current.message}` : current.message)
    current = current.cause
  }
  const [first, ...causes] = parts
  return causes.length === 0 ? (first ?? "") : `${first} (${causes.join("; ")})`
}
