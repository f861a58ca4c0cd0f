// The warning before an authorization lapses (issue 19): the expiry job writes `payment_expiring`
// ONCE per payment for authorizations that lapse within the lead time (not for those further out,
// nor for those already due: expiry handles them); the database refuses a warning without its
// event, for a payment that is not AUTHORIZED or of another expiry, a second one, and its removal.
import { assert, layer } from "@effect/vitest"
import { AcquirerSimulator } from "@pay/acquirer"
import { decodeDomainEvent, eventAggregate } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { PaymentExpiry } from "../src/PaymentExpiry.ts"
import { authorizedExpiringIn, context, paymentInput, PaymentsTestLayer, postgresError, setup } from "./support.ts"

const TestLayer = PaymentExpiry.layer.pipe(
  Layer.provideMerge(AcquirerSimulator.layerWith({ latency_ms: 0 })),
  Layer.provideMerge(PaymentsTestLayer)
)

const hour_ms = 3_600_000


const Row = Schema.Struct({ payload: Schema.Unknown })
const warningsOf = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* decodeRows(Row)(sql`SELECT payload FROM outbox_events WHERE aggregate_id = ${paymentId} AND event_type = 'payment_expiring'`)
  })

layer(TestLayer, { excludeTestServices: true, timeout: "60 seconds" })("the warning before an authorization expires (real Postgres)", (it) => {
  it.effect("payment_expiring is written once per payment lapsing within the lead time; not for one further out, nor for one already due; lead 0 writes none", () =>
    Effect.gen(function* () {
      const expiry = yield* PaymentExpiry
      const soon = yield* authorizedExpiringIn(hour_ms)
      const later = yield* authorizedExpiringIn(3 * hour_ms)
      const due = yield* authorizedExpiringIn(-1_000)
      assert.strictEqual(yield* expiry.warnDue(0, 100), 0, "lead 0: the warning is off")
      assert.isAtLeast(yield* expiry.warnDue(2 * hour_ms, 1_000), 1)
      const [warning, ...more] = yield* warningsOf(soon.id)
      assert.deepStrictEqual(more, [], "one warning")
      const event = yield* decodeDomainEvent(warning?.payload)
      if (event.type !== "payment_expiring") return assert.fail(`not payment_expiring: ${event.type}`)
      assert.strictEqual(event.version, soon.version, "the payment's current version: nothing changed")
      assert.deepStrictEqual(eventAggregate(event), { id: `${soon.id}:expiring`, version: 1 }, "its own aggregate for ordering checks")
      assert.strictEqual(event.authorization_expires_at.epochMilliseconds, soon.authorization_expires_at?.epochMilliseconds)
      assert.deepStrictEqual(yield* warningsOf(later.id), [])
      assert.deepStrictEqual(yield* warningsOf(due.id), [])
      // Run again, with a longer lead: the warned payment is not warned twice, the later one now is.
      yield* expiry.warnDue(4 * hour_ms, 1_000)
      assert.strictEqual((yield* warningsOf(soon.id)).length, 1)
      assert.strictEqual((yield* warningsOf(later.id)).length, 1)
    }))

  it.effect("raw SQL: a warning without its event, for a payment that is not AUTHORIZED or of another expiry, a second warning, and its deletion are refused", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant, payments } = yield* setup
      const created = yield* payments.create(paymentInput(merchant), context)
      const authorized = yield* authorizedExpiringIn(hour_ms)
      const expiresAt = new Date(authorized.authorization_expires_at?.epochMilliseconds ?? 0)
      const warn = (paymentId: string, at: Date) => sql`INSERT INTO payment_expiry_warnings (payment_id, authorization_expires_at) VALUES (${paymentId}, ${at})`
      // The event names the expiry it announces (0097: its warning, written with it, names the same).
      const event = (paymentId: string) => sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
        VALUES (gen_random_uuid(), 'payment', ${paymentId}, 'payment_expiring', jsonb_build_object('authorization_expires_at', ${expiresAt}::timestamptz))`
      const silent = postgresError(yield* Effect.flip(warn(authorized.id, expiresAt)))
      assert.match(silent.message, /without its outbox event payment_expiring/)
      const notAuthorized = postgresError(yield* Effect.flip(sql.withTransaction(Effect.andThen(warn(created.id, expiresAt), event(created.id)))))
      assert.match(notAuthorized.message, /only an AUTHORIZED payment is warned/)
      const otherExpiry = postgresError(yield* Effect.flip(sql.withTransaction(Effect.andThen(warn(authorized.id, new Date(0)), event(authorized.id)))))
      assert.match(otherExpiry.message, /of its own expiry/)
      yield* sql.withTransaction(Effect.andThen(warn(authorized.id, expiresAt), event(authorized.id)))
      const twice = postgresError(yield* Effect.flip(sql.withTransaction(Effect.andThen(warn(authorized.id, expiresAt), event(authorized.id)))))
      assert.strictEqual(twice.code, "23505", "once per payment")
      const removed = postgresError(yield* Effect.flip(sql`DELETE FROM payment_expiry_warnings WHERE payment_id = ${authorized.id}`))
      assert.match(removed.message, /a warning is a fact/)
    }))
})
