import { refundEventTypes } from "@pay/domain/RefundEvents"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "../Cli.ts"
import { currencySums, ledgerVerify } from "../Evidence.ts"
import { readTopic } from "../Kafka.ts"
import type { ScenarioStack } from "../Stack.ts"
import type { Decided } from "./History.ts"

/** One check of the checker: its name, how many things it looked at, and the violations (empty = holds). */
export interface Check {
  readonly name: string
  readonly checked: number
  readonly violations: ReadonlyArray<string>
}

const check = (name: string, checked: number, violations: ReadonlyArray<string>): Check => ({ name, checked, violations: violations.slice(0, 20) })

const later: Record<string, ReadonlyArray<string>> = {
  CREATED: ["CREATED", "AUTHORIZED", "SETTLED", "FAILED", "CANCELED", "EXPIRED"],
  AUTHORIZED: ["AUTHORIZED", "SETTLED", "FAILED", "CANCELED", "EXPIRED"],
  SETTLED: ["SETTLED"],
  FAILED: ["FAILED"],
  CANCELED: ["CANCELED"],
  EXPIRED: ["EXPIRED"]
}
const legal = new Set([
  "null>CREATED",
  "CREATED>AUTHORIZED",
  "CREATED>FAILED",
  "AUTHORIZED>SETTLED",
  "AUTHORIZED>FAILED",
  "AUTHORIZED>CANCELED",
  "AUTHORIZED>EXPIRED"
])

/** Every acknowledged (2xx) answer names a payment that exists in a state reachable from the acknowledged one. */
export const acknowledged = (decided: ReadonlyArray<Decided>, statusOf: ReadonlyMap<string, string>) => {
  // A refund's answer is the refund (its own status), checked by `refundChecks`.
  const acks = decided.filter((d) => d.status < 300 && d.op !== "reuse" && d.op !== "refund")
  const bad: Array<string> = []
  for (const ack of acks) {
    const acked = /"status":"([A-Z]+)"/.exec(ack.body)?.[1] ?? "?"
    const now = statusOf.get(ack.payment_id)
    if (now === undefined || !(later[acked] ?? []).includes(now)) bad.push(`${ack.op} ${ack.payment_id}: acknowledged ${acked}, database has ${now ?? "nothing"}`)
  }
  return check("acknowledged payments exist in the acknowledged (or a later) state", acks.length, bad)
}

/** All decided answers of one key are byte-identical; a different body under a used key was refused with 422. */
export const replays = (decided: ReadonlyArray<Decided>) => {
  const bad: Array<string> = []
  const byKey = decided.filter((d) => d.op !== "reuse")
  for (const d of byKey) if (new Set(d.answers).size > 1) bad.push(`key ${d.key}: ${d.answers.length} answers, ${new Set(d.answers).size} distinct`)
  const reuses = decided.filter((d) => d.op === "reuse")
  for (const r of reuses) if (r.status !== 422) bad.push(`key ${r.key} reused with another body: ${r.status} ${r.body.slice(0, 120)}`)
  return check("replayed answers byte-identical; a different body under a used key refused (422)", byKey.filter((d) => d.answers.length > 1).length + reuses.length, bad)
}

const moneyChecks = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ id: string; status: string; settlements: number; postings: number; captures: number }>`
    SELECT p.id, p.status,
      (SELECT count(*)::int FROM payment_settlements s WHERE s.payment_id = p.id) AS settlements,
      (SELECT count(*)::int FROM transactions t WHERE t.reference = 'payment:' || p.id || ':settlement') AS postings,
      (SELECT coalesce(sum(o.performed_count), 0)::int FROM acquirer_sim.operations o
       WHERE o.payment_id = p.id AND o.operation = 'capture' AND o.outcome = 'approved') AS captures
    FROM payments p`
  const bad = rows.filter((r) => r.status === "SETTLED" ? !(r.settlements === 1 && r.postings === 1 && r.captures === 1) : r.settlements !== 0 || r.postings !== 0 || r.captures > 1)
  const verify = yield* ledgerVerify
  const sums = yield* currencySums
  return {
    rows,
    checks: [
      check("SETTLED ⇒ one settlement row, one posting, one capture; otherwise none (≤ 1 capture awaiting its key)", rows.length, bad.map((r) => `${r.id} ${r.status} settlements=${r.settlements} postings=${r.postings} captures=${r.captures}`)),
      check("ledger_verify() is empty", 1, verify.map((v) => `${v.check_name} ${v.subject} ${v.detail ?? ""}`)),
      check("per currency, debits - credits = 0", sums.length, sums.filter((s) => s.debit_minus_credit_minor !== "0").map((s) => `${s.currency} ${s.debit_minus_credit_minor}`))
    ]
  }
})

