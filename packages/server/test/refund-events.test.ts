// Refund events (issue 19): refund_created / refund_succeeded / refund_failed are written to the
// outbox in the same transaction as the refund's change (the database refuses a change without
// its event at COMMIT, migrations/0060_refund_events.sql), on the payment's key, with the refund's
// own version; through the real broker the settlement projection counts refunded money from
// refund_succeeded only, and reconciliation compares it with the ledger's reversals and the
// refunds table.
import { assert, layer } from "@effect/vitest"
import { behindTarget, deadLetterTopic, defaultConsumerOptions, makeReconciliation, makeSettlementProjection, runConsumer, settlementConsumerName } from "@pay/consumers"
import { decodeDomainEvent } from "@pay/domain"
import {
  decodeRows,
  defaultKafkaAdminTimeouts,
  defaultKafkaConsumerOptions,
  defaultKafkaProducerLimits,
  KafkaAdmin,
  KafkaConsumer,
  KafkaProducer
} from "@pay/infra"
import { OutboxStore } from "@pay/outbox/OutboxStore"
import { OutboxTopics } from "@pay/outbox/OutboxTopics"
import { defaultPublisherOptions, OutboxPublisher } from "@pay/outbox/Publisher"
import { FeeSchedules } from "@pay/settlement"
import { shortId, testRun } from "@pay/testkit"
import { Duration, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { authorizedPayment, describeAnswer, jsonOf, newKey, post, settle, type TestMerchant } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const run = testRun()
const layerOptions = { excludeTestServices: true, timeout: "90 seconds" } as const

const refund = (m: TestMerchant, paymentId: string, json: unknown) => post(m, `/v1/payments/${paymentId}/refunds`, newKey("refund"), { json })

/** A merchant without fees and a settled payment of `amount_minor` EUR (paid with `payment_method`). */
const settledPayment = (name: string, amount_minor: bigint) =>
  Effect.gen(function* () {
    const merchant = yield* createMerchant(name)
    yield* (yield* FeeSchedules).set(merchant.merchantId, "EUR", { fee_bps: 0, fee_fixed_minor: 0n })
    const id = yield* authorizedPayment(merchant, amount_minor, "EUR")
    const settled = yield* settle(merchant, id, newKey("settle"))
    assert.strictEqual(settled.status, 200, describeAnswer(settled))
    return { merchant, id }
  })

const OutboxRow = Schema.Struct({ event_type: Schema.String, aggregate_type: Schema.String, payload: Schema.Unknown, headers: Schema.Unknown })

/** A payment's outbox rows, in position order (the publisher's order). */
const outboxOf = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* decodeRows(OutboxRow)(sql`
      SELECT event_type, aggregate_type, payload, headers FROM outbox_events
      WHERE aggregate_id = ${paymentId} ORDER BY position`)
  })

const kafkaClients = Layer.mergeAll(
  OutboxStore.layer,
  KafkaAdmin.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-refund-events-admin", ...defaultKafkaAdminTimeouts }),
  KafkaProducer.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-refund-events-producer", ...defaultKafkaProducerLimits }),
  KafkaConsumer.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-refund-events-consumer", ...defaultKafkaConsumerOptions })
)

/** Publishes the whole outbox to `topic` (bounded rounds), then runs the live settlement consumer to the end. */
const publishAndConsume = (prefix: string, topic: string) =>
  Effect.gen(function* () {
    const publisher = yield* OutboxPublisher.make({ ...defaultPublisherOptions, topic })
    let drained = false
    for (let round = 0; round < 50 && !drained; round++) drained = (yield* publisher.publishBatch).claimed === 0
    if (!drained) return yield* Effect.die(new Error("outbox not drained in 50 rounds"))
    const sql = yield* SqlClient.SqlClient
    const live = yield* makeSettlementProjection(sql).live
    const name = settlementConsumerName(live.generation)
    const target = yield* (yield* KafkaConsumer).endOffsets(topic)
    yield* runConsumer({
      handler: makeSettlementProjection(sql).handler(live.generation),
      topic,
      groupId: `${prefix}${name}`,
      dlqTopic: deadLetterTopic(prefix),
      options: { ...defaultConsumerOptions, pollTimeout_ms: 200, restartBackoffMax_ms: 500 },
      keepGoing: behindTarget(sql, name, topic, target)
    }).pipe(Effect.timeoutOrElse({ duration: Duration.seconds(40), orElse: () => Effect.die(new Error("consumer did not catch up")) }))
    return name
  })

