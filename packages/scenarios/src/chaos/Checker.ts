import { refundEventTypes } from "@pay/domain/RefundEvents"
import { decodeRow, decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "../Cli.ts"
import { currencySums, ledgerVerify } from "../Evidence.ts"
import { scanTopic } from "../Kafka.ts"
import type { ScenarioStack } from "../Stack.ts"
import type { Decided } from "./History.ts"

/** One check of the checker: its name, how many things it looked at, and the violations (empty = holds). */
export interface Check {
  readonly name: string
  readonly checked: number
  readonly violations: ReadonlyArray<string>
}

/** A check's violations are listed up to 20, with the total first when there are more. */
const check = (name: string, checked: number, violations: ReadonlyArray<string>): Check => ({
  name, checked, violations: violations.length > 20 ? [`${violations.length} violations, the first 19:`, ...violations.slice(0, 19)] : violations
})

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
  "CREATED>CANCELED",
  "AUTHORIZED>SETTLED",
  "AUTHORIZED>FAILED",
  "AUTHORIZED>CANCELED",
  "AUTHORIZED>EXPIRED"
])

/** Every acknowledged (2xx) answer names a payment that exists in a state reachable from the acknowledged one. */
export const acknowledged = (decided: ReadonlyArray<Decided>, statusOf: ReadonlyMap<string, string>) => {
  // A refund's answer is the refund (its own status), checked by `refundChecks`.
  let checked = 0
  const bad: Array<string> = []
  for (const ack of decided) {
    if (ack.status >= 300 || ack.op === "reuse" || ack.op === "refund") continue
    checked += 1
    const acked = ack.acked === "" ? "?" : ack.acked
    const now = statusOf.get(ack.payment_id)
    if (now === undefined || !(later[acked] ?? []).includes(now)) bad.push(`${ack.op} ${ack.payment_id}: acknowledged ${acked}, database has ${now ?? "nothing"}`)
  }
  return check("acknowledged payments exist in the acknowledged (or a later) state", checked, bad)
}

/** All decided answers of one key are byte-identical; a different body under a used key was refused with 422. */
export const replays = (decided: ReadonlyArray<Decided>) => {
  const bad: Array<string> = []
  let checked = 0
  for (const d of decided) {
    if (d.op === "reuse") {
      checked += 1
      if (d.status !== 422) bad.push(`key ${d.key} reused with another body: ${d.status} ${d.excerpt.slice(0, 120)}`)
    } else if (d.answers > 1) {
      checked += 1
      if (d.distinct > 1) bad.push(`key ${d.key}: ${d.answers} answers, ${d.distinct} distinct`)
    }
  }
  return check("replayed answers byte-identical; a different body under a used key refused (422)", checked, bad)
}

/** At most this many violating rows are read back per check (all are counted by the check's own query). */
const violations_max = 20

// Row schemas (SqlRows.ts): every count is `count(*)::int` (int4, a number); money is read `::text` (exact).
const CountRow = Schema.Struct({ n: Schema.Number })
/** A `SELECT count(…)::int AS n` statement's answer (an aggregate: exactly one row). */
const intCountOf = <E, R>(statement: Effect.Effect<ReadonlyArray<unknown>, E, R>) =>
  decodeRow(CountRow)(statement).pipe(Effect.map((row) => row.n))
const StatusRow = Schema.Struct({ id: Schema.String, status: Schema.String })
const SettlementCountsRow = Schema.Struct({
  id: Schema.String, status: Schema.String, settlements: Schema.Number, postings: Schema.Number, captures: Schema.Number
})

/** Each payment's status (10^5 rows in a long run: one query, for the acknowledged check). */
const statuses = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* decodeRows(StatusRow)(sql`SELECT id, status FROM payments`)
  return new Map(rows.map((r) => [r.id, r.status]))
})