const transitionChecks = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const history = yield* sql<{ payment_id: string; version: number; from_status: string | null; to_status: string }>`
    SELECT payment_id, version, from_status, to_status FROM payment_status_history ORDER BY payment_id, version`
  const outbox = yield* sql<{ id: string; aggregate_id: string; event_type: string }>`
    SELECT id::text AS id, aggregate_id, event_type FROM outbox_events ORDER BY position`
  // A payment's status changes are its payment_* events; refund events and the expiry warning share
  // the payment's aggregate (its Kafka key, for order) but change no payment status.
  const statusChanges = outbox.filter((o) => o.event_type.startsWith("payment_") && o.event_type !== "payment_expiring")
  const illegal = history.filter((h) => !legal.has(`${h.from_status ?? "null"}>${h.to_status}`)).map((h) => `${h.payment_id} v${h.version} ${h.from_status}→${h.to_status}`)
  const perPayment = new Map<string, number>()
  for (const h of history) perPayment.set(h.payment_id, (perPayment.get(h.payment_id) ?? 0) + 1)
  const outboxPer = new Map<string, number>()
  for (const o of statusChanges) outboxPer.set(o.aggregate_id, (outboxPer.get(o.aggregate_id) ?? 0) + 1)
  const mismatch = [...perPayment.entries()].filter(([id, n]) => outboxPer.get(id) !== n).map(([id, n]) => `${id}: ${n} changes, ${outboxPer.get(id) ?? 0} outbox rows`)
  return {
    outbox,
    checks: [
      check("only legal transitions in payment_status_history", history.length, illegal),
      check("each committed change has exactly one outbox row", perPayment.size, mismatch)
    ]
  }
})

const kafkaCheck = (stack: ScenarioStack, outbox: ReadonlyArray<{ id: string; aggregate_id: string }>) =>
  Effect.gen(function* () {
    // 60 s, or 2 ms per expected record for a long run's topic (10⁵ records: 200 s).
    const records = yield* readTopic(stack.kafkaBrokers, stack.eventsTopic, outbox.length, Math.max(60_000, outbox.length * 2))
    const seen = new Set(records.map((r) => r.eventId))
    const outboxIds = new Set(outbox.map((o) => o.id))
    const missing = outbox.filter((o) => !seen.has(o.id)).map((o) => `${o.aggregate_id} event ${o.id} not on Kafka`)
    const order: Array<string> = []
    const byPayment = new Map<string, Array<string>>()
    for (const r of records) {
      const list = byPayment.get(r.key) ?? []
      if (!list.includes(r.eventId)) list.push(r.eventId)
      byPayment.set(r.key, list)
    }
    const expected = new Map<string, Array<string>>()
    for (const o of outbox) expected.set(o.aggregate_id, [...(expected.get(o.aggregate_id) ?? []), o.id])
    for (const [id, ids] of expected) if (JSON.stringify(byPayment.get(id) ?? []) !== JSON.stringify(ids)) order.push(`${id}: Kafka order differs from the outbox's`)
    return [
      check("every outbox row has ≥ 1 Kafka record with its id", outbox.length, missing),
      check("per payment, Kafka's order is the outbox's", expected.size, order),
      check("no Kafka record without an outbox row (no event for a rolled-back change)", records.length, records.filter((r) => !outboxIds.has(r.eventId)).map((r) => `${r.key} ${r.eventId}`))
    ]
  })

/**
 * Refunds (issue 19): per payment, Σ refunds not FAILED ≤ captured (the cap), and every SUCCEEDED
 * refund has exactly one reversal posting and one approved refund at the acquirer, performed once;
 * no other refund has any posting. Voids: a CANCELED payment has no settlement and no capture.
 */
