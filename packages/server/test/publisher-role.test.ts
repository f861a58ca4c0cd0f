// The outbox publisher's own role (migrations/0108_publisher_role.sql), and the outbox rows bounded
// (0110: the outside review of 0108's F1 and F2, last test). The re-test of 0104 hid a
// real API cancel's event as `pay_app`: `LOCK TABLE outbox_events IN EXCLUSIVE MODE` (it held
// DELETE for retention), which queues behind the writer, then a second transaction's mark: the
// event never reached Kafka. Since 0108 only `pay_publisher` marks, re-queues and deletes; `pay_app`
// writes events and reads them, nothing else. Each refusal below is SQLSTATE 42501 on the table it
// attacks; without 0108 every one of them passes.
import { assert, it } from "@effect/vitest"
import { CreatePaymentInput, domainEventTypes, type MerchantId } from "@pay/domain"
import { decodeRows, postgresLayer } from "@pay/infra"
import { Ledger } from "@pay/ledger"
import { MerchantRepository } from "@pay/merchants"
import { OutboxStore, OutboxWriter, PublisherRoleCheck } from "@pay/outbox"
import { type ChangeContext, PaymentRepository } from "@pay/payments"
import { FeeSchedules } from "@pay/settlement"
import { acquireTestDatabase, expectSqlRefusal, testDatabaseAsRole } from "@pay/testkit"
import { Effect, Exit, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"

const permissionDenied = (table: string) => expectSqlRefusal({ code: "42501", message: new RegExp(`^permission denied for table ${table}$`) })
const context: ChangeContext = { actor: "test:0108", correlationId: "corr-0108" }
const paymentInput = (merchantId: MerchantId) =>
  Schema.decodeUnknownSync(CreatePaymentInput)({ merchant_id: merchantId, amount_minor: 2_500, currency: "EUR", payment_method: "pm_card_visa" })
const EventRow = Schema.Struct({ id: Schema.String, published: Schema.Boolean })

const databases = Effect.gen(function* () {
  const info = yield* acquireTestDatabase
  const owner = postgresLayer({ url: Redacted.make(info.url), maxConnections: 1, applicationName: "pay-test-0108-owner" })
  const app = Layer.mergeAll(PaymentRepository.layer, MerchantRepository.layer).pipe(
    Layer.provideMerge(Layer.mergeAll(Ledger.layer, FeeSchedules.layer, OutboxWriter.layer)),
    Layer.provideMerge(testDatabaseAsRole(info, "pay_app"))
  )
  const publisher = OutboxStore.layer.pipe(Layer.provideMerge(testDatabaseAsRole(info, "pay_publisher")))
  return { info, owner, app, publisher }
})

/** A committed payment of a new merchant, made as pay_app; its one event (payment_created) unpublished. */
const committedPayment = (name: string) =>
  Effect.gen(function* () {
    const merchant = yield* (yield* MerchantRepository).create(name)
    return yield* (yield* PaymentRepository).create(paymentInput(merchant.id), context)
  })

const eventsOf = (paymentId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    decodeRows(EventRow)(sql`SELECT id::text, published_at IS NOT NULL AS published FROM outbox_events WHERE aggregate_id = ${paymentId} ORDER BY position`))

it.effect("pay_app cannot hide an event: no lock on the table (the re-test's LOCK TABLE … EXCLUSIVE), no row lock, no mark from a later transaction, no delete or truncate; it still writes and reads events", () =>
  Effect.gen(function* () {
    const { app, owner } = yield* databases
    const paymentId = yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* committedPayment("0108 app")
      // The re-test's attack: the table locked against the publisher's claim, then the mark.
      yield* permissionDenied("outbox_events")(sql.withTransaction(Effect.andThen(
        sql`LOCK TABLE outbox_events IN EXCLUSIVE MODE`,
        sql`UPDATE outbox_events SET published_at = clock_timestamp() WHERE aggregate_id = ${payment.id}`
      )))
      // The mark alone, from a transaction later than the writer's (0104 refused only the writer's own).
      yield* permissionDenied("outbox_events")(sql`UPDATE outbox_events SET published_at = clock_timestamp() WHERE aggregate_id = ${payment.id}`)
      yield* permissionDenied("outbox_events")(sql`UPDATE outbox_events SET attempt_count = attempt_count + 1 WHERE aggregate_id = ${payment.id}`)
      for (const strength of ["UPDATE", "NO KEY UPDATE", "SHARE", "KEY SHARE"]) {
        yield* permissionDenied("outbox_events")(sql.withTransaction(sql.unsafe(`SELECT id FROM outbox_events FOR ${strength}`)))
      }
      // ROW EXCLUSIVE (what its inserts take) stays: it conflicts with none of the publisher's locks.
      for (const mode of ["SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"]) {
        yield* permissionDenied("outbox_events")(sql.withTransaction(sql.unsafe(`LOCK TABLE outbox_events IN ${mode} MODE`)))
      }
      yield* permissionDenied("outbox_events")(sql`DELETE FROM outbox_events WHERE aggregate_id = ${payment.id}`)
      yield* permissionDenied("outbox_events")(sql`TRUNCATE outbox_events`)
      // What the API and operators do with the table still works: write (the create above) and read.
      const [backlog] = yield* decodeRows(Schema.Struct({ unpublished: Schema.Number }))(sql`
        SELECT count(*)::int AS unpublished FROM outbox_events WHERE published_at IS NULL`)
      assert.strictEqual(backlog?.unpublished, 1)
      return payment.id
    }).pipe(Effect.provide(app))
    const events = yield* eventsOf(paymentId).pipe(Effect.provide(owner))
    assert.deepStrictEqual(events.map((event) => event.published), [false])
  }).pipe(Effect.scoped), { timeout: 60_000 })