/** Per payment: settlement rows, settlement postings and approved captures at the acquirer (index lookups, filtered in SQL). */
const moneyChecks = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const badRows = yield* decodeRows(SettlementCountsRow)(sql`
    SELECT * FROM (SELECT p.id, p.status,
      (SELECT count(*)::int FROM payment_settlements s WHERE s.payment_id = p.id) AS settlements,
      (SELECT count(*)::int FROM transactions t WHERE t.reference = 'payment:' || p.id || ':settlement') AS postings,
      (SELECT coalesce(sum(o.performed_count), 0)::int FROM acquirer_sim.operations o
       WHERE o.payment_id = p.id AND o.operation = 'capture' AND o.outcome = 'approved') AS captures
    FROM payments p) c
    WHERE CASE WHEN c.status = 'SETTLED' THEN NOT (c.settlements = 1 AND c.postings = 1 AND c.captures = 1)
               ELSE c.settlements <> 0 OR c.postings <> 0 OR c.captures > 1 END
    LIMIT ${violations_max}`)
  const payments = yield* intCountOf(sql`SELECT count(*)::int AS n FROM payments`)
  const verify = yield* ledgerVerify
  const sums = yield* currencySums
  return [
    check("SETTLED ⇒ one settlement row, one posting, one capture; otherwise none (≤ 1 capture awaiting its key)", payments, badRows.map((r) => `${r.id} ${r.status} settlements=${r.settlements} postings=${r.postings} captures=${r.captures}`)),
    check("ledger_verify() is empty", 1, verify.map((v) => `${v.check_name} ${v.subject} ${v.detail ?? ""}`)),
    check("per currency, debits - credits = 0", sums.length, sums.filter((s) => s.debit_minus_credit_minor !== "0").map((s) => `${s.currency} ${s.debit_minus_credit_minor}`))
  ]
})

const legalPairs = [...legal]
const HistoryRow = Schema.Struct({ payment_id: Schema.String, version: Schema.Number, from_status: Schema.NullOr(Schema.String), to_status: Schema.String })
const ChangesRow = Schema.Struct({ payment_id: Schema.String, changes: Schema.Number, outbox: Schema.Number })

/** Transitions and outbox rows per payment, as aggregates (no row per payment leaves Postgres unless it violates). */
const transitionChecks = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const transitions = yield* intCountOf(sql`SELECT count(*)::int AS n FROM payment_status_history`)
  const illegal = yield* decodeRows(HistoryRow)(sql`
    SELECT payment_id, version, from_status, to_status FROM payment_status_history
    WHERE coalesce(from_status, 'null') || '>' || to_status <> ALL (${legalPairs}::text[])
    LIMIT ${violations_max}`)
  // A payment's status changes are its payment_* events; refund events and the expiry warning share
  // the payment's aggregate (its Kafka key, for order) but change no payment status.
  const paymentsChanged = yield* intCountOf(sql`SELECT count(DISTINCT payment_id)::int AS n FROM payment_status_history`)
  const mismatch = yield* decodeRows(ChangesRow)(sql`
    WITH h AS (SELECT payment_id, count(*)::int AS n FROM payment_status_history GROUP BY payment_id),
         o AS (SELECT aggregate_id, count(*)::int AS n FROM outbox_events
               WHERE left(event_type, 8) = 'payment_' AND event_type <> 'payment_expiring' GROUP BY aggregate_id)
    SELECT h.payment_id, h.n AS changes, coalesce(o.n, 0) AS outbox FROM h LEFT JOIN o ON o.aggregate_id = h.payment_id
    WHERE h.n <> coalesce(o.n, 0) LIMIT ${violations_max}`)
  return [
    check("only legal transitions in payment_status_history", transitions, illegal.map((h) => `${h.payment_id} v${h.version} ${h.from_status}→${h.to_status}`)),
    check("each committed change has exactly one outbox row", paymentsChanged, mismatch.map((m) => `${m.payment_id}: ${m.changes} changes, ${m.outbox} outbox rows`))
  ]
})

const AggregateIdsRow = Schema.Struct({ aggregate_id: Schema.String, ids: Schema.String })