const refundChecks = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const caps = yield* sql<{ id: string; captured: string | null; refunded: string }>`
    SELECT p.id, p.captured_amount_minor::text AS captured,
      (SELECT coalesce(sum(r.amount_minor), 0) FROM refunds r WHERE r.payment_id = p.id AND r.status <> 'FAILED')::text AS refunded
    FROM payments p WHERE EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = p.id)`
  const refunds = yield* sql<{ id: string; status: string; postings: number; approved: number; performed: number }>`
    SELECT r.id, r.status,
      (SELECT count(*)::int FROM transactions t WHERE t.reference = 'payment:' || r.payment_id || ':refund:' || r.id) AS postings,
      (SELECT count(*)::int FROM acquirer_sim.operations o WHERE o.reference = 'refund:' || r.id AND o.outcome = 'approved') AS approved,
      (SELECT coalesce(sum(o.performed_count), 0)::int FROM acquirer_sim.operations o WHERE o.reference = 'refund:' || r.id) AS performed
    FROM refunds r`
  const canceled = yield* sql<{ id: string; money: boolean }>`
    SELECT p.id, (EXISTS (SELECT 1 FROM payment_settlements s WHERE s.payment_id = p.id)
      OR EXISTS (SELECT 1 FROM acquirer_sim.operations o WHERE o.payment_id = p.id AND o.operation = 'capture' AND o.outcome = 'approved')) AS money
    FROM payments p WHERE p.status = 'CANCELED'`
  const events = yield* sql<{ id: string; status: string; events: string }>`
    SELECT r.id, r.status,
      coalesce((SELECT string_agg(o.event_type, ',' ORDER BY o.position) FROM outbox_events o
        WHERE o.event_type IN ${sql.in([...refundEventTypes])} AND o.payload->>'refund_id' = r.id), '') AS events
    FROM refunds r`
  const expectedEvents = (status: string) =>
    status === "SUCCEEDED" ? "refund_created,refund_succeeded" : status === "FAILED" ? "refund_created,refund_failed" : "refund_created"
  const overCap = caps.filter((c) => c.captured === null || BigInt(c.refunded) > BigInt(c.captured))
  const reversals = refunds.filter((r) =>
    r.performed > 1 || (r.status === "SUCCEEDED" ? !(r.postings === 1 && r.approved === 1) : r.postings !== 0)
  )
  return [
    check("refund cap: per payment, Σ refunds not FAILED ≤ captured", caps.length, overCap.map((c) => `${c.id} captured=${c.captured} refunded=${c.refunded}`)),
    check("one reversal per SUCCEEDED refund (and one refund at the acquirer, performed once); none for the others", refunds.length,
      reversals.map((r) => `${r.id} ${r.status} postings=${r.postings} approved=${r.approved} performed=${r.performed}`)),
    check("each refund has exactly its events, once each, in order (refund_created, then refund_succeeded or refund_failed when final)", events.length,
      events.filter((e) => e.events !== expectedEvents(e.status)).map((e) => `${e.id} ${e.status}: ${e.events || "no events"}`)),
    check("a CANCELED payment has no settlement and no approved capture", canceled.length, canceled.filter((c) => c.money).map((c) => c.id))
  ]
})

/** The whole checker: history + Postgres + Kafka + the consumers' projection vs the ledger. */
export const runChecker = (stack: ScenarioStack, decided: ReadonlyArray<Decided>) =>
  Effect.gen(function* () {
    const money = yield* moneyChecks
    const statusOf = new Map(money.rows.map((r) => [r.id, r.status]))
    const transitions = yield* transitionChecks
    const refunds = yield* refundChecks
    const kafka = yield* kafkaCheck(stack, transitions.outbox)
    const reconcile = yield* runCli(stack, ["reconcile"])
    return [
      acknowledged(decided, statusOf),
      replays(decided),
      ...money.checks,
      ...transitions.checks,
      ...refunds,
      ...kafka,
      check("the projection (consumers) equals the ledger and payments (pnpm cli reconcile exit 0)", 1, reconcile.exitCode === 0 ? [] : [reconcile.output.slice(-500)])
    ]
  })
