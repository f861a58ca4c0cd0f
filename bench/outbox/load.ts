/**
 * The HTTP load of the outbox benchmark, in a process of its own so that the client's work does
 * not share an event loop with the publisher under measurement. Started by `bench/outbox/run.ts`.
 *
 * Env: BASE_URL, API_KEY, DURATION_S, CONCURRENCY. Each client takes payments through
 * POST /v1/payments → /authorize → /settle (a fresh Idempotency-Key per request) until the
 * deadline. Prints one JSON line with the counts and the request latencies' percentiles.
 * SETTLE_TIMES=1 adds `settled_at_ms`: each settled payment's id and the wall-clock instant
 * (epoch ms, sub-millisecond) its settle's HTTP 200 was read, for bench/consumers' settle →
 * projection latency.
 */
import { randomUUID } from "node:crypto"

const required = (name: string): string => {
  const value = process.env[name]
  if (value === undefined || value.length === 0) throw new Error(`${name} is required`)
  return value
}
const baseUrl = required("BASE_URL")
const apiKey = required("API_KEY")
const duration_s = Number(required("DURATION_S"))
const concurrency = Number(required("CONCURRENCY"))
if (!Number.isInteger(duration_s) || duration_s < 1 || duration_s > 600) throw new Error("DURATION_S must be 1..600")
if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new Error("CONCURRENCY must be 1..256")

const stats: { requests: number; failures: number; paymentsCompleted: number; firstFailure: string | null } = {
  requests: 0,
  failures: 0,
  paymentsCompleted: 0,
  firstFailure: null
}
const latencies_ms: Array<number> = []
const settleTimes = process.env["SETTLE_TIMES"] === "1"
const settledAt_ms: Record<string, number> = {}

const post = async (path: string, body: unknown): Promise<string | undefined> => {
  const started_ms = performance.now()
  try {
    const response = await fetch(`${baseUrl}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "idempotency-key": randomUUID(), "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000)
    })
    const text = await response.text()
    stats.requests++
    latencies_ms.push(performance.now() - started_ms)
    if (response.status >= 300) {
      stats.failures++
      stats.firstFailure ??= `${response.status} ${path}: ${text.slice(0, 300)}`
      return undefined
    }
    const parsed: unknown = JSON.parse(text)
    const id = typeof parsed === "object" && parsed !== null ? Reflect.get(parsed, "id") : undefined
    return typeof id === "string" ? id : undefined
  } catch (error) {
    stats.requests++
    stats.failures++
    stats.firstFailure ??= `${path}: ${String(error)}`
    return undefined
  }
}

const client = async (deadline_ms: number) => {
  while (Date.now() < deadline_ms) {
    const id = await post("/v1/payments", { amount: 1999, currency: "EUR", payment_method: "pm_card_visa" })
    if (id === undefined) continue
    if ((await post(`/v1/payments/${id}/authorize`, {})) === undefined) continue
    if ((await post(`/v1/payments/${id}/settle`, {})) === undefined) continue
    if (settleTimes) settledAt_ms[id] = performance.timeOrigin + performance.now()
    stats.paymentsCompleted++
  }
}

const started_ms = Date.now()
await Promise.all(Array.from({ length: concurrency }, () => client(started_ms + duration_s * 1_000)))
const elapsed_s = (Date.now() - started_ms) / 1_000
latencies_ms.sort((a, b) => a - b)
const percentile = (p: number) => latencies_ms[Math.min(latencies_ms.length - 1, Math.max(0, Math.ceil(p * latencies_ms.length) - 1))] ?? Number.NaN
console.log(JSON.stringify({
  ...stats,
  elapsed_s,
  requests_per_s: stats.requests / elapsed_s,
  latency_ms: { p50: percentile(0.5), p99: percentile(0.99) },
  ...(settleTimes ? { settled_at_ms: settledAt_ms } : {})
}))
