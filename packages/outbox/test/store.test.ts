import { decodeRows } from "@pay/infra"
import { assert, it, layer } from "@effect/vitest"
import { expectSqlRefusal, makeTestDatabase } from "@pay/testkit"
import { ConfigProvider, Deferred, Effect, Fiber, Layer, Metric, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { toEventRecord } from "../src/CloudEvents.ts"
import { claimableInOrder, OutboxStore } from "../src/OutboxStore.ts"
import { OutboxWriter } from "../src/OutboxWriter.ts"
import { backoffDelay_ms, outboxBacklogCount, outboxOldestUnpublishedAge } from "../src/Publisher.ts"
import { PublisherConfig } from "../src/PublisherConfig.ts"
import { insertTestRows } from "./support.ts"

const StoreTestLayer = Layer.mergeAll(OutboxStore.layer, OutboxWriter.layer).pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 6 })))

let sequence = 0
/** Appends one event of aggregate `aggregateId`, committed on its own. */
const append = (aggregateId: string, eventType = "payment_created") =>
  Effect.gen(function* () {
    const writer = yield* OutboxWriter
    sequence++
    return yield* writer.append({
      // An aggregate of the test's own: events of the `payment` aggregate need their payment (0095).
      aggregateType: "test_aggregate",
      aggregateId,
      eventType,
      eventVersion: 1,
      payload: { type: eventType, payment_id: aggregateId, amount_minor: sequence },
      headers: { correlation_id: `corr-${sequence}` }
    })
  })

/** Marks every unpublished row published (as a publisher would after an ack). */
const publishAll = Effect.gen(function* () {
  const store = yield* OutboxStore
  const sql = yield* SqlClient.SqlClient
  for (let round = 0; round < 100; round++) {
    const rows = yield* sql.withTransaction(
      Effect.gen(function* () {
        const claimed = yield* store.claim(1_000)
        yield* store.markPublished(claimed.map((row) => row.id))
        return claimed.length
      })
    )
    if (rows === 0) return
  }
})

