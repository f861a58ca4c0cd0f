// `pnpm cli dlq redrive <id>` knew only the settlement generations: a row parked by the webhooks
// consumer failed with an empty `NoHandler:` and could never be re-driven, so that event's webhook
// deliveries (its only effect, which nothing else recreates) were lost for good.
import { assert, it } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { toEventRecord } from "@pay/outbox/CloudEvents"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomUUID } from "node:crypto"
import { describe } from "vitest"
import { makeDeadLetters } from "../src/DeadLetters.ts"
import { redrive } from "../src/Redrive.ts"
import { merchantId, paymentId } from "./support.ts"

const Count = decodeRows(Schema.Struct({ count: Schema.Int }))

/** A payment_created event as the publisher sends it (value and headers), with a fresh ce_id. */
const createdRecord = (merchant: string, payment: string) => {
  const eventId = randomUUID()
  const payload = { type: "payment_created", payment_id: payment, merchant_id: merchant, amount_minor: 1_050, currency: "EUR", version: 1, occurred_at: "2026-12-03T17:00:00.000Z", status: "CREATED" }
  const record = toEventRecord({
    id: eventId, position: 0n, aggregate_type: "payment", aggregate_id: payment, event_type: "payment_created", event_version: 1,
    payload, headers: { correlation_id: "corr-redrive" }, created_at: new Date(), attempt_count: 0
  })
  return { eventId, record }
}

/** A row as the consumer `consumer` parks a record (DeadLetters.park), at `offset`. */
const park = (consumer: string, offset: number, record: { readonly key: string; readonly value: string; readonly headers: Readonly<Record<string, string>> }) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* makeDeadLetters(sql).park(consumer, {
      topic: "t.payments.events", partition: 1, offset: BigInt(offset), key: record.key, value: record.value,
      value_bytes: new TextEncoder().encode(record.value), headers: record.headers, timestamp_ms: Date.now()
    }, "simulated: the deliveries' insert failed", 5)
    const [row] = yield* makeDeadLetters(sql).list({ consumer, includeRedriven: true, limit: 1_000 }).pipe(
      Effect.map((rows) => rows.filter((letter) => letter.offset === BigInt(offset)))
    )
    return row?.id ?? assert.fail(`no row parked for ${consumer} at ${offset}`)
  })

describe("re-drive of parked records (real Postgres)", () => {
  it.effect("a record parked by the webhooks consumer is re-driven: its deliveries are queued exactly once; a copy is a duplicate; an unknown consumer is refused by name", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchant = merchantId()
      yield* sql`INSERT INTO merchants (id, name) VALUES (${merchant}, 'redrive merchant')`
      for (const suffix of ["a", "b"]) {
        yield* sql`INSERT INTO webhook_endpoints (id, merchant_id, url, event_types, status)
                   VALUES (${`we_${"0".repeat(23)}${suffix}`}, ${merchant}, 'https://example.com/hook', ARRAY['*'], 'enabled')`
      }
      const { eventId, record } = createdRecord(merchant, paymentId())
      const deliveries = Count(sql`SELECT count(*)::int AS count FROM webhook_deliveries WHERE event_id = ${eventId}::uuid`)

      const id = yield* park("webhooks", 7, record)
      assert.strictEqual(yield* redrive(id), "applied")
      assert.deepStrictEqual(yield* deliveries, [{ count: 2 }], "one delivery per endpoint of the merchant")
      assert.deepStrictEqual(
        yield* Count(sql`SELECT count(*)::int AS count FROM processed_events WHERE consumer = 'webhooks' AND event_id = ${eventId}::uuid`),
        [{ count: 1 }]
      )
      assert.strictEqual(yield* redrive(id), "already_redriven")
      // The same event parked again at another offset (a re-sent copy): claimed already, nothing queued.
      assert.strictEqual(yield* redrive(yield* park("webhooks", 8, record)), "duplicate")
      assert.deepStrictEqual(yield* deliveries, [{ count: 2 }])
      assert.deepStrictEqual(yield* makeDeadLetters(sql).list({ consumer: "webhooks", includeRedriven: false, limit: 10 }), [])

      // Still failing (the record does not decode): recorded, the row stays, nothing queued.
      const broken = yield* park("webhooks", 9, { ...record, value: "{not json" })
      assert.strictEqual(yield* redrive(broken), "failed")
      const [kept] = yield* makeDeadLetters(sql).list({ consumer: "webhooks", includeRedriven: false, limit: 10 })
      assert.strictEqual(kept?.id, broken)
      assert.isNotNull(kept?.redrive_error ?? null)

      // A consumer no handler stands for: refused with its name and the re-drivable ones.
      const stray = yield* park("ledger.audit", 10, record)
      const refused = yield* Effect.flip(redrive(stray))
      assert.strictEqual(refused._tag, "NoHandler")
      assert.include(refused.message, "consumer ledger.audit")
      assert.include(refused.message, "settlement.g<N>, webhooks")
      assert.strictEqual((yield* makeDeadLetters(sql).list({ consumer: "ledger.audit", includeRedriven: false, limit: 10 })).length, 1, "the row stays")
    }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 2 }))))

  it.effect("dismiss: a record that must never be applied leaves the open list for good and is never re-driven; the dismissal is final, even by raw SQL; a re-parked copy stays dismissed", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const letters = makeDeadLetters(sql)
      const { eventId, record } = createdRecord(merchantId(), paymentId())
      const id = yield* park("webhooks", 20, record)
      assert.isTrue(yield* letters.dismiss(id, "a test event sent to production by hand"))
      assert.isFalse(yield* letters.dismiss(id, "again"), "dismissed already: no open row")
      assert.deepStrictEqual((yield* letters.list({ consumer: "webhooks", includeRedriven: false, limit: 10 })).map((letter) => letter.id), [])
      const [kept] = yield* letters.find(id)
      assert.strictEqual(kept?.dismiss_reason, "a test event sent to production by hand")
      assert.strictEqual(yield* redrive(id), "dismissed")
      assert.deepStrictEqual(
        yield* Count(sql`SELECT count(*)::int AS count FROM processed_events WHERE consumer = 'webhooks' AND event_id = ${eventId}::uuid`),
        [{ count: 0 }],
        "nothing applied"
      )
      // Parked again at the same offset (a reset re-read it): the row keeps its dismissal.
      yield* park("webhooks", 20, record)
      assert.strictEqual((yield* letters.list({ consumer: "webhooks", includeRedriven: false, limit: 10 })).length, 0)
      // The database holds the rule against raw SQL: no un-dismissing, no new reason, not re-driven too.
      for (const statement of [
        sql`UPDATE dead_letter_events SET dismissed_at = NULL, dismiss_reason = NULL WHERE id = ${id}`,
        sql`UPDATE dead_letter_events SET dismiss_reason = 'another' WHERE id = ${id}`,
        sql`UPDATE dead_letter_events SET redriven_at = now() WHERE id = ${id}`
      ]) {
        const refused = yield* Effect.flip(statement)
        assert.strictEqual(refused._tag, "SqlError")
      }
      // A re-driven row cannot be dismissed.
      const other = yield* park("webhooks", 21, createdRecord(merchantId(), paymentId()).record)
      yield* sql`UPDATE dead_letter_events SET redriven_at = now() WHERE id = ${other}`
      assert.isFalse(yield* letters.dismiss(other, "too late"))
    }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 2 }))))
})
