/** A seeded fault schedule: the same seed gives the same faults at the same offsets. */

/** mulberry32: a small, well-mixed 32-bit PRNG; deterministic for a seed. */
export const seededRandom = (seed: number): (() => number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

export const faultKinds = ["kill-api", "pause-api", "cut-postgres", "flush-redis", "kill-redis", "kill-publisher"] as const
export type FaultKind = (typeof faultKinds)[number]

export interface Fault {
  readonly at_ms: number
  readonly kind: FaultKind
  /** Which instance (0 or 1) for kill-api / pause-api / kill-publisher. */
  readonly target: number
  /** How long the fault lasts before it is healed (restart, SIGCONT). */
  readonly hold_ms: number
}

/**
 * Faults every 3..7 s from 2 s until 3 s before the end of the load, never two at once (each
 * healed before the next starts): kinds drawn uniformly, targets and hold times from the seed.
 */
export const faultSchedule = (seed: number, duration_ms: number): ReadonlyArray<Fault> => {
  const random = seededRandom(seed ^ 0x5eed)
  const faults: Array<Fault> = []
  let at_ms = 2_000
  while (at_ms < duration_ms - 3_000) {
    const kind = faultKinds[Math.floor(random() * faultKinds.length)] ?? "cut-postgres"
    const hold_ms = 500 + Math.floor(random() * 1_500)
    faults.push({ at_ms, kind, target: random() < 0.5 ? 0 : 1, hold_ms })
    at_ms += hold_ms + 3_000 + Math.floor(random() * 4_000)
  }
  return faults
}
