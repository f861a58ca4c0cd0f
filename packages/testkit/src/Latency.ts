/**
 * One factor for every absolute latency bound in the tests (`TEST_LATENCY_FACTOR`, a number from
 * 1 to 20, default 1). The bounds are written for this 2-core machine under a full-suite run; a
 * slower machine raises the factor once instead of each test growing its own slack, so a bound
 * still fails on a real regression (a call that waits for a timeout it should not) and nowhere
 * else. A value outside 1..20, or not a number, fails at once: a typo must not silently mean 1.
 */
export const latencyFactorBounds = { min: 1, max: 20 } as const

export const parseLatencyFactor = (raw: string | undefined): number => {
  if (raw === undefined || raw.trim() === "") return 1
  const factor = Number(raw)
  if (!Number.isFinite(factor) || factor < latencyFactorBounds.min || factor > latencyFactorBounds.max) {
    throw new Error(`TEST_LATENCY_FACTOR must be a number between ${latencyFactorBounds.min} and ${latencyFactorBounds.max}, got ${JSON.stringify(raw)}`)
  }
  return factor
}

export const latencyFactor: number = parseLatencyFactor(process.env["TEST_LATENCY_FACTOR"])

/** `ms` scaled by {@link latencyFactor}: use it for every "answered within" bound. */
export const scaled_ms = (ms: number): number => Math.round(ms * latencyFactor)
