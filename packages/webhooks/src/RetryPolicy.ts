import type { SendResult } from "./Sender.ts"

/**
 * What to do after an attempt. Pure, so that the schedule is tested without waiting:
 *
 * - 2xx: delivered.
 * - 410 Gone: the receiver says the endpoint is gone: the delivery fails and the endpoint is disabled.
 * - anything else (network error, timeout, 3xx, 4xx, 5xx): retry after the schedule's next delay
 *   (with ±10 % jitter, so a recovering receiver is not hit by every sender at once), or give up
 *   when the schedule is used up. On 429, 502, 503 and 504 a `Retry-After` pushes the next attempt
 *   out, up to `retryAfterMax_ms` (never earlier than the schedule).
 */
export type Decision =
  | { readonly _tag: "Delivered" }
  | { readonly _tag: "Gone" }
  | { readonly _tag: "Retry"; readonly delay_ms: number }
  | { readonly _tag: "Exhausted" }

export const slowDownStatuses: ReadonlySet<number> = new Set([429, 502, 503, 504])
export const JITTER_RATIO = 0.1

export interface PolicyOptions {
  readonly retrySchedule_ms: ReadonlyArray<number>
  readonly retryAfterMax_ms: number
}

/**
 * `roundAttempt` is the attempt just made, counted from 1 in the current round (a manual
 * redelivery starts a new round). `random` is in [0, 1).
 */
export const decide = (result: SendResult, roundAttempt: number, options: PolicyOptions, random: number): Decision => {
  if (result._tag === "Answered" && result.status >= 200 && result.status <= 299) return { _tag: "Delivered" }
  if (result._tag === "Answered" && result.status === 410) return { _tag: "Gone" }
  const scheduled = options.retrySchedule_ms[roundAttempt]
  if (scheduled === undefined) return { _tag: "Exhausted" }
  const jittered = Math.round(scheduled * (1 + JITTER_RATIO * (2 * random - 1)))
  const retryAfter_ms = result._tag === "Answered" && slowDownStatuses.has(result.status) ? result.retryAfter_ms : undefined
  const delay_ms = retryAfter_ms === undefined ? jittered : Math.max(jittered, Math.min(retryAfter_ms, options.retryAfterMax_ms))
  return { _tag: "Retry", delay_ms }
}
