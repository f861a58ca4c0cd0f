// A varied stream of payment and refund events for the slice tests: partial captures, failures,
// refunds (succeeded and failed), re-sent events (same id) and stale copies (a new id, an older
// version), deterministic for a seed, cut into slices of 1 to 40 records of one partition.
import type { KafkaRecord } from "@pay/infra"
import { eventMessage, lifecycle, type TestEvent } from "./support.ts"

const topic = "slice-test.payments.events"

const recordOf = (event: TestEvent, partition: number, offset: bigint): KafkaRecord => ({
  topic,
  partition,
  offset,
  key: event.message.key,
  value: String(event.message.value),
  value_bytes: new TextEncoder().encode(String(event.message.value)),
  headers: event.message.headers ?? {},
  timestamp_ms: Date.now()
})

/**
 * A small deterministic generator (the same stream on every run): a linear congruential
 * generator's high bits (its low bits cycle: the lowest one alternates from call to call).
 */
export const seeded = (seed: number) => {
  let state = seed
  return (below: number) => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648
    return Math.floor(state / 65_536) % below
  }
}

let refundCounter = 0
const refundId = () => `re_${String(++refundCounter).padStart(24, "0")}`

/** Payments of a few merchants and currencies: settled (some partially), failed, refunded; with duplicates and stale copies. */
export const stream = (random: (below: number) => number, merchants: ReadonlyArray<string>, payments_n: number) => {
  const events: Array<TestEvent> = []
  const settled: Array<Record<string, unknown>> = []
  for (let n = 0; n < payments_n; n++) {
    const merchant = merchants[random(merchants.length)] ?? ""
    const currency = random(2) === 0 ? "EUR" : "JPY"
    const amount_minor = 500 + random(20_000)
    const settles = random(5) !== 0
    const [created, authorized, last] = lifecycle(merchant, currency, amount_minor, settles)
    let final: Record<string, unknown> = last
    if (settles && random(4) === 0) {
      // A partial capture: what moved is the captured amount.
      const captured = Math.floor(amount_minor / 2)
      const fee_minor = Math.floor(captured / 50)
      final = { ...last, captured_amount_minor: captured, fee_minor, net_minor: captured - fee_minor }
      settled.push({ ...final, amount_minor: captured })
    } else if (settles) {
      settled.push(last)
    }
    const lifecycleEvents = [created, authorized, final].map((payload) => eventMessage(topic, payload))
    events.push(...lifecycleEvents)
    if (settles && random(3) === 0) {
      const base = { payment_id: created.payment_id, merchant_id: merchant, currency, reason: null, occurred_at: final["occurred_at"] }
      const refund = refundId()
      const succeeded = random(2) === 0
      events.push(eventMessage(topic, { type: "refund_created", ...base, refund_id: refund, amount_minor: 100, version: 1, status: "PENDING" }))
      events.push(eventMessage(topic, succeeded
        ? { type: "refund_succeeded", ...base, refund_id: refund, amount_minor: 100, version: 2, status: "SUCCEEDED", fee_returned_minor: random(3) }
        : { type: "refund_failed", ...base, refund_id: refund, amount_minor: 100, version: 2, status: "FAILED", failure_code: "refund_declined", failure_message: "declined" }))
    }
    // The publisher re-sending an event (same id), and a stale copy (new id, an older version).
    const again = lifecycleEvents[random(3)]
    if (again !== undefined && random(6) === 0) events.push(eventMessage(topic, again.payload, again.eventId))
    if (random(8) === 0) events.push(eventMessage(topic, created))
  }
  return { events, settled }
}

/** `events` as the records of one partition from offset 0, cut into slices of 1 to 40 records. */
export const slicesOf = (random: (below: number) => number, events: ReadonlyArray<TestEvent>, partition: number) => {
  const records = events.map((event, index) => recordOf(event, partition, BigInt(index)))
  const slices: Array<ReadonlyArray<KafkaRecord>> = []
  for (let start = 0; start < records.length;) {
    const size = 1 + random(40)
    slices.push(records.slice(start, start + size))
    start += size
  }
  return slices
}

