import { type Cause, Effect, Exit, Metric } from "effect"

/**
 * What idempotency keys answered, for operators: `executed` (first run), `resumed` (a released or
 * expired lease taken over), `replayed` (a stored answer), `in_use` (409), `reused` (422).
 * A rise in `in_use` means clients retry faster than work finishes; `reused` means a client bug.
 */
export const idempotencyRequests = Metric.counter("idempotency_requests_total", {
  description: "Idempotent requests by what the key answered: executed, resumed, replayed, in_use, reused",
  incremental: true
})

/** Redis calls of the fast path that failed or timed out (Postgres decided alone). */
export const idempotencyRedisFallbacks = Metric.counter("idempotency_redis_fallbacks_total", {
  description: "Redis fast-path calls that failed or timed out, by operation and reason; Postgres decided",
  incremental: true
})

export const redisFastPathOperations = ["get_marker", "set_marker", "del_marker", "get_response", "set_response", "del_response"] as const
export type RedisFastPathOperation = (typeof redisFastPathOperations)[number]

export const countRedisFallback = (operation: RedisFastPathOperation, reason: "error" | "timeout", count = 1) =>
  Metric.update(Metric.withAttributes(idempotencyRedisFallbacks, { operation, reason }), count)

/** Every series at 0 from the start, so that `increase()` sees the first fallback and the first outcome. */
export const initializeIdempotencyMetrics = Effect.gen(function* () {
  for (const operation of redisFastPathOperations) {
    yield* countRedisFallback(operation, "error", 0)
    yield* countRedisFallback(operation, "timeout", 0)
  }
  for (const outcome of outcomes) {
    yield* Metric.update(Metric.withAttributes(idempotencyRequests, { outcome }), 0)
  }
})

type RunTag = { readonly _tag: "Executed"; readonly resumed: boolean } | { readonly _tag: "Replayed" }

/** `in_use` or `reused` when the failure is one of those refusals; other failures are not counted here. */
const refusalLabel = <E>(cause: Cause.Cause<E>): string | undefined => {
  for (const reason of cause.reasons) {
    if (reason._tag !== "Fail") continue
    const error: unknown = reason.error
    if (typeof error === "object" && error !== null && "_tag" in error) {
      if (error._tag === "IdempotencyKeyInUse") return "in_use"
      if (error._tag === "IdempotencyKeyReused") return "reused"
    }
  }
  // Other failures (the work's, SQL) are counted by the HTTP and payment metrics.
  return undefined
}

const outcomeLabel = <E>(exit: Exit.Exit<RunTag, E>): string | undefined => {
  if (Exit.isSuccess(exit)) return exit.value._tag === "Replayed" ? "replayed" : exit.value.resumed ? "resumed" : "executed"
  return refusalLabel(exit.cause)
}

const outcomes = ["executed", "resumed", "replayed", "in_use", "reused"] as const

/**
 * One tagged counter per outcome, made once: a metric tagged per call computes its series key
 * (attributes sorted and serialized) on every update, a cost on every request.
 */
const outcomeCounters: ReadonlyMap<string, Metric.Metric<number, unknown>> = new Map(
  outcomes.map((outcome) => [outcome, Metric.withAttributes(idempotencyRequests, { outcome })])
)

const countOutcome = (outcome: string | undefined) => {
  const counter = outcome === undefined ? undefined : outcomeCounters.get(outcome)
  return counter === undefined ? Effect.void : Metric.update(counter, 1)
}

/** Counts what a `run` answered. */
export const countRun = <A extends RunTag, E, R>(run: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.onExit(run, (exit) => countOutcome(outcomeLabel(exit)))

/** Counts a refusal (409 in use, 422 reused) decided before a run, e.g. by the Redis fast path's lookup. */
export const countRefusal = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.onExit(effect, (exit) => (Exit.isSuccess(exit) ? Effect.void : countOutcome(refusalLabel(exit.cause))))