layer(inProcessAppLayer(), layerOptions)("refund events (in-process app over HTTP, real Postgres)", (it) => {
  it.effect("a refund writes refund_created (version 1) then refund_succeeded or refund_failed (version 2) to the outbox, on the payment's key, after payment_settled", () =>
    Effect.gen(function* () {
      const { merchant, id } = yield* settledPayment("Refund events", 5_000n)
      const succeeded = yield* refund(merchant, id, { amount: 1_200, reason: "duplicate" })
      assert.strictEqual(jsonOf(succeeded)["status"], "SUCCEEDED", describeAnswer(succeeded))
      const rows = yield* outboxOf(id)
      assert.deepStrictEqual(rows.map((row) => row.event_type), ["payment_created", "payment_authorized", "payment_settled", "refund_created", "refund_succeeded"])
      assert.isTrue(rows.every((row) => row.aggregate_type === "payment"), "on the payment's aggregate: its key and partition")
      const events = yield* Effect.forEach(rows.slice(3), (row) => decodeDomainEvent(row.payload))
      for (const [index, event] of events.entries()) {
        assert.strictEqual(event.type, index === 0 ? "refund_created" : "refund_succeeded")
        if (event.type !== "refund_created" && event.type !== "refund_succeeded") return
        assert.strictEqual(event.refund_id, jsonOf(succeeded)["id"])
        assert.strictEqual(event.version, index + 1, "the refund's version, not the payment's")
        assert.strictEqual(event.amount_minor, 1_200n)
        assert.strictEqual(event.reason, "duplicate")
      }
      const [created, completed] = events
      if (completed?.type !== "refund_succeeded") return assert.fail("no refund_succeeded")
      assert.strictEqual(completed.fee_returned_minor, 0n, "the fee is kept by default")
      assert.isTrue((created?.occurred_at.epochMilliseconds ?? 0) <= completed.occurred_at.epochMilliseconds)
      assert.isTrue(rows.slice(3).every((row) => typeof (row.headers as Record<string, unknown>)["correlation_id"] === "string"))
    }))

  it.effect("a declined refund writes refund_created then refund_failed with the acquirer's code", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Refund events declined")
      yield* (yield* FeeSchedules).set(merchant.merchantId, "EUR", { fee_bps: 0, fee_fixed_minor: 0n })
      const created = yield* post(merchant, "/v1/payments", newKey("create"), { json: { amount: 3_000, currency: "EUR", payment_method: "pm_card_refund_declined" } })
      const id = String(jsonOf(created)["id"])
      assert.strictEqual((yield* post(merchant, `/v1/payments/${id}/authorize`, newKey("authorize"))).status, 200)
      assert.strictEqual((yield* settle(merchant, id, newKey("settle"))).status, 200)
      const declined = yield* refund(merchant, id, { amount: 500 })
      assert.strictEqual(jsonOf(declined)["status"], "FAILED", describeAnswer(declined))
      const rows = yield* outboxOf(id)
      assert.deepStrictEqual(rows.map((row) => row.event_type).slice(3), ["refund_created", "refund_failed"])
      const failed = yield* decodeDomainEvent(rows[4]?.payload)
      if (failed.type !== "refund_failed") return assert.fail("no refund_failed")
      assert.strictEqual(failed.failure_code, jsonOf(declined)["failure_code"])
      assert.strictEqual(failed.version, 2)
    }))

  it.effect("raw SQL: a refund inserted, or completed, without its outbox event is refused at COMMIT; an event of the wrong version does not count", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant, id } = yield* settledPayment("Refund events raw", 5_000n)
      const insert = (refundId: string) => sql`
        INSERT INTO refunds (id, payment_id, merchant_id, amount_minor, currency, status, created_at, updated_at)
        VALUES (${refundId}, ${id}, ${merchant.merchantId}, 100, 'EUR', 'PENDING', now(), now())`
      const event = (refundId: string, type: string, version: number) => sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
        VALUES (gen_random_uuid(), 'payment', ${id}, ${type}, jsonb_build_object('refund_id', ${refundId}::text, 'version', ${version}::int))`
      const silent = yield* Effect.flip(insert("re_100000000000000000000001"))
      assert.match(String(silent.reason.cause), /became PENDING without its outbox event refund_created/)
      const wrongVersion = yield* Effect.flip(sql.withTransaction(Effect.andThen(insert("re_100000000000000000000002"), event("re_100000000000000000000002", "refund_created", 2))))
      assert.match(String(wrongVersion.reason.cause), /without its outbox event refund_created/)
      yield* sql.withTransaction(Effect.andThen(insert("re_100000000000000000000003"), event("re_100000000000000000000003", "refund_created", 1)))
      const silentFailure = yield* Effect.flip(sql`
        UPDATE refunds SET status = 'FAILED', failure_code = 'by_hand', failure_message = 'x' WHERE id = 're_100000000000000000000003'`)
      assert.match(String(silentFailure.reason.cause), /became FAILED without its outbox event refund_failed/)
      const otherRefundsEvent = yield* Effect.flip(sql.withTransaction(Effect.andThen(
        sql`UPDATE refunds SET status = 'FAILED', failure_code = 'by_hand', failure_message = 'x' WHERE id = 're_100000000000000000000003'`,
        event("re_100000000000000000000001", "refund_failed", 2)
      )))
      assert.match(String(otherRefundsEvent.reason.cause), /without its outbox event refund_failed/)
      const [row] = yield* decodeRows(Schema.Struct({ status: Schema.String }))(sql`SELECT status FROM refunds WHERE id = 're_100000000000000000000003'`)
      assert.strictEqual(row?.status, "PENDING", "nothing committed")
      // The hand-made refund_created above (a payload of refund_id and version only) is committed
      // in this file's database: marked published, so that the broker test below does not send it
      // to its consumer, which would rightly park it as undecodable (an ERROR in every CI log).
      const marked = yield* decodeRows(Schema.Struct({ id: Schema.String }))(sql`
        UPDATE outbox_events SET published_at = now()
        WHERE aggregate_id = ${id} AND payload->>'refund_id' = 're_100000000000000000000003' AND published_at IS NULL
        RETURNING id::text AS id`)
      assert.strictEqual(marked.length, 1)
    }))

  it.effect("through the real broker: the projection counts refunds from refund_succeeded only (never stale behind the payment's version), reconciliation agrees with the ledger's reversals and the refunds table; a tampered refunded_minor is a difference", () =>
    Effect.gen(function* () {
      const { merchant, id } = yield* settledPayment("Refund events recon", 10_000n)
      for (const amount of [1_000, 2_500]) assert.strictEqual(jsonOf(yield* refund(merchant, id, { amount }))["status"], "SUCCEEDED")
      const prefix = `${run.kafkaTopicPrefix}${shortId()}.`
      const ready = yield* OutboxTopics.ensure(prefix)
      yield* (yield* KafkaAdmin).createTopic({ topic: deadLetterTopic(prefix), partitions: 1 })
      const consumer = yield* publishAndConsume(prefix, ready.topic)

      const sql = yield* SqlClient.SqlClient
      const outcomes = yield* decodeRows(Schema.Struct({ outcome: Schema.String, n: Schema.BigInt }))(sql`
        SELECT p.outcome, count(*)::bigint AS n FROM processed_events p
        JOIN outbox_events o ON o.id = p.event_id
        WHERE p.consumer = ${consumer} AND o.aggregate_id = ${id} AND o.event_type LIKE 'refund_%'
        GROUP BY p.outcome`)
      assert.deepStrictEqual(outcomes, [{ outcome: "applied", n: 4n }], "4 refund events applied, none taken for a stale payment event")
      const report = yield* makeReconciliation(sql).reconcile()
      assert.deepStrictEqual(report.differences, [])
      const row = report.rows.find((candidate) => candidate.merchant_id === merchant.merchantId)
      assert.deepStrictEqual(
        [row?.projection_refunded_minor, row?.ledger_refunded_minor, row?.refunds_refunded_minor, row?.projection_refund_count, row?.ledger_refund_count],
        [3_500n, 3_500n, 3_500n, 2n, 2n]
      )
      assert.strictEqual(row?.projection_gross_minor, 10_000n, "the settled gross is untouched by refunds")

      // One more refund, its events committed and not consumed: in flight, not a difference; past the window, one.
      assert.strictEqual(jsonOf(yield* refund(merchant, id, { amount: 500 }))["status"], "SUCCEEDED")
      const flying = yield* makeReconciliation(sql).reconcile()
      assert.deepStrictEqual([flying.differences, flying.in_flight_events], [[], 1], "refund_succeeded in flight (refund_created moves no money)")
      const flyingRow = flying.rows.find((candidate) => candidate.merchant_id === merchant.merchantId)
      assert.deepStrictEqual([flyingRow?.ledger_refunded_minor, flyingRow?.projection_refunded_minor, flyingRow?.in_flight_refunded_minor, flyingRow?.in_flight_refund_count], [4_000n, 3_500n, 500n, 1n])
      const overdue = yield* makeReconciliation(sql).reconcile({ inFlightWindow_ms: 0 })
      assert.deepStrictEqual(overdue.differences.map((difference) => difference.merchant_id), [merchant.merchantId])

      yield* sql`UPDATE settlement_projection SET refunded_minor = refunded_minor + 1 WHERE merchant_id = ${merchant.merchantId} AND currency = 'EUR'`
      const tampered = yield* makeReconciliation(sql).reconcile()
      assert.deepStrictEqual(tampered.differences.map((difference) => difference.merchant_id), [merchant.merchantId])
    }).pipe(Effect.provide(kafkaClients)))
})
