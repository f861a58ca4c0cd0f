import { CreatePaymentInput, type Merchant, type MerchantId, type PaymentCommand, type PaymentId } from "@pay/domain"
import { Ledger } from "@pay/ledger"
import { FeeSchedules, SettlementPosting } from "@pay/settlement"
import { makeTestDatabase } from "@pay/testkit"
import { assert } from "@effect/vitest"
import { Acquirer } from "@pay/acquirer"
import { DateTime, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import type { ChangeContext } from "../src/ChangeContext.ts"
import { MerchantRepository } from "@pay/merchants"
import { acquirerReference } from "../src/PaymentOperation.ts"
import { PaymentRepository } from "../src/PaymentRepository.ts"

/**
 * What a settle needs beside the repository: the database ties SETTLED to its settlement posting
 * (migrations/0011_settlement_tie.sql), so a test that settles posts it, as the use case does.
 */
export const settlementServices = SettlementPosting.layer.pipe(Layer.provideMerge(Layer.mergeAll(Ledger.layer, FeeSchedules.layer)))

/**
 * Repositories on a fresh database of their own (cloned from the run's migrated template). The
 * pool has 8 connections so that concurrent tests really run on parallel connections.
 */
export const PaymentsTestLayer = Layer.mergeAll(PaymentRepository.layer, MerchantRepository.layer).pipe(
  Layer.provideMerge(settlementServices),
  Layer.provideMerge(makeTestDatabase({ maxConnections: 8 }))
)

/**
 * `PaymentRepository.apply`, and for `settle` the settlement posting in the same transaction (what
 * `AcquirerTransition`'s settle row does after the capture).
 */
export const applyCommand = (merchantId: MerchantId, paymentId: PaymentId, command: PaymentCommand, changeContext: ChangeContext) =>
  Effect.gen(function* () {
    const payments = yield* PaymentRepository
    if (command._tag !== "settle") return yield* payments.apply(merchantId, paymentId, command, changeContext)
    const sql = yield* SqlClient.SqlClient
    const posting = yield* SettlementPosting
    // The posting with its settlement row and the event carrying the split, as the use case does
    // (an event without the split is refused at COMMIT: migrations/0098).
    return yield* sql.withTransaction(
      payments.apply(merchantId, paymentId, command, changeContext, (settled, alongside) => posting.post(settled, undefined, alongside))
    )
  })

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

/** A payment authorized at the acquirer and by us, expiring `expiresIn_ms` from now (negative: already due). */
export const authorizedExpiringIn = (expiresIn_ms: number) =>
  Effect.gen(function* () {
    const { merchant, payments } = yield* setup
    const created = yield* payments.create(paymentInput(merchant), context)
    const answer = yield* (yield* Acquirer).authorize({
      reference: acquirerReference(created.id, "authorization"),
      paymentId: created.id,
      amount_minor: created.amount_minor,
      currency: created.currency,
      paymentMethod: created.payment_method
    })
    assert.strictEqual(answer._tag, "Approved")
    const expires_at = DateTime.add(yield* DateTime.now, { milliseconds: expiresIn_ms })
    return yield* payments.apply(merchant.id, created.id, { _tag: "authorize", expires_at }, context)
  })