/**
 * The topic read back from offset 0, streamed (a long run's ~10^6 records are never all in memory):
 * every outbox row has a record with its id, per payment the distinct ids come in the outbox's
 * order, and no record lacks an outbox row.
 */
const kafkaCheck = (stack: ScenarioStack) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const perAggregate = yield* decodeRows(AggregateIdsRow)(sql`
      SELECT aggregate_id, string_agg(id::text, ',' ORDER BY position) AS ids FROM outbox_events GROUP BY aggregate_id`)
    const outboxIds = new Set<string>()
    for (const row of perAggregate) for (const id of row.ids.split(",")) outboxIds.add(id)
    const seen = new Set<string>()
    const byPayment = new Map<string, Array<string>>()
    const strangers: Array<string> = []
    let strangerCount = 0
    // 60 s, or 2 ms per expected record (10^5 records: 200 s).
    const records = yield* scanTopic(stack.kafkaBrokers, stack.eventsTopic, Math.max(60_000, outboxIds.size * 2), (r) => {
      seen.add(r.eventId)
      const list = byPayment.get(r.key) ?? []
      if (!list.includes(r.eventId)) list.push(r.eventId)
      byPayment.set(r.key, list)
      if (!outboxIds.has(r.eventId)) {
        strangerCount += 1
        if (strangers.length < violations_max) strangers.push(`${r.key} ${r.eventId}`)
      }
    })
    const missing: Array<string> = []
    const order: Array<string> = []
    for (const row of perAggregate) {
      for (const id of row.ids.split(",")) if (!seen.has(id)) missing.push(`${row.aggregate_id} event ${id} not on Kafka`)
      if ((byPayment.get(row.aggregate_id) ?? []).join(",") !== row.ids) order.push(`${row.aggregate_id}: Kafka order differs from the outbox's`)
    }
    return [
      check("every outbox row has ≥ 1 Kafka record with its id", outboxIds.size, missing),
      check("per payment, Kafka's order is the outbox's", perAggregate.length, order),
      check("no Kafka record without an outbox row (no event for a rolled-back change)", records, strangerCount === 0 ? [] : [`${strangerCount} records`, ...strangers])
    ]
  })

const RefundTotalsRow = Schema.Struct({ payments: Schema.Number, refunds: Schema.Number, canceled: Schema.Number })
/** The captured and refunded money `::text` (exact: shown, never computed on here). */
const OverCapRow = Schema.Struct({ id: Schema.String, captured: Schema.NullOr(Schema.String), refunded: Schema.String })
const ReversalRow = Schema.Struct({
  id: Schema.String, status: Schema.String, postings: Schema.Number, approved: Schema.Number, performed: Schema.Number
})
const IdRow = Schema.Struct({ id: Schema.String })
const RefundEventsRow = Schema.Struct({ id: Schema.String, status: Schema.String, events: Schema.String })

/**
 * Refunds (issue 19): per payment, Σ refunds not FAILED ≤ captured (the cap), and every SUCCEEDED
 * refund has exactly one reversal posting and one approved refund at the acquirer, performed once;
 * no other refund has any posting. Voids: a CANCELED payment has no settlement, no capture, and no authorization left unvoided.
 */
