import type { KafkaRecord } from "@pay/infra"
import { decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { EventIdentity } from "./ConsumerStore.ts"

/** The database's answer does not fit the slice sent (never expected): the slice rolls back. */
export class ClaimsMoved extends Schema.TaggedError<ClaimsMoved>()("ClaimsMoved", { message: Schema.String }) {}

export interface ClaimItem {
  readonly identity: EventIdentity
  readonly record: KafkaRecord
}

export const SliceOutcome = Schema.Literals(["applied", "duplicate", "stale", "behind"])
export type SliceOutcome = typeof SliceOutcome.Type

const Outcomes = decodeRows(Schema.Struct({ outcomes: Schema.Array(SliceOutcome) }))

/** Bound of one slice (the function refuses more): `CONSUMER_TRANSACTION_RECORDS_MAX`'s maximum. */
export const sliceRecords_max = 1_000

/**
 * The consumer's bookkeeping for a slice of ONE partition's records (offset order), in ONE
 * statement: `consumer_claim_slice` (migrations/0070, replaced by 0071) locks the partition's stored offset, skips
 * the records below it ("behind"), locks the payments' versions, decides each record in order
 * exactly as the per-record claim would (duplicate, stale, applied), inserts the
 * `processed_events` rows (an id already there is a duplicate) and moves the versions (raising if
 * one moved outside the protocol: the transaction rolls back whole), and stores the offset past
 * the last record handled with the counts. In the caller's transaction: the handler's effects for the "applied" records follow,
 * then the COMMIT.
 */
export const claimSlice = (sql: SqlClient.SqlClient, consumer: string, items: ReadonlyArray<ClaimItem>) =>
  Effect.gen(function* () {
    const first = items[0]
    if (first === undefined) return []
    if (items.length > sliceRecords_max) return yield* new ClaimsMoved({ message: `${items.length} records above the slice bound ${sliceRecords_max}` })
    const records = items.map(({ identity, record }) => {
      if (record.topic !== first.record.topic || record.partition !== first.record.partition) return null
      return { o: String(record.offset), e: identity.eventId, p: identity.paymentId, v: identity.version }
    })
    if (records.includes(null)) return yield* new ClaimsMoved({ message: "a slice holds one partition's records only" })
    const [row] = yield* Outcomes(sql`
      SELECT consumer_claim_slice(${consumer}, ${first.record.topic}, ${first.record.partition}, ${JSON.stringify(records)}::jsonb) AS outcomes`)
    if (row === undefined || row.outcomes.length !== items.length) {
      return yield* new ClaimsMoved({ message: `consumer_claim_slice answered ${row?.outcomes.length ?? 0} outcomes for ${items.length} records` })
    }
    return row.outcomes
  })
