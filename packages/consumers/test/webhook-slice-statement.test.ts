// The webhooks consumer's slice as ONE statement (the claim and the deliveries it queues,
// committed on their own: one round trip instead of BEGIN, claim, an insert per record, COMMIT)
// must queue exactly what the transaction's path queues: the same deliveries (endpoint, event,
// payment or refund version, body bytes) and the same outcomes and counters, for a stream with
// refunds, duplicates, stale copies and a redelivery, over endpoints that subscribe to everything,
// to some types, to another merchant, or are disabled. The same stream goes through each path on a
// database of its own (the deliveries' unique key is per endpoint and event). Real Postgres.
import { assert, it } from "@effect/vitest"
import { generateMerchantId, type MerchantId } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { makeTestDatabase } from "@pay/testkit"
import { makeWebhookConsumerHandler, WebhookEndpoints } from "@pay/webhooks"
import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { ConsumerHandler } from "../src/ConsumerModel.ts"
import { makePartitionHandler } from "../src/PartitionBatch.ts"
import { makeRecordProcessor } from "../src/RecordProcessor.ts"
import { testOptions } from "./support.ts"
import { seeded, slicesOf, stream } from "./streams.ts"

const Delivery = Schema.Struct({
  endpoint: Schema.String,
  event_id: Schema.String,
  event_type: Schema.String,
  payment_id: Schema.String,
  refund_id: Schema.NullOr(Schema.String),
  payment_version: Schema.Int,
  body: Schema.String
})
const Claim = Schema.Struct({ offset: Schema.BigInt, outcome: Schema.String })
const Counters = Schema.Struct({ next_offset: Schema.BigInt, applied_count: Schema.BigInt, duplicate_count: Schema.BigInt, stale_count: Schema.BigInt })

it.live("one statement per slice queues the deliveries the transaction's path queues, with the same outcomes and counters", () =>
  Effect.gen(function* () {
    const random = seeded(7)
    const first = yield* generateMerchantId
    const second = yield* generateMerchantId
    const merchants = [first, second]
    const { events } = stream(random, merchants, 80)
    const slices = slicesOf(random, events, 0)
    slices.push(slices.flat().slice(0, 20))

    /** The stream through one path, on a database of its own; what it left, endpoints named by their description. */
    const runOn = (oneStatement: boolean) =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const endpoints = yield* WebhookEndpoints
        for (const id of merchants) yield* sql`INSERT INTO merchants (id, name) VALUES (${id}, 'slice test')`
        const register = (merchant: MerchantId, description: string, event_types: ReadonlyArray<string>) =>
          endpoints.create(merchant, { url: `https://${description}.example/hooks`, event_types, description })
        yield* register(first, "everything", ["*"])
        yield* register(first, "money", ["payment_settled", "refund_succeeded"])
        const { endpoint: disabled } = yield* register(first, "disabled", ["*"])
        yield* endpoints.disable(first, disabled.id)
        yield* register(second, "created", ["payment_created"])
        const webhooks = yield* makeWebhookConsumerHandler
        const handler: ConsumerHandler = oneStatement ? webhooks : { name: webhooks.name, apply: webhooks.apply }
        const settings = { handler, dlqTopic: null, options: testOptions }
        const handlePartition = yield* makePartitionHandler(settings, yield* makeRecordProcessor(settings))
        for (const slice of slices) yield* handlePartition(slice)
        return {
          deliveries: yield* decodeRows(Delivery)(sql`
            SELECT e.description AS endpoint, d.event_id::text AS event_id, d.event_type, d.payment_id, d.refund_id, d.payment_version, d.body
            FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
            ORDER BY e.description, d.event_id`),
          // The transaction's path queues them in slice order: next_attempt_at follows it on both.
          order: yield* decodeRows(Schema.Struct({ event_id: Schema.String }))(sql`
            SELECT d.event_id::text AS event_id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
            WHERE e.description = 'everything' ORDER BY d.next_attempt_at, d.event_id`),
          claims: yield* decodeRows(Claim)(sql`SELECT "offset", outcome FROM processed_events WHERE consumer = 'webhooks' ORDER BY "offset"`),
          counters: yield* decodeRows(Counters)(sql`
            SELECT next_offset, applied_count, duplicate_count, stale_count FROM consumer_offsets WHERE consumer = 'webhooks'`)
        }
      }).pipe(Effect.provide(WebhookEndpoints.layerWith({ allowLoopbackHttp: false }).pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 3 })))))

    const byStatement = yield* runOn(true)
    const byTransaction = yield* runOn(false)
    assert.deepStrictEqual(byStatement, byTransaction)
    assert.isAbove(byStatement.deliveries.length, 100)
    const endpointsReached = new Set(byStatement.deliveries.map((delivery) => delivery.endpoint))
    assert.deepStrictEqual([...endpointsReached].sort(), ["created", "everything", "money"], "never the disabled endpoint")
    assert.isTrue(byStatement.deliveries.some((delivery) => delivery.refund_id !== null), "refund events queued")
    assert.isAbove(Number(byStatement.counters[0]?.duplicate_count ?? 0n), 0)
    assert.isAbove(Number(byStatement.counters[0]?.stale_count ?? 0n), 0)
  }), { timeout: 120_000 })