it.effect("pay_publisher writes no event, changes nothing but the delivery bookkeeping and locks no table (0113); its claim, mark, failure record, re-queue and retention (through its function) pass", () =>
  Effect.gen(function* () {
    const { app, owner, publisher } = yield* databases
    const paymentId = yield* Effect.map(committedPayment("0108 publisher"), (payment) => payment.id).pipe(Effect.provide(app))
    yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const store = yield* OutboxStore
      yield* permissionDenied("outbox_events")(sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
        VALUES (gen_random_uuid(), 'payment', ${paymentId}, 'payment_created', '{"version":1}')`)
      yield* permissionDenied("outbox_events")(sql`UPDATE outbox_events SET payload = '{}'::jsonb WHERE aggregate_id = ${paymentId}`)
      yield* permissionDenied("outbox_events")(sql`UPDATE outbox_events SET aggregate_id = 'pay_elsewhere' WHERE aggregate_id = ${paymentId}`)
      yield* permissionDenied("outbox_events")(sql`TRUNCATE outbox_events`)
      // No table lock (0113: its DELETE let it take ACCESS EXCLUSIVE and stall every payment write),
      // no delete but retention's function.
      for (const mode of ["SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"]) {
        yield* permissionDenied("outbox_events")(sql.withTransaction(sql.unsafe(`LOCK TABLE outbox_events IN ${mode} MODE`)))
      }
      yield* permissionDenied("outbox_events")(sql`DELETE FROM outbox_events WHERE published_at IS NOT NULL`)
      // It reads the outbox only: not the payments, the ledger or the keys.
      for (const table of ["payments", "ledger_entries", "idempotency_keys", "api_keys"]) {
        yield* permissionDenied(table)(sql.unsafe(`SELECT count(*) FROM ${table}`))
      }
      // Its own work: a failed send recorded, then the claim and the mark, a re-queue, the mark again.
      const claimedIds = yield* sql.withTransaction(Effect.gen(function* () {
        const claimed = yield* store.claim(100)
        yield* store.recordFailure(claimed.map((row) => row.id), "broker unavailable (test)")
        return claimed.map((row) => row.id)
      }))
      assert.strictEqual(claimedIds.length, 1)
      yield* sql.withTransaction(Effect.flatMap(store.claim(100), (claimed) => store.markPublished(claimed.map((row) => row.id))))
      assert.deepStrictEqual(yield* store.requeue(0n, 100), { requeued: 1, nextPosition: (yield* positionAfter(paymentId)) })
      yield* sql.withTransaction(Effect.flatMap(store.claim(100), (claimed) => store.markPublished(claimed.map((row) => row.id))))
    }).pipe(Effect.provide(publisher))
    const events = yield* eventsOf(paymentId).pipe(Effect.provide(owner))
    assert.deepStrictEqual(events.map((event) => event.published), [true])
    // Retention: a row published before the deleting transaction began goes.
    const deleted = yield* Effect.flatMap(OutboxStore, (store) => store.deletePublishedBefore(new Date(Date.now() + 60_000), 100)).pipe(Effect.provide(publisher))
    assert.strictEqual(deleted, 1)
    assert.deepStrictEqual(yield* eventsOf(paymentId).pipe(Effect.provide(owner)), [])
  }).pipe(Effect.scoped), { timeout: 60_000 })

it.effect("0114: the payment aggregate's event types in the database are the domain's, no more, no fewer", () =>
  Effect.gen(function* () {
    const { owner } = yield* databases
    const [row] = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
      decodeRows(Schema.Struct({ definition: Schema.String }))(sql`
        SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conname = 'outbox_events_payment_event_types'`)).pipe(Effect.provide(owner))
    const listed = [...(row?.definition ?? "").matchAll(/'([a-z_]+)'::text/g)].map((match) => match[1]).filter((type) => type !== "payment").sort()
    assert.deepStrictEqual(listed, [...domainEventTypes].sort())
  }).pipe(Effect.scoped), { timeout: 60_000 })

/** One past the position of the payment's (one) event: where a re-queue from 0 stops. */
const positionAfter = (paymentId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(decodeRows(Schema.Struct({ position: Schema.BigInt }))(sql`SELECT position FROM outbox_events WHERE aggregate_id = ${paymentId}`), (rows) => (rows[0]?.position ?? -1n) + 1n))

it.effect("the start-up check names PUBLISHER_DATABASE_URL when its role may not do the publisher's work (the API's role), and passes for pay_publisher", () =>
  Effect.gen(function* () {
    const { info } = yield* databases
    const check = PublisherRoleCheck
    const asApp = yield* Effect.exit(Layer.build(check.pipe(Layer.provide(testDatabaseAsRole(info, "pay_app", 1)))))
    assert.isTrue(Exit.isFailure(asApp))
    assert.include(JSON.stringify(asApp), "PUBLISHER_DATABASE_URL: the role pay_app may not update outbox_events")
    const asPublisher = yield* Effect.exit(Layer.build(check.pipe(Layer.provide(testDatabaseAsRole(info, "pay_publisher", 1)))))
    assert.isTrue(Exit.isSuccess(asPublisher))
  }).pipe(Effect.scoped), { timeout: 60_000 })

it.effect("0110, 0111: as pay_app, a real event copied with a 2 MB correlation id (Kafka refused every batch that held it, for ever), an unknown or malformed header, a payload over 16 KiB or with a member that is not a scalar, or a 65-character type is refused, and so is a position of its choosing; the writer's own events pass", () =>
  Effect.gen(function* () {
    const { app, owner } = yield* databases
    const paymentId = yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* committedPayment("0110 app")
      const bounded = (constraint: string) => expectSqlRefusal({ code: "23514", constraint })
      /** The payment's real event copied, with these headers, these members added, and this type when given. */
      const copyWith = (headers: string, payloadExtra: string, eventType?: string) => sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers)
        SELECT gen_random_uuid(), aggregate_type, aggregate_id, coalesce(${eventType ?? null}::text, event_type), event_version,
               payload || ${payloadExtra}::jsonb, ${headers}::jsonb
        FROM outbox_events WHERE aggregate_id = ${payment.id}`
      // The review's row: the payment's real event, its correlation id 2 MB long.
      yield* bounded("outbox_events_headers_known")(sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers)
        SELECT gen_random_uuid(), aggregate_type, aggregate_id, event_type, event_version, payload,
               jsonb_build_object('correlation_id', repeat('x', 2 * 1024 * 1024))
        FROM outbox_events WHERE aggregate_id = ${payment.id}`)
      yield* bounded("outbox_events_headers_known")(copyWith(`{"correlation_id":"c-0110","x-extra":"y"}`, "{}"))
      yield* bounded("outbox_events_headers_known")(copyWith(`{"correlation_id":""}`, "{}"))
      yield* bounded("outbox_events_headers_known")(copyWith(`{"correlation_id":7}`, "{}"))
      yield* bounded("outbox_events_headers_known")(copyWith(`{"traceparent":"00-${"a".repeat(32)}-${"b".repeat(16)}-0"}`, "{}"))
      yield* bounded("outbox_events_headers_known")(copyWith(`[]`, "{}"))
      yield* bounded("outbox_events_payload_bounded")(copyWith(`{"correlation_id":"c-0110"}`, JSON.stringify({ pad: "x".repeat(17_000) })))
      // 0111: members are scalars (a payload nested 6,000 levels deep overflowed the publisher's encoder).
      yield* bounded("outbox_events_payload_flat")(copyWith(`{"correlation_id":"c-0110"}`, JSON.stringify({ nested: { member: 1 } })))
      yield* bounded("outbox_events_payload_flat")(copyWith(`{"correlation_id":"c-0110"}`, `{"deep":${"[".repeat(6_000)}${"]".repeat(6_000)}}`))
      // 0114: an array member too (0111's lax path let `[1]` through), and no type the domain does not know.
      yield* bounded("outbox_events_payload_flat")(copyWith(`{"correlation_id":"c-0110"}`, `{"list":[1]}`))
      yield* bounded("outbox_events_payment_event_types")(copyWith(`{"correlation_id":"c-0110"}`, "{}", "zzz"))
      yield* bounded("outbox_events_names_bounded")(copyWith(`{"correlation_id":"c-0110"}`, "{}", "payment_" + "x".repeat(57)))
      // The identity column is the database's: no position of the writer's choosing.
      yield* permissionDenied("outbox_events")(sql`
        INSERT INTO outbox_events (id, position, aggregate_type, aggregate_id, event_type, event_version, payload, headers)
        OVERRIDING SYSTEM VALUE
        SELECT gen_random_uuid(), -5, aggregate_type, aggregate_id, event_type, event_version, payload, headers
        FROM outbox_events WHERE aggregate_id = ${payment.id}`)
      return payment.id
    }).pipe(Effect.provide(app))
    // Nothing of the above was written: the payment's one real event only.
    assert.strictEqual((yield* eventsOf(paymentId).pipe(Effect.provide(owner))).length, 1)
  }).pipe(Effect.scoped), { timeout: 60_000 })