const refundChecks = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const totals = yield* decodeRow(RefundTotalsRow)(sql`
    SELECT (SELECT count(DISTINCT payment_id)::int FROM refunds) AS payments, (SELECT count(*)::int FROM refunds) AS refunds,
      (SELECT count(*)::int FROM payments WHERE status = 'CANCELED') AS canceled`)
  const overCap = yield* decodeRows(OverCapRow)(sql`
    SELECT c.id, c.captured::text AS captured, c.refunded::text AS refunded FROM (SELECT p.id, p.captured_amount_minor AS captured,
      (SELECT coalesce(sum(r.amount_minor), 0) FROM refunds r WHERE r.payment_id = p.id AND r.status <> 'FAILED') AS refunded
      FROM payments p WHERE EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = p.id)) c
    WHERE c.captured IS NULL OR c.refunded > c.captured LIMIT ${violations_max}`)
  const reversals = yield* decodeRows(ReversalRow)(sql`
    SELECT * FROM (SELECT r.id, r.status,
      (SELECT count(*)::int FROM transactions t WHERE t.reference = 'payment:' || r.payment_id || ':refund:' || r.id) AS postings,
      (SELECT count(*)::int FROM acquirer_sim.operations o WHERE o.reference = 'refund:' || r.id AND o.outcome = 'approved') AS approved,
      (SELECT coalesce(sum(o.performed_count), 0)::int FROM acquirer_sim.operations o WHERE o.reference = 'refund:' || r.id) AS performed
      FROM refunds r) c
    WHERE c.performed > 1 OR CASE WHEN c.status = 'SUCCEEDED' THEN NOT (c.postings = 1 AND c.approved = 1) ELSE c.postings <> 0 END
    LIMIT ${violations_max}`)
  const canceledWithMoney = yield* decodeRows(IdRow)(sql`
    SELECT p.id FROM payments p WHERE p.status = 'CANCELED' AND (EXISTS (SELECT 1 FROM payment_settlements s WHERE s.payment_id = p.id)
      OR EXISTS (SELECT 1 FROM acquirer_sim.operations o WHERE o.payment_id = p.id AND o.operation = 'capture' AND o.outcome = 'approved'))
    LIMIT ${violations_max}`)
  // A cancel before authorization never strands the payer's funds: an approved authorization of a
  // CANCELED payment was voided.
  const canceledHoldingFunds = yield* decodeRows(IdRow)(sql`
    SELECT p.id FROM payments p WHERE p.status = 'CANCELED'
      AND EXISTS (SELECT 1 FROM acquirer_sim.operations o WHERE o.payment_id = p.id AND o.operation = 'authorize' AND o.outcome = 'approved')
      AND NOT EXISTS (SELECT 1 FROM acquirer_sim.operations o WHERE o.payment_id = p.id AND o.operation = 'void' AND o.outcome = 'approved')
    LIMIT ${violations_max}`)
  // The refund events grouped once by refund id (not one scan of the outbox per refund).
  const events = yield* decodeRows(RefundEventsRow)(sql`
    WITH e AS (SELECT o.payload->>'refund_id' AS refund_id, string_agg(o.event_type, ',' ORDER BY o.position) AS events
               FROM outbox_events o WHERE o.event_type IN ${sql.in([...refundEventTypes])} GROUP BY 1)
    SELECT r.id, r.status, coalesce(e.events, '') AS events FROM refunds r LEFT JOIN e ON e.refund_id = r.id
    WHERE coalesce(e.events, '') <> CASE r.status WHEN 'SUCCEEDED' THEN 'refund_created,refund_succeeded'
                                                  WHEN 'FAILED' THEN 'refund_created,refund_failed' ELSE 'refund_created' END
    LIMIT ${violations_max}`)
  return [
    check("refund cap: per payment, Σ refunds not FAILED ≤ captured", totals.payments, overCap.map((c) => `${c.id} captured=${c.captured} refunded=${c.refunded}`)),
    check("one reversal per SUCCEEDED refund (and one refund at the acquirer, performed once); none for the others", totals.refunds,
      reversals.map((r) => `${r.id} ${r.status} postings=${r.postings} approved=${r.approved} performed=${r.performed}`)),
    check("each refund has exactly its events, once each, in order (refund_created, then refund_succeeded or refund_failed when final)", totals.refunds,
      events.map((e) => `${e.id} ${e.status}: ${e.events || "no events"}`)),
    check("a CANCELED payment has no settlement and no approved capture", totals.canceled, canceledWithMoney.map((c) => c.id)),
    check("a CANCELED payment holds no approved authorization that was not voided", totals.canceled, canceledHoldingFunds.map((c) => c.id))
  ]
})

