import { domainEventTypes } from "@pay/domain/RefundEvents"
import { decodeRow, decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "../Cli.ts"
import type { ScenarioStack } from "../Stack.ts"
import type { Check } from "./Checker.ts"
import type { WebhookReceiver } from "./Receiver.ts"

/** The webhooks consumer's name in processed_events (packages/webhooks WEBHOOK_CONSUMER_NAME; scenarios may not import it). */
export const webhooksConsumerName = "webhooks"

const check = (name: string, checked: number, violations: ReadonlyArray<string>): Check => ({ name, checked, violations: violations.slice(0, 20) })

const eventTypes = [...domainEventTypes]

// Row schemas (SqlRows.ts): `count(*)::int`, `int` columns and `-1` are int4 (numbers); ids cast `::text`.
const LiveRow = Schema.Struct({ consumer: Schema.String, generation: Schema.Number })
const CountRow = Schema.Struct({ n: Schema.Number })
const ProcessedRow = Schema.Struct({ event_id: Schema.String, rows: Schema.Number })
const EventCountRow = Schema.Struct({ event_type: Schema.String, outbox: Schema.Number, counted: Schema.Number })
const ParkedRow = Schema.Struct({ consumer: Schema.String, event_id: Schema.NullOr(Schema.String), error: Schema.String })

/**
 * Each consumer (the live settlement generation's and the webhooks consumer) has exactly one
 * processed_events row per payment event of the outbox, and none for anything else; the
 * settlement projection counted each event type exactly as often as the outbox holds it (an event
 * applied twice, or lost, changes a count); and no record was parked: every event the chaos
 * clients cause is valid, so a parked one means a fault of the database or the broker was taken
 * for the record's (RecordProcessor.ts `isInfrastructure`).
 */
export const consumerChecks = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const live = yield* decodeRows(LiveRow)(sql`SELECT consumer, generation FROM settlement_projection_live`)
  const settlement = live[0]
  if (settlement === undefined) return [check("settlement_projection_live has its row", 1, ["no live generation"])]
  const { n: events } = yield* decodeRow(CountRow)(sql`SELECT count(*)::int AS n FROM outbox_events WHERE event_type IN ${sql.in(eventTypes)}`)
  // Violations only leave Postgres (at most 20 per consumer); processed_events' key is (consumer, event_id).
  const perConsumer = yield* Effect.forEach([settlement.consumer, webhooksConsumerName], (consumer) =>
    decodeRows(ProcessedRow)(sql`
      (SELECT o.id::text AS event_id, count(p.event_id)::int AS rows
       FROM outbox_events o LEFT JOIN processed_events p ON p.event_id = o.id AND p.consumer = ${consumer}
       WHERE o.event_type IN ${sql.in(eventTypes)} GROUP BY o.id HAVING count(p.event_id) <> 1 LIMIT 20)
      UNION ALL
      (SELECT p.event_id::text, -1 FROM processed_events p
       WHERE p.consumer = ${consumer} AND NOT EXISTS (SELECT 1 FROM outbox_events o WHERE o.id = p.event_id) LIMIT 20)`).pipe(
      Effect.map((rows) => ({ consumer, rows }))
    ))
  const counts = yield* decodeRows(EventCountRow)(sql`
    WITH o AS (SELECT event_type, count(*)::int AS n FROM outbox_events GROUP BY event_type),
         c AS (SELECT event_type, sum(event_count)::int AS n FROM settlement_projection_event_counts
               WHERE generation = ${settlement.generation} GROUP BY event_type)
    SELECT t.event_type, coalesce(o.n, 0) AS outbox, coalesce(c.n, 0) AS counted
    FROM unnest(${eventTypes}::text[]) AS t(event_type) LEFT JOIN o USING (event_type) LEFT JOIN c USING (event_type)`)
  const parked = yield* decodeRows(ParkedRow)(sql`
    SELECT consumer, event_id::text AS event_id, left(error, 160) AS error FROM dead_letter_events ORDER BY id LIMIT 20`)
  return [
    check("no record parked (a fault of the database or the broker is never the record's)", events,
      parked.map((p) => `${p.consumer} parked ${p.event_id ?? "an undecodable record"}: ${p.error}`)),
    ...perConsumer.map(({ consumer, rows }) =>
      check(`consumer ${consumer}: exactly one processed_events row per outbox event, none for an unknown event`, events,
        rows.map((r) => r.rows === -1 ? `${r.event_id} processed but not in the outbox` : `${r.event_id} processed ${r.rows} times`))),
    check("settlement projection: per event type, events counted = outbox events (each applied once)", counts.length,
      counts.filter((c) => c.outbox !== c.counted).map((c) => `${c.event_type}: outbox ${c.outbox}, counted ${c.counted}`))
  ]
})

/** The live generation's rows; the money columns come `::text` (exact), compared as JSON before and after a replay. */
const ProjectionRow = Schema.Struct({
  generation: Schema.Number,
  merchant_id: Schema.String,
  currency: Schema.String,
  settled_gross_minor: Schema.String,
  fees_minor: Schema.String,
  net_minor: Schema.String,
  payment_count: Schema.String
})

