// A webhook delivery says what its columns say (migrations/0102_webhook_deliveries_truthful.sql).
// The outside refund attack, as pay_consumer, inserted a delivery for merchant B's endpoint that
// carried merchant A's real event: the sender signed it with B's secret and B read A's refund.
// Raw SQL past the code, on real payments and real outbox events (consumers off: no delivery
// exists until these statements write one).
import { assert, layer } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { expectSqlRefusal } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomUUID } from "node:crypto"
import { authorizedPayment, describeAnswer, jsonOf, newKey, post, settle, type TestMerchant } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const layerOptions = { excludeTestServices: true, timeout: "60 seconds" } as const
const refused = (message: RegExp) => expectSqlRefusal({ code: "23000", message })

const endpointOf = (merchant: TestMerchant) =>
  Effect.gen(function* () {
    const answer = yield* post(merchant, "/v1/webhook_endpoints", newKey("endpoint"), { json: { url: "https://merchant.example/hooks", event_types: ["*"] } })
    assert.strictEqual(answer.status, 201, describeAnswer(answer))
    return String(jsonOf(answer)["id"])
  })

const Envelope = Schema.Struct({ id: Schema.String, body: Schema.String })

layer(inProcessAppLayer(), layerOptions)("webhook deliveries tell the truth (raw SQL, real events)", (it) => {
  it.effect("a delivery to merchant B of merchant A's payment is refused whatever its body says; a body that is not the outbox's event is refused; the outbox's own envelope passes", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* createMerchant("Truthful Alice")
      const bob = yield* createMerchant("Truthful Bob")
      const paymentId = yield* authorizedPayment(alice, 9_300n, "EUR")
      assert.strictEqual((yield* settle(alice, paymentId, newKey("settle"))).status, 200)
      const [aliceEndpoint, bobEndpoint] = [yield* endpointOf(alice), yield* endpointOf(bob)]
      // The settle's event as the outbox holds it, in the envelope the consumer writes.
      const [settled] = yield* decodeRows(Envelope)(sql`
        SELECT o.id::text AS id,
          jsonb_build_object('id', o.id, 'type', o.event_type, 'timestamp', o.payload->'occurred_at', 'data', o.payload)::text AS body
        FROM outbox_events o WHERE o.aggregate_id = ${paymentId} AND o.event_type = 'payment_settled'`)
      if (settled === undefined) return yield* Effect.die(new Error("no payment_settled in the outbox"))
      const insert = (endpointId: string, merchantId: string, eventId: string, body: string) => sql`
        INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id, event_type, payment_id, payment_version, body)
        VALUES (gen_random_uuid(), ${endpointId}, ${merchantId}, ${eventId}::uuid, 'payment_settled', ${paymentId}, 3, ${body})`
      const namingBob = (body: string) => body.replace(`"merchant_id": "${alice.merchantId}"`, `"merchant_id": "${bob.merchantId}"`)
      assert.notStrictEqual(namingBob(settled.body), settled.body)

      // A's event to B's endpoint, its body rewritten to name B: A's payment is not B's.
      yield* insert(bobEndpoint, bob.merchantId, settled.id, namingBob(settled.body)).pipe(refused(/: payment pay_\w+ is not merchant mer_\w+'s$/))
      // Under a fresh event id (no outbox row to compare): still A's payment.
      const freshId = randomUUID()
      yield* insert(bobEndpoint, bob.merchantId, freshId, namingBob(settled.body.replace(settled.id, freshId)))
        .pipe(refused(/: payment pay_\w+ is not merchant mer_\w+'s$/))
      // A's own endpoint, A's real event with another amount: not the event the outbox holds.
      yield* insert(aliceEndpoint, alice.merchantId, settled.id, settled.body.replace(`"amount_minor": 9300`, `"amount_minor": 93000`))
        .pipe(refused(/: the body is not event [0-9a-f-]+ as the outbox holds it$/))
      // The same event with a number written otherwise (equal as a number, not as sent).
      yield* insert(aliceEndpoint, alice.merchantId, settled.id, settled.body.replace(`"amount_minor": 9300`, `"amount_minor": 9300.000`))
        .pipe(refused(/: the body writes a number other than as a plain integer$/))
      // The outbox's own envelope for A's endpoint: accepted.
      yield* insert(aliceEndpoint, alice.merchantId, settled.id, settled.body)
      const [count] = yield* decodeRows(Schema.Struct({ n: Schema.Number }))(sql`SELECT count(*)::int AS n FROM webhook_deliveries WHERE event_id = ${settled.id}::uuid`)
      assert.strictEqual(count?.n, 1)
    }))
})