/** The whole checker: history + Postgres + Kafka + the consumers' projection vs the ledger. */
export const runChecker = (stack: ScenarioStack, decided: ReadonlyArray<Decided>) =>
  Effect.gen(function* () {
    const statusOf = yield* statuses
    const money = yield* moneyChecks
    const transitions = yield* transitionChecks
    const refunds = yield* refundChecks
    const kafka = yield* kafkaCheck(stack)
    const reconcile = yield* runCli(stack, ["reconcile"])
    return [
      acknowledged(decided, statusOf),
      replays(decided),
      ...money,
      ...transitions,
      ...refunds,
      ...kafka,
      check("the projection (consumers) equals the ledger and payments (pnpm cli reconcile exit 0)", 1, reconcile.exitCode === 0 ? [] : [reconcile.output.slice(-500)])
    ]
  })

/** What the fault coverage check is given: the schedule's size, what became of it, and the load that ran. */
export interface FaultCoverage {
  readonly scheduled: number
  readonly applied: number
  readonly failed: number
  readonly skippedTarget: number
  readonly skippedLate: number
  readonly load_s: number
  readonly duration_s: number
  readonly paymentsTarget: number | undefined
}

/**
 * "PASS chaos" must mean the system survived faults. A run with no fault applied fails, whatever
 * else held. Faults due after a slow heal are skipped by design (the schedule is fixed in advance,
 * heals are not). But a payments target that ended the load before half of the schedule had run
 * makes the run a mostly quiet one, so that fails too, and the message says which option to change.
 */
export const faultCoverage = (coverage: FaultCoverage): Check => {
  const { scheduled, applied, failed, skippedTarget, skippedLate } = coverage
  const stoppedAtTarget = skippedTarget > 0 && coverage.paymentsTarget !== undefined
  const advice = stoppedAtTarget
    ? `the load stopped at --payments ${coverage.paymentsTarget} after ${coverage.load_s} s of the planned ${coverage.duration_s} s, before ${skippedTarget} faults: raise --payments (or leave it out) or lower --duration so that the load covers the schedule`
    : `raise --duration (faults run from 2 s to 3 s before the end of the load${skippedLate > 0 ? `; ${skippedLate} fell after the load behind slow heals` : ""})`
  const violations: Array<string> = []
  if (applied === 0) violations.push(`no fault applied of ${scheduled} scheduled (${failed} failed): ${advice}`)
  else if (stoppedAtTarget && applied * 2 < scheduled) violations.push(`only ${applied} of ${scheduled} scheduled faults applied: ${advice}`)
  return check(`faults applied: ${applied} of ${scheduled} scheduled (${failed} failed; not started: ${skippedTarget} after the payments target, ${skippedLate} due after the load)`, scheduled, violations)
}

/** Which processes were found dead, when, and which of them a failed fault explains. */
export interface ProcessLiveness {
  readonly total: number
  /** Not running when the fault schedule ended (before anything restarted them). */
  readonly deadAfterLoad: ReadonlyArray<string>
  /** Targets of kill-* faults whose restart failed: down for a reason the schedule knows. */
  readonly leftDownByFaults: ReadonlyArray<string>
  /** Dead after the load and not started again (3 tries), with the error. */
  readonly notRestarted: ReadonlyArray<string>
  /** Not running after the drain and the checks (nothing kills a process then). */
  readonly deadAtEnd: ReadonlyArray<string>
}

/**
 * Every process runs again after the faults, and none died outside the fault schedule: a process
 * found dead after the load that no failed fault left down crashed on its own. The run restarts it
 * (the drain needs it) but the crash is a violation, not a silent restart.
 */
export const processLiveness = (liveness: ProcessLiveness): Check => {
  const explained = new Set(liveness.leftDownByFaults)
  return check("every process of the topology running after the faults; none died outside the fault schedule", liveness.total, [
    ...liveness.deadAfterLoad.filter((name) => !explained.has(name)).map((name) => `${name} found dead after the load, not left down by a fault: a crash outside the schedule (restarted for the checks)`),
    ...liveness.notRestarted.map((line) => `not restarted: ${line}`),
    ...liveness.deadAtEnd.map((name) => `${name} not running after the drain and the checks: a crash outside the schedule`)
  ])
}
