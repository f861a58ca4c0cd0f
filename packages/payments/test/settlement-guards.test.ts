// The database guards of settlement (migrations/0006_settlement.sql) and the posting service on
// a fresh migrated database: raw SQL as the table owner must be refused by PostgreSQL itself, and
// the service's own refusals (defects) must roll the status change back with the posting.
import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import { AmountMinor, CreatePaymentInput, Payment } from "@pay/domain"
import { Ledger, type Leg } from "@pay/ledger"
import { OutboxWriter } from "@pay/outbox"
import { MerchantRepository } from "@pay/merchants"
import { makeTestDatabase } from "@pay/testkit"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { acquirerReceivable, FeeSchedules, merchantPayable, platformFees, SettlementPosting, settlementReference } from "@pay/settlement"
import { type ChangeContext, PaymentRepository } from "../src/index.ts"
import {
  assertBooksConsistent,
  assertLedgerVerifies,
  assertNotSettled,
  assertSettledOnce,
  defaultTerms,
  expectedFee
} from "@pay/settlement/test-support"

const layerOptions = { excludeTestServices: true, timeout: "60 seconds" } as const

const ServicesLayer = Layer.mergeAll(SettlementPosting.layer, PaymentRepository.layer, MerchantRepository.layer).pipe(
  Layer.provideMerge(Layer.mergeAll(Ledger.layer, FeeSchedules.layer, OutboxWriter.layer)),
  Layer.provideMerge(makeTestDatabase({ maxConnections: 12 }))
)

const context: ChangeContext = { actor: "test:settlement", correlationId: "corr-settlement-guards" }

/** A new merchant's payment, AUTHORIZED (through the repository, as the API would). */
const authorizedPayment = (amount_minor: number, currency: string) =>
  Effect.gen(function* () {
    const merchants = yield* MerchantRepository
    const payments = yield* PaymentRepository
    const merchant = yield* merchants.create("Guards")
    const input = Schema.decodeUnknownSync(CreatePaymentInput)({
      merchant_id: merchant.id,
      amount_minor,
      currency,
      payment_method: "pm_card_visa"
    })
    const created = yield* payments.create(input, context)
    return yield* payments.apply(merchant.id, created.id, { _tag: "authorize" }, context)
  })

/** What the settle operation does in its one transaction: status change, then the posting. */
const settleInOneTransaction = (payment: Payment) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const payments = yield* PaymentRepository
    const settlement = yield* SettlementPosting
    return yield* sql.withTransaction(
      payments.apply(payment.merchant_id, payment.id, { _tag: "settle" }, context).pipe(Effect.flatMap(settlement.post))
    )
  })

const postgresError = (error: SqlError): { readonly code: string; readonly message: string } => {
  const cause: unknown = error.reason.cause
  const code = typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : ""
  return { code, message: cause instanceof Error ? cause.message : String(cause) }
}

/** Runs SQL that PostgreSQL must refuse; its SQLSTATE and message. */
const refusedBy = <A, R>(effect: Effect.Effect<A, SqlError, R>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(effect)
    if (Exit.isSuccess(exit)) return assert.fail("the database accepted what it must refuse")
    const error = Exit.findErrorOption(exit)
    if (error._tag === "None") return assert.fail(`expected an SqlError, got ${Cause.pretty(exit.cause)}`)
    return postgresError(error.value)
  })

/** A balanced posting with the given reference on the settlement accounts of the payment. */
// Under a settlement-shaped reference: since 0087 a posting that credits a merchant's payable under
// any other reference is refused at once, before the guards these tests attack are reached.
const settlementLikePosting = (payment: Payment, reference: string): Effect.Effect<bigint, unknown, Ledger> =>
  Effect.gen(function* () {
    const ledger = yield* Ledger
    const receivable = yield* ledger.ensureAccount(acquirerReceivable(payment.currency))
    const payable = yield* ledger.ensureAccount(merchantPayable(payment.merchant_id, payment.currency))
    const leg = (account: string): ReadonlyArray<Leg> => [{ account, amount_minor: payment.amount_minor, currency: payment.currency }]
    const posted = yield* ledger.postTransaction({ reference, description: "raw test posting", debits: leg(receivable.code), credits: leg(payable.code) })
    return posted.transaction.id
  })

