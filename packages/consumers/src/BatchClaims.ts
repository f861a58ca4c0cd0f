import type { KafkaRecord } from "@pay/infra"
import { decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import type { SqlClient, Statement } from "effect/sql"
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
 * The call of `consumer_claim_slice` (migrations/0070, replaced by 0071) for a slice of ONE
 * partition's records (offset order), as a SQL expression whose value is the slice's outcomes
 * (text[], the i-th for the i-th record, 1-based): it locks the partition's stored offset, skips
 * the records below it ("behind"), locks the payments' versions, decides each record in order
 * exactly as the per-record claim would (duplicate, stale, applied), inserts the
 * `processed_events` rows (an id already there is a duplicate) and moves the versions (raising if
 * one moved outside the protocol: the statement fails whole), and stores the offset past the last
 * record handled with the counts.
 */
export const claimSliceCall = (sql: SqlClient.SqlClient, consumer: string, items: ReadonlyArray<ClaimItem>) =>
  Effect.gen(function* () {
    const first = items[0]
    if (first === undefined) return yield* new ClaimsMoved({ message: "an empty slice has nothing to claim" })
    if (items.length > sliceRecords_max) return yield* new ClaimsMoved({ message: `${items.length} records above the slice bound ${sliceRecords_max}` })
    const records = items.map(({ identity, record }) => {
      if (record.topic !== first.record.topic || record.partition !== first.record.partition) return null
      return { o: String(record.offset), e: identity.eventId, p: identity.paymentId, v: identity.version }
    })
    if (records.includes(null)) return yield* new ClaimsMoved({ message: "a slice holds one partition's records only" })
    return sql`consumer_claim_slice(${consumer}, ${first.record.topic}, ${first.record.partition}, ${JSON.stringify(records)}::jsonb)`
  })

/** The outcomes a statement around `claimSliceCall` answers (one row, column `outcomes`), one per record sent. */
export const sliceOutcomes = (statement: Statement.Statement<unknown>, record_count: number) =>
  Effect.gen(function* () {
    const [row] = yield* Outcomes(statement)
    if (row === undefined || row.outcomes.length !== record_count) {
      return yield* new ClaimsMoved({ message: `consumer_claim_slice answered ${row?.outcomes.length ?? 0} outcomes for ${record_count} records` })
    }
    return row.outcomes
  })

/**
 * The consumer's bookkeeping alone, in ONE statement (claimSliceCall), in the caller's
 * transaction: the handler's effects for the "applied" records follow, then the COMMIT.
 */
export const claimSlice = (sql: SqlClient.SqlClient, consumer: string, items: ReadonlyArray<ClaimItem>) =>
  Effect.gen(function* () {
    if (items.length === 0) return []
    const call = yield* claimSliceCall(sql, consumer, items)
    return yield* sliceOutcomes(sql`SELECT ${call} AS outcomes`, items.length)
  })
