// Refund events in the consumers (issue 19): a refund event carries the REFUND's version (1
// created, 2 final) on the payment's key, so the version check runs per refund: a refund_created
// (version 1) after its payment's payment_settled (version 3) is applied, not stale; a re-sent
// copy under another id is stale. The settlement projection adds refund_succeeded only. Both
// paths: a partition's slice in one transaction (PartitionBatch) and one record per transaction
// (RecordProcessor). Real Postgres; records handed to the handlers directly.
import { assert, it } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { makePartitionHandler } from "../src/PartitionBatch.ts"
import { makeRecordProcessor } from "../src/RecordProcessor.ts"
import { makeSettlementProjection, settlementConsumerName } from "../src/SettlementProjection.ts"
import { eventMessage, lifecycle, merchantId, recordsOf, testOptions } from "./support.ts"

const topic = "refund-test.payments.events"


let refundCounter = 0
const refundId = () => `re_${String(++refundCounter).padStart(24, "0")}`

/** A settled payment of 10,000, a refund of 1,500 that succeeds, one of 700 that fails, and a stale copy. */
const refundStory = (merchant: string) => {
  const [created, authorized, settled] = lifecycle(merchant, "EUR", 10_000, true)
  const base = { payment_id: created.payment_id, merchant_id: merchant, currency: "EUR", reason: null, occurred_at: settled.occurred_at }
  const a = refundId()
  const b = refundId()
  const aCreated = { type: "refund_created", ...base, refund_id: a, amount_minor: 1_500, version: 1, status: "PENDING" }
  const aSucceeded = { type: "refund_succeeded", ...base, refund_id: a, amount_minor: 1_500, version: 2, status: "SUCCEEDED", fee_returned_minor: 30 }
  const bCreated = { type: "refund_created", ...base, refund_id: b, amount_minor: 700, version: 1, status: "PENDING" }
  const bFailed = {
    type: "refund_failed", ...base, refund_id: b, amount_minor: 700, version: 2, status: "FAILED",
    failure_code: "refund_declined", failure_message: "declined"
  }
  const events = [created, authorized, settled, aCreated, bCreated, aSucceeded, bFailed].map((payload) => eventMessage(topic, payload))
  // The same refund_succeeded re-sent under another id: stale (version 2 of refund a already applied).
  return [...events, eventMessage(topic, aSucceeded)]
}

const Outcomes = Schema.Struct({ outcome: Schema.String, n: Schema.BigInt })

const check = (generation: number, merchant: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* makeSettlementProjection(sql).rows(generation)
    const row = rows.find((candidate) => candidate.merchant_id === merchant)
    assert.deepStrictEqual(
      [row?.settled_gross_minor, row?.payment_count, row?.refunded_minor, row?.fee_returned_minor, row?.refund_count],
      [10_000n, 1n, 1_500n, 30n, 1n],
      "refund_succeeded only: the failed refund and the stale copy add nothing"
    )
    const outcomes = yield* decodeRows(Outcomes)(sql`
      SELECT outcome, count(*)::bigint AS n FROM processed_events WHERE consumer = ${settlementConsumerName(generation)}
      GROUP BY outcome ORDER BY outcome`)
    assert.deepStrictEqual(outcomes, [{ outcome: "applied", n: 7n }, { outcome: "stale", n: 1n }])
    const versions = yield* decodeRows(Schema.Struct({ payment_id: Schema.String, version: Schema.Int }))(sql`
      SELECT payment_id, version FROM consumer_payment_versions WHERE consumer = ${settlementConsumerName(generation)} ORDER BY payment_id`)
    assert.deepStrictEqual(versions.map((version) => version.version).sort(), [2, 2, 3], "the payment at 3, each refund at 2")
  })

it.live("in one batch transaction: refund events are applied per refund (not stale behind the payment's version 3), refund_succeeded adds to the projection, a re-sent copy is stale", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const projection = makeSettlementProjection(sql)
    const settings = { handler: projection.handler(1), dlqTopic: null, options: { ...testOptions, transactionRecords_max: 100 } }
    const handlePartition = yield* makePartitionHandler(settings, yield* makeRecordProcessor(settings))
    const merchant = merchantId()
    yield* handlePartition(recordsOf(topic, refundStory(merchant), 0n))
    yield* check(1, merchant)
  }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 2 }))))

it.live("one record per transaction: the same outcome as the batch", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const projection = makeSettlementProjection(sql)
    const settings = { handler: projection.handler(2), dlqTopic: null, options: testOptions }
    const processor = yield* makeRecordProcessor(settings)
    const merchant = merchantId()
    for (const record of recordsOf(topic, refundStory(merchant), 0n)) yield* processor.handle(record)
    yield* check(2, merchant)
  }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 2 }))))