layer(StoreTestLayer, { excludeTestServices: true })("OutboxStore (real Postgres)", (it) => {
  it.effect("claim takes a payment's consecutive events together, in position order, and holds back any whose predecessor is not in the batch", () =>
    Effect.gen(function* () {
      yield* publishAll
      const store = yield* OutboxStore
      const sql = yield* SqlClient.SqlClient
      const a1 = yield* append("pay_a", "payment_created")
      const b1 = yield* append("pay_b", "payment_created")
      const a2 = yield* append("pay_a", "payment_authorized")
      const a3 = yield* append("pay_a", "payment_settled")
      const c1 = yield* append("pay_c", "payment_created")

      // Each claim below runs in a transaction that ends without marking: the rows stay unpublished.
      const everything = yield* sql.withTransaction(store.claim(10))
      assert.deepStrictEqual(everything.map((row) => row.id), [a1.id, b1.id, a2.id, a3.id, c1.id])
      assert.isTrue(everything.every((row, index) => index === 0 || row.position > (everything[index - 1]?.position ?? 0n)))
      const first = everything[0]
      assert.isDefined(first)
      if (first === undefined) return
      const record = toEventRecord(first)
      assert.strictEqual(record.key, "pay_a")
      assert.deepInclude(JSON.parse(record.value), { type: "payment_created", payment_id: "pay_a" })
      assert.strictEqual(record.headers["correlation_id"], first.headers !== null && typeof first.headers === "object" ? Reflect.get(first.headers, "correlation_id") : undefined)

      // The limit cuts the candidates in position order.
      assert.deepStrictEqual((yield* sql.withTransaction(store.claim(3))).map((row) => row.id), [a1.id, b1.id, a2.id])

      // Once pay_a's first event is published, its second and third lead.
      yield* sql.withTransaction(store.markPublished([a1.id]))
      assert.deepStrictEqual((yield* sql.withTransaction(store.claim(10))).map((row) => row.id), [b1.id, a2.id, a3.id, c1.id])
      yield* publishAll
    }))

  it("the guard keeps a row only when all its aggregate's earlier unpublished rows precede it in the batch", () => {
    const candidate = (position: bigint, aggregate_id: string, held_back: boolean) =>
      ({ position, aggregate_type: "test_aggregate", aggregate_id, held_back })
    // a2 and a3 without a1 (held elsewhere): both stay behind; b1 goes.
    assert.deepStrictEqual(
      claimableInOrder([candidate(12n, "a", true), candidate(11n, "a", true), candidate(13n, "b", false)]).map((row) => row.position),
      [13n]
    )
    // a1, a2, a3 together, given in any order: all go, in position order.
    assert.deepStrictEqual(
      claimableInOrder([candidate(3n, "a", false), candidate(1n, "a", false), candidate(2n, "a", false)]).map((row) => row.position),
      [1n, 2n, 3n]
    )
    // a1 here, a2 held elsewhere, a3 here: a3 may not overtake a2.
    assert.deepStrictEqual(
      claimableInOrder([candidate(1n, "a", false), candidate(3n, "a", true)]).map((row) => row.position),
      [1n]
    )
  })

  it.effect("the claim walks the unpublished index in order and stops at the limit, even on a table never analyzed (stale statistics after an outage)", () =>
    Effect.gen(function* () {
      const store = yield* OutboxStore
      // A backlog the planner has never seen: this test database's outbox_events was never analyzed.
      yield* insertTestRows("plan", 5000)
      const plan = yield* store.explainClaim(200)
      assert.include(plan, "Index Scan using outbox_events_unpublished", plan)
      assert.notInclude(plan, "Sort", plan)
      assert.notInclude(plan, "Bitmap Heap Scan", plan)
      assert.notInclude(plan, "Seq Scan", plan)
      yield* publishAll
    }))

  it.effect("SKIP LOCKED: a second publisher's claim skips rows another one holds, and the holder's payments' later events too", () =>
    Effect.gen(function* () {
      yield* publishAll
      const store = yield* OutboxStore
      const sql = yield* SqlClient.SqlClient
      const x1 = yield* append("pay_x", "payment_created")
      const y1 = yield* append("pay_y", "payment_created")
      const x2 = yield* append("pay_x", "payment_authorized")
      const z1 = yield* append("pay_z", "payment_created")

      const claimedByFirst = yield* Deferred.make<ReadonlyArray<string>>()
      const release = yield* Deferred.make<void>()
      // Publisher 1 claims two rows and holds its transaction open (as during a Kafka send).
      const holder = yield* Effect.forkChild(
        sql.withTransaction(
          Effect.gen(function* () {
            const rows = yield* store.claim(2)
            yield* Deferred.succeed(claimedByFirst, rows.map((row) => row.id))
            yield* Deferred.await(release)
          })
        )
      )
      assert.deepStrictEqual(yield* Deferred.await(claimedByFirst), [x1.id, y1.id])

      // Publisher 2, on another connection: not x1/y1 (locked), not pay_x's second event
      // (its first is still unpublished), only pay_z.
      const second = yield* sql.withTransaction(store.claim(10))
      assert.deepStrictEqual(second.map((row) => row.id), [z1.id])

      // Publisher 1 ends without marking: the rows are claimable again, pay_x's two together.
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      const again = yield* sql.withTransaction(store.claim(10))
      assert.deepStrictEqual(again.map((row) => row.id), [x1.id, y1.id, x2.id, z1.id])
      yield* publishAll
    }))

  it.effect("an event is immutable: only the delivery bookkeeping may change", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const event = yield* append("pay_immutable")
      for (const assignment of [
        "payload = '{}'::jsonb",
        "event_type = 'payment_settled'",
        "aggregate_id = 'pay_other'",
        "headers = '{}'::jsonb",
        "created_at = now() - interval '1 day'"
      ]) {
        yield* expectSqlRefusal(sql.unsafe(`UPDATE outbox_events SET ${assignment} WHERE id = $1`, [event.id]), {
          code: "23000",
          message: /is immutable: only delivery bookkeeping may change/
        })
      }
      yield* sql`UPDATE outbox_events SET attempt_count = attempt_count + 1, last_error = 'x', published_at = now() WHERE id = ${event.id}`
      yield* sql`UPDATE outbox_events SET published_at = NULL WHERE id = ${event.id}`
      yield* publishAll
    }))

  it.effect("recordFailure keeps the row unpublished with attempt_count and last_error; markPublished clears the error", () =>
    Effect.gen(function* () {
      yield* publishAll
      const store = yield* OutboxStore
      const sql = yield* SqlClient.SqlClient
      const event = yield* append("pay_failing")
      yield* sql.withTransaction(store.recordFailure([event.id], "PLT_KFK_NETWORK: connection refused"))
      yield* sql.withTransaction(store.recordFailure([event.id], "x".repeat(5_000)))
      const [failed] = yield* decodeRows(Schema.Struct({ attempt_count: Schema.Number, last_error: Schema.NullOr(Schema.String), published_at: Schema.NullOr(Schema.Date) }))(sql`
        SELECT attempt_count, last_error, published_at FROM outbox_events WHERE id = ${event.id}`)
      assert.strictEqual(failed?.attempt_count, 2)
      assert.strictEqual(failed?.last_error?.length, 2_000, "bounded")
      assert.isNull(failed?.published_at ?? null)
      yield* publishAll
      const [published] = yield* decodeRows(Schema.Struct({ attempt_count: Schema.Number, last_error: Schema.NullOr(Schema.String) }))(sql`
        SELECT attempt_count, last_error FROM outbox_events WHERE id = ${event.id}`)
      assert.deepStrictEqual(published, { attempt_count: 3, last_error: null })
      // markPublished on a row that is not (or no longer) claimable is a broken contract: a defect.
      const defect = yield* sql.withTransaction(store.markPublished([event.id])).pipe(Effect.exit)
      assert.isTrue(defect._tag === "Failure" && String(defect.cause).includes("updated 0 of 1"))
    }))

  it.effect("backlog counts unpublished rows and the age of the oldest; the gauges follow", () =>
    Effect.gen(function* () {
      yield* publishAll
      const store = yield* OutboxStore
      const sql = yield* SqlClient.SqlClient
      assert.deepStrictEqual(yield* store.backlog, { unpublished_count: 0n, oldest_unpublished_age_ms: 0 })
      const old = yield* append("pay_backlog_1")
      yield* append("pay_backlog_2")
      yield* Effect.sleep("60 millis")
      const backlog = yield* store.backlog
      assert.strictEqual(backlog.unpublished_count, 2n)
      assert.isAtLeast(backlog.oldest_unpublished_age_ms, 50)
      assert.isBelow(backlog.oldest_unpublished_age_ms, 10_000)
      yield* Metric.update(outboxBacklogCount, Number(backlog.unpublished_count))
      yield* Metric.update(outboxOldestUnpublishedAge, backlog.oldest_unpublished_age_ms / 1_000)
      const gauge = yield* Metric.value(outboxBacklogCount)
      assert.strictEqual(gauge.value, 2)
      yield* sql.withTransaction(store.markPublished([old.id]))
      assert.strictEqual((yield* store.backlog).unpublished_count, 1n)
      yield* publishAll
    }))

  it.effect("retention deletes only published rows older than the cutoff, in bounded batches; requeue re-publishes history in position order", () =>
    Effect.gen(function* () {
      yield* publishAll
      const store = yield* OutboxStore
      const sql = yield* SqlClient.SqlClient
      yield* sql`DELETE FROM outbox_events`
      const published = [yield* append("pay_r1"), yield* append("pay_r2"), yield* append("pay_r3")]
      yield* publishAll
      const pending = yield* append("pay_r4")
      // Published an hour ago (the bookkeeping column may change; the event may not).
      yield* sql`UPDATE outbox_events SET published_at = now() - interval '1 hour' WHERE published_at IS NOT NULL`

      // Requeue first: history can be sent again with the original ids, oldest first.
      const [firstRow] = yield* decodeRows(Schema.Struct({ position: Schema.BigInt }))(sql`SELECT min(position) AS position FROM outbox_events`)
      const requeued = yield* store.requeue(firstRow?.position ?? 0n, 2)
      assert.strictEqual(requeued.requeued, 2)
      const claimed = yield* sql.withTransaction(store.claim(10))
      assert.deepStrictEqual(claimed.map((row) => row.id), [published[0]?.id, published[1]?.id, pending.id])
      const rest = yield* store.requeue(requeued.nextPosition, 2)
      assert.strictEqual(rest.requeued, 1)
      assert.strictEqual((yield* store.requeue(rest.nextPosition, 2)).requeued, 0)
      yield* publishAll
      yield* sql`UPDATE outbox_events SET published_at = now() - interval '1 hour' WHERE id <> ${pending.id}`
      const stillPending = yield* append("pay_r5")

      const cutoff = new Date(Date.now() - 30 * 60 * 1_000)
      assert.strictEqual(yield* store.deletePublishedBefore(cutoff, 2), 2)
      assert.strictEqual(yield* store.deletePublishedBefore(cutoff, 2), 1)
      assert.strictEqual(yield* store.deletePublishedBefore(cutoff, 2), 0)
      const left = yield* decodeRows(Schema.Struct({ id: Schema.String, published: Schema.Boolean }))(sql`
        SELECT id, published_at IS NOT NULL AS published FROM outbox_events ORDER BY position`)
      // pay_r4 was published just now (after the cutoff): kept. pay_r5 is unpublished: never deleted.
      assert.deepStrictEqual(left.map((row) => row.id), [pending.id, stillPending.id])
      yield* publishAll
    }))
})

