import { generateMerchantId, generatePaymentId, type MerchantId, PaymentEvent, type PaymentEventType, type PaymentId } from "@pay/domain"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomUUID } from "node:crypto"
import { type DeliverableEvent, enqueueDeliveries } from "../../src/DeliveryQueue.ts"

/** A merchant row (the endpoints and deliveries reference it). */
export const createMerchant = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const id = yield* generateMerchantId
  yield* sql`INSERT INTO merchants (id, name) VALUES (${id}, 'webhook test merchant')`
  return id
})

export const newPaymentId = generatePaymentId

const statusOf: Record<PaymentEventType, string> = {
  payment_created: "CREATED",
  payment_authorized: "AUTHORIZED",
  payment_settled: "SETTLED",
  payment_failed: "FAILED",
  payment_canceled: "CANCELED",
  payment_expired: "EXPIRED",
  payment_expiring: "AUTHORIZED"
}
const typeAt: ReadonlyArray<PaymentEventType> = ["payment_created", "payment_authorized", "payment_settled"]

/** The event of `version` of a payment (1 created, 2 authorized, 3 settled), decoded by the domain's schema. */
export const paymentEvent = (merchantId: MerchantId, paymentId: PaymentId, version: number): DeliverableEvent => {
  const type = typeAt[version - 1] ?? "payment_settled"
  const event = Schema.decodeUnknownSync(PaymentEvent)({
    type,
    payment_id: paymentId,
    merchant_id: merchantId,
    amount_minor: 1050,
    currency: "EUR",
    version,
    occurred_at: new Date(Date.UTC(2026, 11, 2, 9, 0, version)).toISOString(),
    status: statusOf[type],
    ...(version > 1 ? { previous_status: version === 2 ? "CREATED" : "AUTHORIZED" } : {})
  })
  return { eventId: randomUUID(), event }
}

/** The expiry warning of a payment authorized at version 2 (its version repeats the authorization's). */
export const expiringEvent = (merchantId: MerchantId, paymentId: PaymentId): DeliverableEvent => ({
  eventId: randomUUID(),
  event: Schema.decodeUnknownSync(PaymentEvent)({
    type: "payment_expiring",
    payment_id: paymentId,
    merchant_id: merchantId,
    amount_minor: 1050,
    currency: "EUR",
    version: 2,
    occurred_at: new Date(Date.UTC(2026, 11, 2, 9, 0, 30)).toISOString(),
    status: "AUTHORIZED",
    authorization_expires_at: new Date(Date.UTC(2026, 11, 9, 9, 0, 2)).toISOString()
  })
})

/** What the consumer will do: enqueue in its own transaction (here: one per event). */
export const enqueue = (event: DeliverableEvent) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.withTransaction(enqueueDeliveries(event))
  })