const liveProjection = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* decodeRows(ProjectionRow)(sql`
    SELECT p.generation, p.merchant_id, p.currency, p.settled_gross_minor::text AS settled_gross_minor, p.fees_minor::text AS fees_minor,
           p.net_minor::text AS net_minor, p.payment_count::text AS payment_count
    FROM settlement_projection p JOIN settlement_projection_live l ON l.generation = p.generation
    WHERE p.payment_count > 0 ORDER BY p.merchant_id, p.currency`)
  return { generation: rows[0]?.generation ?? 0, rows: rows.map(({ generation: _, ...row }) => JSON.stringify(row)) }
})

/**
 * `pnpm cli replay settlement` (a new generation from offset 0, swapped in), then the same rows,
 * and `pnpm cli reconcile` still agrees with the ledger.
 */
export const replayCheck = (stack: ScenarioStack) =>
  Effect.gen(function* () {
    const before = yield* liveProjection
    // A long run's replay reads every event again: bounded by the CLI's own 30 min replay bound.
    const replay = yield* runCli(stack, ["replay", "settlement"], 31 * 60_000)
    const after = yield* liveProjection
    const reconcile = yield* runCli(stack, ["reconcile"])
    const violations = [
      ...(replay.exitCode === 0 ? [] : [`replay exit ${replay.exitCode}: ${replay.output.slice(-400)}`]),
      ...(after.generation > before.generation ? [] : [`the replay did not swap in a new generation (${before.generation} → ${after.generation})`]),
      ...(JSON.stringify(before.rows) === JSON.stringify(after.rows) ? [] : [`projection differs: before ${before.rows.join(" ")} after ${after.rows.join(" ")}`.slice(0, 800)]),
      ...(reconcile.exitCode === 0 ? [] : [`reconcile after replay: ${reconcile.output.slice(-400)}`])
    ]
    return check("a replay from offset 0 rebuilds the same projection (cli replay settlement), still equal to the ledger", before.rows.length, violations)
  })

const EligibleRow = Schema.Struct({ event_id: Schema.String, deliveries: Schema.Number })
const DeliveryRow = Schema.Struct({ event_id: Schema.String, status: Schema.String, failed_reason: Schema.NullOr(Schema.String) })

/**
 * Every delivery of an eligible event (each payment event of a merchant with an endpoint) exists
 * once; each is delivered and was applied by the receiver under its webhook-id with a verified
 * signature, or is failed (exhausted, or gone) in the exhausted list; nothing was applied twice.
 */
export const webhookChecks = (receiver: WebhookReceiver) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // Aggregates: one count, then only the events whose delivery count is not 1.
    const { n: eligibleCount } = yield* decodeRow(CountRow)(sql`
      SELECT count(*)::int AS n FROM outbox_events o
      WHERE o.event_type IN ${sql.in(eventTypes)}
        AND EXISTS (SELECT 1 FROM webhook_endpoints e JOIN payments p ON p.merchant_id = e.merchant_id WHERE p.id = o.aggregate_id)`)
    const eligible = yield* decodeRows(EligibleRow)(sql`
      WITH d AS (SELECT event_id, count(*)::int AS n FROM webhook_deliveries GROUP BY event_id)
      SELECT o.id::text AS event_id, coalesce(d.n, 0) AS deliveries
      FROM outbox_events o LEFT JOIN d ON d.event_id = o.id
      WHERE o.event_type IN ${sql.in(eventTypes)}
        AND EXISTS (SELECT 1 FROM webhook_endpoints e JOIN payments p ON p.merchant_id = e.merchant_id WHERE p.id = o.aggregate_id)
        AND coalesce(d.n, 0) <> 1
      LIMIT 20`)
    const deliveries = yield* decodeRows(DeliveryRow)(sql`
      SELECT event_id::text AS event_id, status, failed_reason FROM webhook_deliveries`)
    const byWebhookId = receiver.applied
    const notDelivered = deliveries.filter((d) =>
      d.status === "delivered" ? !byWebhookId.has(d.event_id) : !(d.status === "failed" && d.failed_reason === "exhausted"))
    const known = new Set(deliveries.map((d) => d.event_id))
    const strangers = [...byWebhookId.values()].filter((a) => !known.has(a.webhookId) || a.webhookId !== a.eventId)
    return [
      check("every eligible event has exactly one webhook delivery", eligibleCount, eligible.map((e) => `${e.event_id}: ${e.deliveries} deliveries`)),
      check("every delivery delivered (applied by the receiver, signature verified) or in the exhausted list", deliveries.length,
        notDelivered.map((d) => `${d.event_id} ${d.status} ${d.failed_reason ?? ""} applied=${byWebhookId.has(d.event_id)}`)),
      check("the receiver applied nothing twice and nothing unknown; no signature refused", byWebhookId.size,
        [...receiver.appliedTwice.map((id) => `event ${id} applied under two webhook-ids`),
          ...strangers.map((a) => `applied ${a.webhookId} (event ${a.eventId}) without a matching delivery`),
          ...(receiver.refusedSignatures() > 0 ? [`${receiver.refusedSignatures()} requests refused (bad signature or body)`] : [])])
    ]
  })