it("backoff doubles from the base and never exceeds the max, whatever the failure count", () => {
  assert.deepStrictEqual([1, 2, 3, 4, 5, 6].map((failures) => backoffDelay_ms(failures, 100, 1_000)), [100, 200, 400, 800, 1_000, 1_000])
  assert.strictEqual(backoffDelay_ms(10_000, 100, 5_000), 5_000)
  assert.strictEqual(backoffDelay_ms(0, 100, 5_000), 100)
})

it.effect("PublisherConfig reads the environment with bounds: defaults, overrides, and out-of-range values refused", () =>
  Effect.gen(function* () {
    const read = (env: Record<string, string>) => PublisherConfig.parse(ConfigProvider.fromEnv({ env }))
    const defaults = yield* read({})
    assert.strictEqual(defaults.topic, "payments.events")
    assert.strictEqual(defaults.batchSize, 200)
    const custom = yield* read({ KAFKA_TOPIC_PREFIX: "prod.", OUTBOX_BATCH_SIZE: "50", OUTBOX_POLL_INTERVAL_MS: "250", OUTBOX_RETENTION_MS: "86400000" })
    assert.deepInclude(custom, { topic: "prod.payments.events", batchSize: 50, pollInterval_ms: 250, retention_ms: 86_400_000 })
    for (const [name, value] of [["OUTBOX_BATCH_SIZE", "0"], ["OUTBOX_BATCH_SIZE", "1001"], ["OUTBOX_BATCH_SIZE", "ten"], ["OUTBOX_POLL_INTERVAL_MS", "5"], ["OUTBOX_RETENTION_MS", "1000"]] as const) {
      const error = yield* Effect.flip(read({ [name]: value }))
      assert.strictEqual(error._tag, "ConfigError", `${name}=${value}`)
    }
  }))
