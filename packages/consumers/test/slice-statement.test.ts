// The settlement consumer's slice as ONE statement (the claim and the projection's upserts,
// committed on their own: one round trip instead of four, what a quiet stream pays per record)
// must leave exactly what the transaction's path leaves (BEGIN, the claim, `applyBatch`, COMMIT):
// the same outcomes, projection, event counts and stored counters, for a stream with partial
// captures, failures, refunds, duplicates, stale copies and a redelivery, cut into slices of
// varied sizes. Both paths at once on shared projection rows must not deadlock (a deadlock would
// roll a slice back and send its records one by one, which the test would see). Real Postgres;
// records handed to the partition handler directly.
import { assert, it } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { ConsumerHandler } from "../src/ConsumerModel.ts"
import { makePartitionHandler } from "../src/PartitionBatch.ts"
import { makeRecordProcessor } from "../src/RecordProcessor.ts"
import { makeSettlementProjection } from "../src/SettlementProjection.ts"
import { merchantId, projectionAsExpected, expectedProjection, testOptions } from "./support.ts"
import { seeded, slicesOf, stream } from "./streams.ts"

interface Calls {
  slice: number
  batch: number
  one: number
}

/** The handler, with the paths it is taken through counted; `withSlice` false: the transaction's path only. */
const counted = (handler: ConsumerHandler, calls: Calls, withSlice: boolean): ConsumerHandler => {
  const { apply, applyBatch, applySlice } = handler
  if (applyBatch === undefined || applySlice === undefined) throw new Error("the settlement handler has both batch forms")
  const base = {
    name: handler.name,
    apply: (...args: Parameters<typeof apply>) => Effect.andThen(Effect.sync(() => calls.one++), apply(...args)),
    applyBatch: (...args: Parameters<typeof applyBatch>) => Effect.andThen(Effect.sync(() => calls.batch++), applyBatch(...args))
  }
  if (!withSlice) return base
  return {
    ...base,
    applySlice: (...args: Parameters<typeof applySlice>) => {
      calls.slice++
      return applySlice(...args)
    }
  }
}

const Counts = Schema.Struct({ event_type: Schema.String, partition: Schema.Int, event_count: Schema.BigInt })
const Counters = Schema.Struct({
  partition: Schema.Int,
  next_offset: Schema.BigInt,
  applied_count: Schema.BigInt,
  duplicate_count: Schema.BigInt,
  stale_count: Schema.BigInt
})
const Claims = Schema.Struct({ offset: Schema.BigInt, outcome: Schema.String })

const stateOf = (generation: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const consumer = `settlement.g${generation}`
    return {
      projection: yield* makeSettlementProjection(sql).rows(generation),
      counts: yield* decodeRows(Counts)(sql`
        SELECT event_type, partition, event_count FROM settlement_projection_event_counts
        WHERE generation = ${generation} ORDER BY event_type, partition`),
      counters: yield* decodeRows(Counters)(sql`
        SELECT partition, next_offset, applied_count, duplicate_count, stale_count FROM consumer_offsets
        WHERE consumer = ${consumer} ORDER BY partition`),
      claims: yield* decodeRows(Claims)(sql`
        SELECT "offset", outcome FROM processed_events WHERE consumer = ${consumer} ORDER BY partition, "offset"`)
    }
  })

it.live("one statement per slice leaves what BEGIN, the claim, applyBatch and COMMIT leave: outcomes, projection, counts, counters", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const projection = makeSettlementProjection(sql)
    const random = seeded(14)
    const merchants = [merchantId(), merchantId(), merchantId()]
    const { events, settled } = stream(random, merchants, 120)
    const slices = slicesOf(random, events, 0)
    // A redelivery (a Kafka commit lost): the first records again, all behind the stored offset.
    slices.push(slices.flat().slice(0, 25))

    const statementCalls: Calls = { slice: 0, batch: 0, one: 0 }
    const transactionCalls: Calls = { slice: 0, batch: 0, one: 0 }
    const handlerOf = (handler: ConsumerHandler) =>
      Effect.gen(function* () {
        const settings = { handler, dlqTopic: null, options: testOptions }
        return yield* makePartitionHandler(settings, yield* makeRecordProcessor(settings))
      })
    const byStatement = yield* handlerOf(counted(projection.handler(1), statementCalls, true))
    const byTransaction = yield* handlerOf(counted(projection.handler(2), transactionCalls, false))
    for (const slice of slices) {
      yield* byStatement(slice)
      yield* byTransaction(slice)
    }

    assert.deepStrictEqual(statementCalls, { slice: slices.length, batch: 0, one: 0 }, "every slice as one statement, none rolled back")
    assert.deepStrictEqual(transactionCalls.slice, 0)
    assert.strictEqual(transactionCalls.one, 0, "no slice of the transaction's path rolled back either")
    const one = yield* stateOf(1)
    const two = yield* stateOf(2)
    assert.deepStrictEqual(one, two)
    assert.deepStrictEqual(projectionAsExpected(one.projection), expectedProjection(settled))
    const outcomes = new Set(one.claims.map((claim) => claim.outcome))
    assert.deepStrictEqual([...outcomes].sort(), ["applied", "stale"], "the stream exercised stale copies (duplicates write no row)")
    const [counters] = one.counters
    assert.isAbove(Number(counters?.duplicate_count ?? 0n), 0, "and duplicates")
    assert.isAbove(Number(one.projection.reduce((sum, row) => sum + row.refund_count, 0n)), 0, "and refunds")
    assert.strictEqual(counters?.next_offset, BigInt(events.length))
  }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 4 }))), { timeout: 120_000 })

it.live("slices of two partitions at once, one by statement and one by transaction, on the same merchants' rows: no deadlock, no rollback, exact sums", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const projection = makeSettlementProjection(sql)
    const random = seeded(41)
    const merchants = [merchantId(), merchantId()]
    const left = stream(random, merchants, 150)
    const right = stream(random, merchants, 150)
    const calls: Calls = { slice: 0, batch: 0, one: 0 }
    const handlerOf = (withSlice: boolean) =>
      Effect.gen(function* () {
        const settings = { handler: counted(projection.handler(3), calls, withSlice), dlqTopic: null, options: testOptions }
        return yield* makePartitionHandler(settings, yield* makeRecordProcessor(settings))
      })
    const byStatement = yield* handlerOf(true)
    const byTransaction = yield* handlerOf(false)
    const leftSlices = slicesOf(random, left.events, 0)
    const rightSlices = slicesOf(random, right.events, 1)
    yield* Effect.all([
      Effect.forEach(leftSlices, byStatement, { discard: true }),
      Effect.forEach(rightSlices, byTransaction, { discard: true })
    ], { concurrency: 2, discard: true })
    assert.deepStrictEqual([calls.slice, calls.one], [leftSlices.length, 0], "every left slice as one statement; nothing rolled back to one by one")
    // A slice of duplicates and stale copies only has no effect to apply: applyBatch is not called.
    assert.isAbove(calls.batch, rightSlices.length / 2)
    assert.deepStrictEqual(projectionAsExpected(yield* projection.rows(3)), expectedProjection([...left.settled, ...right.settled]))
  }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 4 }))), { timeout: 120_000 })
