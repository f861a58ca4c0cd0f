import { MerchantId, uuidPattern } from "@pay/domain"
import { boundedInt, decodeRows, type IntBounds } from "@pay/infra"
import { Config, Context, Effect, Layer, Metric, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"

/**
 * The completer's retry policy per abandoned key (issue 11: it used to retry every key every 5 s
 * forever). Each failed attempt waits longer (exponential backoff with jitter) and after
 * `attemptsMax` failed attempts the key is PARKED: the completer no longer touches it, a gauge and
 * an ERROR log say so, and an operator lists it and puts it back (`ParkedKeys`, the CLI's
 * `idempotency parked` / `idempotency retry`, docs/runbook.md). Columns: migrations/0020.
 *
 * | variable                       | default | bounds              |
 * | ------------------------------ | ------- | ------------------- |
 * | `COMPLETER_ATTEMPTS_MAX`       | 8       | 1..100              |
 * | `COMPLETER_BACKOFF_BASE_MS`    | 5000    | 10..3600000         |
 * | `COMPLETER_BACKOFF_MAX_MS`     | 600000  | 10..86400000        |
 *
 * With the defaults a key is parked at its 8th failure, after 7 waits whose caps are 5 + 10 + … +
 * 320 s = 635 s, each drawn between half its cap and the cap: about 5-11 minutes (the 10-minute
 * cap is not reached).
 */
export interface CompleterRetryPolicy {
  readonly attemptsMax: number
  readonly backoffBase_ms: number
  readonly backoffMax_ms: number
}

export const completerRetryPolicyBounds: Readonly<Record<keyof CompleterRetryPolicy, IntBounds>> = {
  attemptsMax: { min: 1, max: 100 },
  backoffBase_ms: { min: 10, max: 60 * 60 * 1_000 },
  backoffMax_ms: { min: 10, max: 24 * 60 * 60 * 1_000 }
}

export const defaultCompleterRetryPolicy: CompleterRetryPolicy = {
  attemptsMax: 8,
  backoffBase_ms: 5_000,
  backoffMax_ms: 10 * 60 * 1_000
}

export const CompleterRetryPolicyConfig: Config.Config<CompleterRetryPolicy> = Config.all({
  attemptsMax: boundedInt("COMPLETER_ATTEMPTS_MAX", completerRetryPolicyBounds.attemptsMax, defaultCompleterRetryPolicy.attemptsMax),
  backoffBase_ms: boundedInt("COMPLETER_BACKOFF_BASE_MS", completerRetryPolicyBounds.backoffBase_ms, defaultCompleterRetryPolicy.backoffBase_ms),
  backoffMax_ms: boundedInt("COMPLETER_BACKOFF_MAX_MS", completerRetryPolicyBounds.backoffMax_ms, defaultCompleterRetryPolicy.backoffMax_ms)
})

/**
 * The wait after the `attempt`-th failed attempt (1-based): the cap `min(max, base · 2^(attempt−1))`,
 * of which a random half is waived ("equal jitter": between cap/2 and cap), so that keys abandoned
 * together by one outage do not all come back in the same round. `random` is in [0, 1).
 */
export const completerBackoff_ms = (attempt: number, policy: CompleterRetryPolicy, random: number): number => {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt must be a positive integer, got ${attempt}`)
  if (!(random >= 0 && random < 1)) throw new RangeError(`random must be in [0, 1), got ${random}`)
  // 2^(attempt-1) overflows nothing: past 2^40 the cap has long been reached.
  const cap_ms = Math.min(policy.backoffMax_ms, policy.backoffBase_ms * 2 ** Math.min(attempt - 1, 40))
  const half_ms = Math.floor(cap_ms / 2)
  return cap_ms - half_ms + Math.floor(random * (half_ms + 1))
}

/** Unfinished keys the completer gave up on, now (refreshed by the completer every round). */
export const idempotencyParkedKeys = Metric.gauge("idempotency_parked_keys", {
  description: "Unfinished idempotency keys parked by the completer after its last allowed attempt (docs/runbook.md)"
})
/** Failed completer attempts (each one backs off, the last one parks). */
export const idempotencyCompleterFailures = Metric.counter("idempotency_completer_failures_total", {
  description: "Completer attempts that did not finish an abandoned key"
})

/** What the operator sees of a parked key (`pnpm cli idempotency parked`). */
export const ParkedKey = Schema.Struct({
  id: Schema.String,
  merchant_id: MerchantId,
  idempotency_key: Schema.String,
  request_method: Schema.String,
  request_path: Schema.String,
  recovery_point: Schema.String,
  recovery_data: Schema.JsonObject,
  completer_attempts: Schema.Int,
  completer_last_error: Schema.NullOr(Schema.String),
  parked_at: Schema.Date,
  created_at: Schema.Date
})
export type ParkedKey = typeof ParkedKey.Type

/** `retry` of an id that names no parked, unfinished key. */
export class ParkedKeyNotFound extends Schema.TaggedError<ParkedKeyNotFound>()("ParkedKeyNotFound", { keyId: Schema.String }) {
  override get message() {
    return `no parked idempotency key ${this.keyId} (unknown, finished, or not parked)`
  }
}

export const PARKED_LIST_LIMIT_MAX = 1_000
const CountRow = Schema.Struct({ n: Schema.BigInt })
const IdRow = Schema.Struct({ id: Schema.String })

/** Parked keys, for operators and the gauge. Needs only `SqlClient` (the CLI has no Redis). */
export class ParkedKeys extends Context.Service<ParkedKeys, {
  /** Parked, unfinished keys, oldest parking first, at most `limit` (1..1000). */
  readonly list: (limit: number) => Effect.Effect<ReadonlyArray<ParkedKey>, SqlError>
  readonly count: Effect.Effect<number, SqlError>
  /**
   * Puts a parked key back in the completer's queue with a fresh budget of attempts (an operator
   * fixed the cause): the completer takes it at its next round.
   */
  readonly retry: (keyId: string) => Effect.Effect<void, ParkedKeyNotFound | SqlError>
}>()("idempotency/ParkedKeys") {
  static readonly layer = Layer.effect(
    ParkedKeys,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const list = Effect.fn("ParkedKeys.list")(function* (limit: number) {
        if (!Number.isInteger(limit) || limit < 1 || limit > PARKED_LIST_LIMIT_MAX) {
          return yield* Effect.die(new RangeError(`limit must be an integer within 1..${PARKED_LIST_LIMIT_MAX}, got ${limit}`))
        }
        return yield* decodeRows(ParkedKey)(sql`
          SELECT id, merchant_id, idempotency_key, request_method, request_path, recovery_point, recovery_data,
                 completer_attempts, completer_last_error, parked_at, created_at
          FROM idempotency_keys
          WHERE parked_at IS NOT NULL AND finished_at IS NULL
          ORDER BY parked_at, id
          LIMIT ${limit}`)
      })
      const count = decodeRows(CountRow)(sql`
        SELECT count(*) AS n FROM idempotency_keys WHERE parked_at IS NOT NULL AND finished_at IS NULL`).pipe(
        Effect.map((rows) => Number(rows[0]?.n ?? 0n))
      )
      const retry = Effect.fn("ParkedKeys.retry")(function* (keyId: string) {
        if (!uuidPattern.test(keyId)) return yield* new ParkedKeyNotFound({ keyId })
        const updated = yield* decodeRows(IdRow)(sql`
          UPDATE idempotency_keys
          SET parked_at = NULL, completer_attempts = 0, completer_next_at = NULL
          WHERE id = ${keyId}::uuid AND parked_at IS NOT NULL AND finished_at IS NULL
          RETURNING id`)
        if (updated.length !== 1) return yield* new ParkedKeyNotFound({ keyId })
      })
      return ParkedKeys.of({ list, count, retry })
    })
  )
}