const insertSettlementRow = (row: {
  readonly paymentId: string
  readonly ledgerTransactionId: bigint
  readonly currency: string
  readonly gross_minor: bigint
  readonly fee_minor: bigint
  readonly net_minor: bigint
}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`
      INSERT INTO payment_settlements (payment_id, ledger_transaction_id, currency, gross_minor, fee_minor, net_minor, fee_bps, fee_fixed_minor)
      VALUES (${row.paymentId}, ${row.ledgerTransactionId}, ${row.currency}, ${row.gross_minor}, ${row.fee_minor}, ${row.net_minor}, 0, 0)`
  })

const countWhere = (query: "transactions" | "settlements", paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = query === "transactions"
      ? yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*) AS n FROM transactions WHERE reference = ${settlementReference(paymentId)}`)
      : yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*) AS n FROM payment_settlements WHERE payment_id = ${paymentId}`)
    return Number(row?.n ?? -1n)
  })

const expectedOf = (payment: Payment, terms = defaultTerms) => ({
  paymentId: payment.id,
  gross_minor: payment.amount_minor,
  currency: payment.currency,
  terms
})

layer(ServicesLayer, layerOptions)("settlement guards in PostgreSQL and the posting service", (it) => {
  it.effect("the service: status change and posting in one transaction — three legs, one settlement row with the terms applied", () =>
    Effect.gen(function* () {
      const payment = yield* authorizedPayment(1_050, "USD")
      const record = yield* settleInOneTransaction(payment)
      assert.deepStrictEqual({ fee: record.fee_minor, net: record.net_minor }, { fee: 60n, net: 990n })
      yield* assertSettledOnce(expectedOf(payment))
      yield* assertBooksConsistent
    }))

  it.effect("a merchant's schedule applies per currency; changing it later never rewrites a settlement's recorded terms", () =>
    Effect.gen(function* () {
      const fees = yield* FeeSchedules
      const payment = yield* authorizedPayment(100_000, "JPY")
      const jpy = { fee_bps: 360, fee_fixed_minor: 0n }
      yield* fees.set(payment.merchant_id, "JPY", jpy)
      assert.deepStrictEqual(yield* fees.get(payment.merchant_id, "EUR"), defaultTerms, "no EUR row: the platform default")
      yield* settleInOneTransaction(payment)
      yield* fees.set(payment.merchant_id, "JPY", { fee_bps: 1_000, fee_fixed_minor: 50n })
      assert.deepStrictEqual(yield* fees.get(payment.merchant_id, "JPY"), { fee_bps: 1_000, fee_fixed_minor: 50n }, "upserted")
      yield* assertSettledOnce(expectedOf(payment, jpy))
      assert.strictEqual(expectedFee(100_000n, jpy), 3_600n)
      yield* assertBooksConsistent
    }))

  it.effect("merchant_fee_schedules refuses terms out of range (bps 0..10 000, fixed ≥ 0)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* authorizedPayment(500, "USD")
      const tooMuch = yield* refusedBy(sql`INSERT INTO merchant_fee_schedules (merchant_id, currency, fee_bps, fee_fixed_minor)
                                          VALUES (${payment.merchant_id}, 'USD', 10001, 0)`)
      assert.strictEqual(tooMuch.code, "23514")
      assert.include(tooMuch.message, "merchant_fee_schedules_fee_bps_check")
      const negative = yield* refusedBy(sql`INSERT INTO merchant_fee_schedules (merchant_id, currency, fee_bps, fee_fixed_minor)
                                           VALUES (${payment.merchant_id}, 'USD', 100, -1)`)
      assert.strictEqual(negative.code, "23514")
      assert.include(negative.message, "merchant_fee_schedules_fee_fixed_minor_check")
    }))

  it.effect("a second payment_settlements row for a payment fails (primary key), even pointing at another balanced posting", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* authorizedPayment(2_000, "EUR")
      const record = yield* settleInOneTransaction(payment)
      const refused = yield* refusedBy(insertSettlementRow({
        paymentId: payment.id,
        ledgerTransactionId: record.ledger_transaction_id,
        currency: "EUR",
        gross_minor: 2_000n,
        fee_minor: 0n,
        net_minor: 2_000n
      }))
      assert.strictEqual(refused.code, "23505")
      assert.include(refused.message, "payment_settlements_pkey")
      // A second posting under another reference, and a row for it: still the primary key.
      const other = yield* sql.withTransaction(Effect.gen(function* () {
        const id = yield* settlementLikePosting(payment, `payment:${payment.id}:other:settlement`)
        return yield* refusedBy(insertSettlementRow({ paymentId: payment.id, ledgerTransactionId: id, currency: "EUR", gross_minor: 2_000n, fee_minor: 0n, net_minor: 2_000n }))
      })).pipe(Effect.exit)
      assert.isTrue(Exit.isFailure(other), "the transaction is aborted by the refusal")
      assert.strictEqual(yield* countWhere("settlements", payment.id), 1)
      yield* assertSettledOnce(expectedOf(payment))
      yield* assertBooksConsistent
    }))

  it.effect("a settlement row (with its posting) for a payment that is not SETTLED fails at COMMIT, and takes its posting with it", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* authorizedPayment(1_500, "USD")
      const refused = yield* refusedBy(sql.withTransaction(Effect.gen(function* () {
        const id = yield* settlementLikePosting(payment, settlementReference(payment.id)).pipe(Effect.orDie)
        yield* insertSettlementRow({ paymentId: payment.id, ledgerTransactionId: id, currency: "USD", gross_minor: 1_500n, fee_minor: 0n, net_minor: 1_500n })
      })))
      assert.strictEqual(refused.code, "23000")
      assert.include(refused.message, "recorded but the payment is AUTHORIZED")
      yield* assertNotSettled(payment.id)

      // The same through the service: posting without the status change (a caller's bug). The
      // code refuses a payment that is not SETTLED (no captured amount: a defect) ...
      const settlement = yield* SettlementPosting
      const unsettled = yield* Effect.exit(sql.withTransaction(settlement.post(payment)))
      assert.isTrue(Exit.isFailure(unsettled) && Cause.hasDies(unsettled.cause), "posting an AUTHORIZED payment is a defect")
      // ... and a caller that claims SETTLED while the row is not: the database refuses at COMMIT.
      const claimed = new Payment({ ...payment, status: "SETTLED", captured_amount_minor: payment.amount_minor, version: payment.version + 1 })
      const viaService = Exit.findErrorOption(yield* Effect.exit(sql.withTransaction(settlement.post(claimed))))
      assert.isTrue(viaService._tag === "Some" && viaService.value._tag === "SqlError", "every statement succeeds; the COMMIT is refused")
      if (viaService._tag === "Some" && viaService.value._tag === "SqlError") {
        const viaServiceError = postgresError(viaService.value)
        assert.strictEqual(viaServiceError.code, "23000")
        assert.include(viaServiceError.message, "recorded but the payment is AUTHORIZED")
      }
      yield* assertNotSettled(payment.id)
      yield* assertBooksConsistent
    }))

  it.effect("a settlement row whose gross or currency differs from the payment's (gross: the captured amount) fails at COMMIT, status change and posting included", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payments = yield* PaymentRepository
      const payment = yield* authorizedPayment(1_050, "USD")
      const attempt = (gross_minor: bigint, currency: string) =>
        refusedBy(sql.withTransaction(Effect.gen(function* () {
          yield* payments.apply(payment.merchant_id, payment.id, { _tag: "settle" }, context).pipe(Effect.orDie)
          const id = yield* settlementLikePosting(payment, settlementReference(payment.id)).pipe(Effect.orDie)
          yield* insertSettlementRow({ paymentId: payment.id, ledgerTransactionId: id, currency, gross_minor, fee_minor: 0n, net_minor: gross_minor })
        })))
      const wrongGross = yield* attempt(999n, "USD")
      assert.strictEqual(wrongGross.code, "23000")
      assert.include(wrongGross.message, "is 999 USD but the payment captured 1050 USD")
      const wrongCurrency = yield* attempt(1_050n, "EUR")
      assert.strictEqual(wrongCurrency.code, "23000")
      assert.include(wrongCurrency.message, "is 1050 EUR but the payment captured 1050 USD")
      // A partial capture of 600 posted as the authorized 1050: refused, the captured amount is the money.
      const authorizedNotCaptured = yield* refusedBy(sql.withTransaction(Effect.gen(function* () {
        yield* payments.apply(payment.merchant_id, payment.id, { _tag: "settle", amount_minor: AmountMinor.make(600n) }, context).pipe(Effect.orDie)
        const id = yield* settlementLikePosting(payment, settlementReference(payment.id)).pipe(Effect.orDie)
        yield* insertSettlementRow({ paymentId: payment.id, ledgerTransactionId: id, currency: "USD", gross_minor: 1_050n, fee_minor: 0n, net_minor: 1_050n })
      })))
      assert.strictEqual(authorizedNotCaptured.code, "23000")
      assert.include(authorizedNotCaptured.message, "is 1050 USD but the payment captured 600 USD")
      yield* assertNotSettled(payment.id)
      yield* assertBooksConsistent
    }))

  it.effect("a settlement row pointing at a posting that is not the payment's settlement posting fails at COMMIT", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payments = yield* PaymentRepository
      const payment = yield* authorizedPayment(800, "USD")
      const refused = yield* refusedBy(sql.withTransaction(Effect.gen(function* () {
        yield* payments.apply(payment.merchant_id, payment.id, { _tag: "settle" }, context).pipe(Effect.orDie)
        const id = yield* settlementLikePosting(payment, `payment:${payment.id}:not-the:settlement`).pipe(Effect.orDie)
        yield* insertSettlementRow({ paymentId: payment.id, ledgerTransactionId: id, currency: "USD", gross_minor: 800n, fee_minor: 0n, net_minor: 800n })
      })))
      assert.strictEqual(refused.code, "23000")
      assert.include(refused.message, "not its settlement posting")
      yield* assertNotSettled(payment.id)
      yield* assertBooksConsistent
    }))

  it.effect("fee + net must equal gross, and the row is append-only: UPDATE, DELETE and TRUNCATE are refused", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* authorizedPayment(3_000, "USD")
      yield* settleInOneTransaction(payment)
      const other = yield* authorizedPayment(3_000, "USD")
      const split = yield* refusedBy(
        insertSettlementRow({ paymentId: other.id, ledgerTransactionId: 1n, currency: "USD", gross_minor: 3_000n, fee_minor: 10n, net_minor: 2_000n })
      )
      assert.strictEqual(split.code, "23514")
      assert.include(split.message, "payment_settlements_fee_plus_net")
      const update = yield* refusedBy(sql`UPDATE payment_settlements SET fee_minor = 0, net_minor = gross_minor WHERE payment_id = ${payment.id}`)
      assert.strictEqual(update.code, "23000")
      assert.include(update.message, "append-only: UPDATE rejected")
      const remove = yield* refusedBy(sql`DELETE FROM payment_settlements WHERE payment_id = ${payment.id}`)
      assert.strictEqual(remove.code, "23000")
      assert.include(remove.message, "append-only: DELETE rejected")
      const truncate = yield* refusedBy(sql`TRUNCATE payment_settlements`)
      assert.strictEqual(truncate.code, "23000")
      assert.include(truncate.message, "append-only: TRUNCATE rejected")
      yield* assertSettledOnce(expectedOf(payment))
      yield* assertBooksConsistent
    }))

  it.effect("a second ledger posting with the settlement reference is refused (unique); through the Ledger, other legs are a ReferenceConflict and the same legs a replay", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const ledger = yield* Ledger
      const payment = yield* authorizedPayment(1_050, "USD")
      const record = yield* settleInOneTransaction(payment)
      const raw = yield* refusedBy(sql`INSERT INTO transactions (reference, description) VALUES (${settlementReference(payment.id)}, 'again')`)
      assert.strictEqual(raw.code, "23505")
      assert.include(raw.message, "transactions_reference_key")

      const receivable = acquirerReceivable("USD").code
      const payable = merchantPayable(payment.merchant_id, "USD").code
      const fees = platformFees("USD").code
      const conflict = yield* Effect.flip(ledger.postTransaction({
        reference: settlementReference(payment.id),
        description: "a second settlement",
        debits: [{ account: receivable, amount_minor: 1_050n, currency: "USD" }],
        credits: [{ account: payable, amount_minor: 1_050n, currency: "USD" }]
      }))
      assert.strictEqual(conflict._tag, "ReferenceConflict")
      // Exactly the legs the settlement posted: the ledger answers a replay and writes nothing —
      // which is why SettlementPosting treats a replay as a defect rather than a success.
      const replay = yield* ledger.postTransaction({
        reference: settlementReference(payment.id),
        description: "the same settlement again",
        debits: [{ account: receivable, amount_minor: 1_050n, currency: "USD" }],
        credits: [{ account: payable, amount_minor: 990n, currency: "USD" }, { account: fees, amount_minor: 60n, currency: "USD" }]
      })
      assert.isTrue(replay.replayed)
      assert.strictEqual(replay.transaction.id, record.ledger_transaction_id)
      yield* assertSettledOnce(expectedOf(payment))
      yield* assertBooksConsistent
    }))

  it.effect("SETTLED is terminal in the database: UPDATE … SET status = 'SETTLED' on a SETTLED payment is refused by the state-machine trigger", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* authorizedPayment(1_000, "USD")
      yield* settleInOneTransaction(payment)
      const again = yield* refusedBy(sql`UPDATE payments SET status = 'SETTLED', version = version + 1, updated_at = now() WHERE id = ${payment.id}`)
      assert.strictEqual(again.code, "23000")
      assert.include(again.message, "is SETTLED (terminal) and can no longer change")
      const back = yield* refusedBy(sql`UPDATE payments SET status = 'AUTHORIZED', version = version + 1, updated_at = now() WHERE id = ${payment.id}`)
      assert.strictEqual(back.code, "23000")
      assert.include(back.message, "is SETTLED (terminal) and can no longer change")
      yield* assertSettledOnce(expectedOf(payment))
      yield* assertBooksConsistent
    }))

  it.effect("posting twice for one payment (a caller's bug) is a defect and changes nothing", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const settlement = yield* SettlementPosting
      const payments = yield* PaymentRepository
      const payment = yield* authorizedPayment(1_234, "USD")
      yield* settleInOneTransaction(payment)
      const settled = yield* payments.findById(payment.merchant_id, payment.id)
      assert.strictEqual(settled.status, "SETTLED")
      const second = yield* Effect.exit(sql.withTransaction(settlement.post(settled)))
      assert.isTrue(Exit.isFailure(second) && Cause.hasDies(second.cause), "a defect, not a typed error")
      assert.strictEqual(yield* countWhere("transactions", payment.id), 1)
      assert.strictEqual(yield* countWhere("settlements", payment.id), 1)
      yield* assertSettledOnce(expectedOf(payment))
      yield* assertBooksConsistent
    }))

  it.effect("a database failure inside the real posting (a lock timeout on its last write) is a typed SettlementUnavailable, not a defect; the status change rolls back", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payments = yield* PaymentRepository
      const settlement = yield* SettlementPosting
      const payment = yield* authorizedPayment(6_000, "USD")
      // Another session holds a lock that blocks inserts into payment_settlements only.
      const locked = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.forkChild(sql.withTransaction(Effect.gen(function* () {
        yield* sql`LOCK TABLE payment_settlements IN SHARE MODE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(release).pipe(Effect.timeout(10_000))
      })))
      yield* Deferred.await(locked).pipe(Effect.timeout(10_000))
      const exit = yield* Effect.exit(sql.withTransaction(Effect.gen(function* () {
        const settled = yield* payments.apply(payment.merchant_id, payment.id, { _tag: "settle" }, context)
        // After apply (which sets its own lock timeout for the rest of the transaction).
        yield* sql`SET LOCAL lock_timeout = '200ms'`
        return yield* settlement.post(settled)
      })))
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      assert.isTrue(Exit.isFailure(exit) && !Cause.hasDies(exit.cause), `a typed failure, not a defect: ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "success"}`)
      const error = Exit.findErrorOption(exit)
      assert.isTrue(error._tag === "Some" && error.value._tag === "SettlementUnavailable", "SettlementUnavailable (503, retry)")
      yield* assertNotSettled(payment.id)
      yield* assertBooksConsistent
    }))

  it.effect("20 concurrent settle transactions of one payment on parallel connections: one wins, the others are refused by the state machine; one posting", () =>
    Effect.gen(function* () {
      const payment = yield* authorizedPayment(4_321, "USD")
      const exits = yield* Effect.forEach(Array.from({ length: 20 }), () => Effect.exit(settleInOneTransaction(payment)), {
        concurrency: "unbounded"
      })
      const won = exits.filter(Exit.isSuccess)
      assert.strictEqual(won.length, 1)
      for (const exit of exits) {
        if (Exit.isSuccess(exit)) continue
        const error = Exit.findErrorOption(exit)
        assert.isTrue(error._tag === "Some" && (error.value._tag === "InvalidTransition" || error.value._tag === "ConcurrentModification"), Cause.pretty(exit.cause))
      }
      yield* assertSettledOnce(expectedOf(payment))
      yield* assertBooksConsistent
    }))
})

// Its own database: it leaves a posting squatting on a settlement reference.
layer(ServicesLayer, layerOptions)("a ledger refusal the posting does not expect", (it) => {
  it.effect("the settlement reference already holds another posting: a defect, and the status change rolls back with it", () =>
    Effect.gen(function* () {
      const ledger = yield* Ledger
      const payment = yield* authorizedPayment(1_050, "USD")
      const a = yield* ledger.ensureAccount({ code: "test:squatter:a", type: "asset", currency: "USD", allowNegative: true })
      const b = yield* ledger.ensureAccount({ code: "test:squatter:b", type: "liability", currency: "USD", allowNegative: true })
      // Settlement references are reserved (trigger transactions_settlement_has_row,
      // migrations/0011_settlement_tie.sql): only the owner, with DDL on this file's own database,
      // can squat one, which is the defect this test is about.
      const sql = yield* SqlClient.SqlClient
      yield* sql`ALTER TABLE transactions DISABLE TRIGGER transactions_settlement_has_row`
      yield* ledger.postTransaction({
        reference: settlementReference(payment.id),
        description: "someone else's posting under the settlement reference",
        debits: [{ account: a.code, amount_minor: 5n, currency: "USD" }],
        credits: [{ account: b.code, amount_minor: 5n, currency: "USD" }]
      })
      yield* sql`ALTER TABLE transactions ENABLE TRIGGER transactions_settlement_has_row`
      const exit = yield* Effect.exit(settleInOneTransaction(payment))
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause), "ReferenceConflict inside the posting is a defect")
      const payments = yield* PaymentRepository
      const after = yield* payments.findById(payment.merchant_id, payment.id)
      assert.strictEqual(after.status, "AUTHORIZED", "the status change rolled back")
      assert.strictEqual(yield* countWhere("settlements", payment.id), 0)
      assert.strictEqual(yield* countWhere("transactions", payment.id), 1, "only the squatter")
      yield* assertLedgerVerifies
    }))
})

