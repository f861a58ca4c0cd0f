import { assertWithin } from "@pay/infra"
import { Effect } from "effect"
import type { KeyStore } from "./KeyStore.ts"
import {
  ABANDONED_LIMIT_MAX,
  type AbandonedKey,
  type CompleterFailureRecorded,
  type IdempotencyOptions,
  idempotencyOptionBounds,
  REAP_BATCH_DEFAULT,
  REAP_BATCH_MAX
} from "./Model.ts"
import { completerBackoff_ms, type CompleterRetryPolicy, completerRetryPolicyBounds } from "./Parking.ts"
import type { RedisFastPath } from "./RedisFastPath.ts"

/**
 * The keys' upkeep, for the server's workers: the reaper (keys past the retention, and their cached
 * copies), the completer's query for abandoned keys, and its bounded attempts before parking.
 */
export const makeMaintenance = (store: KeyStore, fast: RedisFastPath, options: IdempotencyOptions) => {
  const reap = Effect.fn("IdempotencyKeys.reap")(function* (
    reapOptions: { readonly retention_ms?: number; readonly batch?: number } = {}
  ) {
    const retention_ms = reapOptions.retention_ms ?? options.retention_ms
    const batch = reapOptions.batch ?? REAP_BATCH_DEFAULT
    assertBounded("retention_ms", retention_ms, idempotencyOptionBounds.retention_ms.max)
    assertBounded("batch", batch, REAP_BATCH_MAX)
    const reaped = yield* store.reap(retention_ms, batch)
    // Their cached copies would expire on their own (TTL <= retention); deleting them now keeps
    // "reaped" meaning reaped.
    yield* Effect.forEach(reaped.finished, (row) => fast.deleteResponse(row.merchant_id, row.idempotency_key), {
      concurrency: 16,
      discard: true
    })
    return { finished: reaped.finished.length, neverStarted: reaped.neverStarted }
  })

  const abandoned = Effect.fn("IdempotencyKeys.abandoned")(function* (query: {
    readonly olderThan_ms: number
    readonly limit: number
  }) {
    assertBounded("olderThan_ms", query.olderThan_ms, Number.MAX_SAFE_INTEGER, 0)
    assertBounded("limit", query.limit, ABANDONED_LIMIT_MAX)
    return yield* store.abandoned(query.olderThan_ms, query.limit)
  })

  const recordCompleterFailure = Effect.fn("IdempotencyKeys.recordCompleterFailure")(function* (
    key: AbandonedKey,
    failure: { readonly reason: string; readonly policy: CompleterRetryPolicy; readonly parkNow?: boolean }
  ) {
    assertWithin("completer retry policy", failure.policy, completerRetryPolicyBounds)
    const attempt = key.completerAttempts + 1
    const park = failure.parkNow === true || attempt >= failure.policy.attemptsMax
    const retryIn_ms = completerBackoff_ms(attempt, failure.policy, Math.random())
    const changed = yield* store.recordCompleterFailure({
      id: key.id,
      previousAttempts: key.completerAttempts,
      retryIn_ms,
      park,
      reason: storableReason(failure.reason)
    })
    if (!changed) return { _tag: "Unchanged" } satisfies CompleterFailureRecorded
    return park
      ? ({ _tag: "Parked", attempt } satisfies CompleterFailureRecorded)
      : ({ _tag: "BackedOff", attempt, retryIn_ms } satisfies CompleterFailureRecorded)
  })

  return { reap, abandoned, recordCompleterFailure }
}

/** At most 2000 characters PostgreSQL can store (no NUL, no lone surrogate), for `completer_last_error`. */
const storableReason = (reason: string): string =>
  reason.slice(0, 2_000).replaceAll("\u0000", "\uFFFD").replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")

/** Arguments are checked when used: a zero lease or an unbounded batch is a bug, not a request error. */
export function assertBounded(name: string, value: number, max: number, min = 1): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer between ${min} and ${max}, got ${value}`)
  }
}
