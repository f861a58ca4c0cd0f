import { CreatePaymentInput, type Merchant } from "@pay/domain"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Layer, Schema } from "effect"
import type { SqlError } from "effect/sql/SqlError"
import type { ChangeContext } from "../src/ChangeContext.ts"
import { MerchantRepository } from "@pay/merchants"
import { PaymentRepository } from "../src/PaymentRepository.ts"

/**
 * Repositories on a fresh database of their own (cloned from the run's migrated template). The
 * pool has 8 connections so that concurrent tests really run on parallel connections.
 */
export const PaymentsTestLayer = Layer.mergeAll(PaymentRepository.layer, MerchantRepository.layer).pipe(
  Layer.provideMerge(makeTestDatabase({ maxConnections: 8 }))
)

export const context: ChangeContext = {
  actor: "test:payments",
  correlationId: "corr-test-1",
  traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
}

/** The command fixtures are the domain's own (one copy, in its exported test support). */
export { commandFor } from "@pay/domain/test-support"

export const paymentInput = (merchant: Merchant, overrides: Record<string, unknown> = {}): CreatePaymentInput =>
  Schema.decodeUnknownSync(CreatePaymentInput)({
    merchant_id: merchant.id,
    amount_minor: 1999,
    currency: "EUR",
    payment_method: "pm_card_visa",
    ...overrides
  })

/** A merchant and the repositories, for tests that need a payment to work on. */
export const setup = Effect.gen(function* () {
  const merchants = yield* MerchantRepository
  const payments = yield* PaymentRepository
  const merchant = yield* merchants.create("Test merchant")
  return { merchants, payments, merchant }
})

/** What Postgres said: SQLSTATE and message (the driver keeps them on the reason's cause). */
export const postgresError = (error: SqlError): { readonly reason: string; readonly code: string; readonly message: string } => {
  const cause: unknown = error.reason.cause
  const code = typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : ""
  const message = cause instanceof Error ? cause.message : String(cause)
  return { reason: error.reason._tag, code, message }
}
