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

export const faultKinds = [
  "kill-api",
  "pause-api",
  "cut-postgres",
  "slow-postgres",
  "flush-redis",
  "kill-redis",
  "pause-redis",
  "kill-publisher",
  "kill-consumer",
  "kill-webhooks",
  "kill-broker",
  "pause-broker"
] as const
export type FaultKind = (typeof faultKinds)[number]

/** Without a Kafka cluster of the run's own (the machine's broker is never harmed), no broker faults. */
export const faultKindsWithoutCluster: ReadonlyArray<FaultKind> = faultKinds.filter((kind) => kind !== "kill-broker" && kind !== "pause-broker")

export interface Fault {
  readonly at_ms: number
  readonly kind: FaultKind
  /** Which instance: modulo the instance count (2 APIs, publishers, consumers; 3 brokers; 1 sender). */
  readonly target: number
  /** How long the fault lasts before it is healed (restart, SIGCONT, latency back to 0). */
  readonly hold_ms: number
}

/**
 * Faults every `gap_ms`..`gap_ms` + 4 s (default 3..7 s) after the previous one is healed, from 2 s
 * until 3 s before the end of the load, never two at once: kinds drawn uniformly, targets and hold
 * times from the seed. A long run spaces them (chaos-long: 20..24 s) so that restarts (a broker JVM
 * takes 20..45 s on the shared 2-core machine) do not make most of the run a recovery.
 */
export const faultSchedule = (seed: number, duration_ms: number, kinds: ReadonlyArray<FaultKind> = faultKinds, gap_ms = 3_000): ReadonlyArray<Fault> => {
  const random = seededRandom(seed ^ 0x5eed)
  const faults: Array<Fault> = []
  let at_ms = 2_000
  while (at_ms < duration_ms - 3_000) {
    const kind = kinds[Math.floor(random() * kinds.length)] ?? "cut-postgres"
    const hold_ms = 500 + Math.floor(random() * 1_500)
    faults.push({ at_ms, kind, target: Math.floor(random() * 6), hold_ms })
    at_ms += hold_ms + gap_ms + Math.floor(random() * 4_000)
  }
  return faults
}
