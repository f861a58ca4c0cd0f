import type { KafkaRecord } from "@pay/infra"
import { decodeRows } from "@pay/infra"
import { Array as Arr, Effect, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { Claim, EventIdentity } from "./ConsumerStore.ts"

/** The database did not take the claims as read a moment before (a concurrent writer): the batch rolls back. */
export class ClaimsMoved extends Schema.TaggedError<ClaimsMoved>()("ClaimsMoved", { message: Schema.String }) {}

export interface ClaimItem {
  readonly identity: EventIdentity
  readonly record: KafkaRecord
}

const EventIds = decodeRows(Schema.Struct({ event_id: Schema.String }))
const Versions = decodeRows(Schema.Struct({ payment_id: Schema.String, version: Schema.Int }))
const Returned = decodeRows(Schema.Struct({ one: Schema.Int }))

/** In order, as the per-record claim would decide one after the other: duplicate, stale or new. */
const decide = (items: ReadonlyArray<ClaimItem>, processed: Set<string>, versions: Map<string, number>) =>
  items.map(({ identity }): Claim => {
    const id = identity.eventId.toLowerCase()
    if (processed.has(id)) return "duplicate"
    processed.add(id)
    const applied = versions.get(identity.paymentId)
    if (applied !== undefined && identity.version <= applied) return "stale"
    versions.set(identity.paymentId, identity.version)
    return "new"
  })

/**
 * The claims of a batch's records set-based (four statements, whatever the batch's size): read
 * which event ids were processed and lock the payments' versions, decide each record in order in
 * memory (exactly the per-record rules), then insert the `processed_events` rows and move the
 * versions, checking that the database took every row (ON CONFLICT would otherwise hide a
 * concurrent writer: `ClaimsMoved`, the batch rolls back). In the caller's transaction.
 */
export const claimBatch = (sql: SqlClient.SqlClient, consumer: string, items: ReadonlyArray<ClaimItem>) =>
  Effect.gen(function* () {
    if (items.length === 0) return []
    const ids = [...new Set(items.map((item) => item.identity.eventId.toLowerCase()))]
    const payments = [...new Set(items.map((item) => item.identity.paymentId))]
    const processed = yield* EventIds(sql`
      SELECT event_id::text AS event_id FROM processed_events WHERE consumer = ${consumer} AND ${sql.in("event_id", ids)}`)
    const versions = yield* Versions(sql`
      SELECT payment_id, version FROM consumer_payment_versions WHERE consumer = ${consumer} AND ${sql.in("payment_id", payments)}
      FOR UPDATE`)
    const claims = decide(items, new Set(processed.map((row) => row.event_id.toLowerCase())), new Map(versions.map((row) => [row.payment_id, row.version])))
    const rows = items.flatMap((item, index): Array<Record<string, unknown>> => {
      const claim = claims[index]
      return claim === "new" || claim === "stale"
        ? [{
          consumer, event_id: item.identity.eventId, payment_id: item.identity.paymentId, payment_version: item.identity.version,
          outcome: claim === "new" ? "applied" : "stale", topic: item.record.topic, partition: item.record.partition, offset: item.record.offset
        }]
        : []
    })
    const moved = new Map<string, number>()
    items.forEach((item, index) => {
      if (claims[index] === "new") moved.set(item.identity.paymentId, item.identity.version)
    })
    if (Arr.isReadonlyArrayNonEmpty(rows)) {
      const inserted = yield* Returned(sql`
        INSERT INTO processed_events ${sql.insert(rows)} ON CONFLICT (consumer, event_id) DO NOTHING RETURNING 1 AS one`)
      if (inserted.length !== rows.length) return yield* new ClaimsMoved({ message: `${rows.length - inserted.length} event(s) claimed meanwhile` })
    }
    const versionRows = [...moved].map(([payment_id, version]): Record<string, unknown> => ({ consumer, payment_id, version }))
    if (Arr.isReadonlyArrayNonEmpty(versionRows)) {
      const updated = yield* Returned(sql`
        INSERT INTO consumer_payment_versions ${sql.insert(versionRows)}
        ON CONFLICT (consumer, payment_id) DO UPDATE SET version = EXCLUDED.version WHERE consumer_payment_versions.version < EXCLUDED.version
        RETURNING 1 AS one`)
      if (updated.length !== versionRows.length) return yield* new ClaimsMoved({ message: "a payment's version moved meanwhile" })
    }
    return claims
  })
