// Raw SQL against the settlement tie (migrations/0011_settlement_tie.sql) and the outbox guards
// (migrations/0010_outbox_guards.sql), as the table owner: issue 11 "a settled payment is not tied to
// its money by the database", issue 12 "every committed state change produces its event" and
// "retention never deletes unpublished events". Each case committed before those migrations.
import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import { CreatePaymentInput, type Payment } from "@pay/domain"
import { Ledger } from "@pay/ledger"
import { OutboxWriter } from "@pay/outbox"
import { MerchantRepository } from "@pay/merchants"
import { expectSqlRefusal, makeTestDatabase } from "@pay/testkit"
import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { acquirerReceivable, FeeSchedules, merchantPayable, SettlementPosting, settlementReference } from "@pay/settlement"
import { type ChangeContext, PaymentRepository } from "../src/index.ts"
import { assertBooksConsistent, assertNotSettled } from "@pay/settlement/test-support"

const layerOptions = { excludeTestServices: true, timeout: "60 seconds" } as const

const ServicesLayer = Layer.mergeAll(SettlementPosting.layer, PaymentRepository.layer, MerchantRepository.layer).pipe(
  Layer.provideMerge(Layer.mergeAll(Ledger.layer, FeeSchedules.layer, OutboxWriter.layer)),
  Layer.provideMerge(makeTestDatabase({ maxConnections: 6 }))
)

const context: ChangeContext = { actor: "test:attacks", correlationId: "corr-attacks" }

const authorizedPayment = (amount_minor: number) =>
  Effect.gen(function* () {
    const merchants = yield* MerchantRepository
    const payments = yield* PaymentRepository
    const merchant = yield* merchants.create("Attacked")
    const input = Schema.decodeUnknownSync(CreatePaymentInput)({
      merchant_id: merchant.id, amount_minor, currency: "USD", payment_method: "pm_card_visa"
    })
    const created = yield* payments.create(input, context)
    return yield* payments.apply(merchant.id, created.id, { _tag: "authorize" }, context)
  })

/** What psql would type to settle by hand: the status, its history row and its event. */
const rawSettle = (sql: SqlClient.SqlClient, payment: Payment) =>
  Effect.gen(function* () {
    yield* sql`UPDATE payments SET status = 'SETTLED', captured_amount_minor = amount_minor, version = version + 1, updated_at = now()
               WHERE id = ${payment.id}`
    yield* sql`
      INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
      VALUES (${payment.id}, ${payment.version + 1}, 'AUTHORIZED', 'SETTLED', 'psql', 'raw', now())`
    yield* sql`
      INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
      VALUES (gen_random_uuid(), 'payment', ${payment.id}, 'payment_settled', jsonb_build_object('version', ${payment.version + 1}::int))`
  })

const countOutbox = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Schema.Struct({ n: Schema.Number }))(sql`
      SELECT count(*)::int AS n FROM outbox_events WHERE aggregate_id = ${paymentId}`)
    return row?.n ?? -1
  })

layer(ServicesLayer, layerOptions)("attacks on the settlement tie and the outbox (raw SQL)", (it) => {
  it.effect("UPDATE payments SET status = 'SETTLED' with history and event but no posting cannot commit", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* authorizedPayment(1_000)
      const refusal = yield* expectSqlRefusal({ code: "23000" })(sql.withTransaction(rawSettle(sql, payment)))
      assert.include(refusal.message, "reached SETTLED without its settlement posting")
      yield* assertNotSettled(payment.id)
    }))

  it.effect("a settlement posting that credits another merchant's payable cannot commit, with its row and status", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const ledger = yield* Ledger
      const payment = yield* authorizedPayment(1_000)
      const thief = yield* (yield* MerchantRepository).create("Thief")
      const receivable = yield* ledger.ensureAccount(acquirerReceivable("USD"))
      const stolen = yield* ledger.ensureAccount(merchantPayable(thief.id, "USD"))
      const refusal = yield* expectSqlRefusal({ code: "23000" })(sql.withTransaction(Effect.gen(function* () {
        yield* rawSettle(sql, payment)
        const posted = yield* ledger.postTransaction({
          reference: settlementReference(payment.id),
          description: "settlement to the wrong merchant",
          debits: [{ account: receivable.code, amount_minor: 1_000n, currency: "USD" }],
          credits: [{ account: stolen.code, amount_minor: 1_000n, currency: "USD" }]
        }).pipe(Effect.orDie)
        yield* sql`
          INSERT INTO payment_settlements (payment_id, ledger_transaction_id, currency, gross_minor, fee_minor, net_minor, fee_bps, fee_fixed_minor)
          VALUES (${payment.id}, ${posted.transaction.id}, 'USD', 1000, 0, 1000, 0, 0)`
      })))
      assert.match(refusal.message, /settlement of payment .*: posting \d+ has legs/)
      assert.include(refusal.message, thief.id)
      yield* assertNotSettled(payment.id)
      yield* assertBooksConsistent
    }))

  it.effect("a posting under a settlement reference without its settlement row cannot commit", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const ledger = yield* Ledger
      const payment = yield* authorizedPayment(700)
      const receivable = yield* ledger.ensureAccount(acquirerReceivable("USD"))
      const payable = yield* ledger.ensureAccount(merchantPayable(payment.merchant_id, "USD"))
      const refusal = yield* expectSqlRefusal({ code: "23000" })(sql.withTransaction(
        ledger.postTransaction({
          reference: settlementReference(payment.id),
          description: "money moved, payment still AUTHORIZED",
          debits: [{ account: receivable.code, amount_minor: 700n, currency: "USD" }],
          credits: [{ account: payable.code, amount_minor: 700n, currency: "USD" }]
        }).pipe(Effect.orDie)
      ))
      assert.include(refusal.message, "uses a settlement reference without a payment_settlements row")
      yield* assertNotSettled(payment.id)
    }))

  it.effect("checks fired early with SET CONSTRAINTS ALL IMMEDIATE cannot be spent: legs added to the settlement posting afterwards are refused", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payments = yield* PaymentRepository
      const settlement = yield* SettlementPosting
      const ledger = yield* Ledger
      const payment = yield* authorizedPayment(2_000)
      const thief = yield* (yield* MerchantRepository).create("Thief")
      const stolen = yield* ledger.ensureAccount(merchantPayable(thief.id, "USD"))
      const payable = yield* ledger.ensureAccount(merchantPayable(payment.merchant_id, "USD"))
      yield* expectSqlRefusal({ code: "LG003", message: /already has \d+ entries from an earlier statement/ })(sql.withTransaction(Effect.gen(function* () {
        const settled = yield* payments.apply(payment.merchant_id, payment.id, { _tag: "settle" }, context).pipe(Effect.orDie)
        const record = yield* settlement.post(settled).pipe(Effect.orDie)
        yield* sql`SET CONSTRAINTS ALL IMMEDIATE`
        // Balanced on its own: move the merchant's net to the thief under the settlement posting.
        yield* sql`
          INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency)
          VALUES (${record.ledger_transaction_id}, 10, ${payable.id}, 'debit', ${record.net_minor}, 'USD'),
                 (${record.ledger_transaction_id}, 11, ${stolen.id}, 'credit', ${record.net_minor}, 'USD')`
      })))
      yield* assertNotSettled(payment.id)
      yield* assertBooksConsistent
    }))

  it.effect("a committed state change without its outbox event cannot commit, even with the check fired early", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* authorizedPayment(500)
      const before = yield* countOutbox(payment.id)
      const refusal = yield* expectSqlRefusal({ code: "23000" })(sql.withTransaction(Effect.gen(function* () {
        yield* sql`UPDATE payments SET status = 'FAILED', version = version + 1, updated_at = now(),
                   failure_code = 'raw', failure_message = 'by hand' WHERE id = ${payment.id}`
        yield* sql`
          INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
          VALUES (${payment.id}, ${payment.version + 1}, 'AUTHORIZED', 'FAILED', 'psql', 'raw', now())`
      })))
      assert.include(refusal.message, "without its outbox event payment_failed")
      // The change and its event written, the check fired early (spent), then the event marked
      // published and deleted: once with a mark of now, once with a backdated mark. Each is refused
      // by the guard it attacks (the messages say which): the check must not be fired before the
      // history row exists, or another guard refuses first and the test proves nothing (outside
      // test audit: SET CONSTRAINTS came first here, and only the SQLSTATE was checked).
      const markThenDelete = (mark: "now" | "backdated") =>
        expectSqlRefusal({ code: "23000" })(sql.withTransaction(Effect.gen(function* () {
          yield* sql`UPDATE payments SET status = 'FAILED', version = version + 1, updated_at = now(),
                     failure_code = 'raw', failure_message = 'by hand' WHERE id = ${payment.id}`
          yield* sql`
            INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
            VALUES (gen_random_uuid(), 'payment', ${payment.id}, 'payment_failed', jsonb_build_object('version', ${payment.version + 1}::int))`
          yield* sql`
            INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
            VALUES (${payment.id}, ${payment.version + 1}, 'AUTHORIZED', 'FAILED', 'psql', 'raw', now())`
          yield* sql`SET CONSTRAINTS ALL IMMEDIATE`
          yield* (mark === "now"
            ? sql`UPDATE outbox_events SET published_at = clock_timestamp() WHERE aggregate_id = ${payment.id} AND event_type = 'payment_failed'`
            : sql`UPDATE outbox_events SET published_at = now() - interval '1 day' WHERE aggregate_id = ${payment.id} AND event_type = 'payment_failed'`)
          yield* sql`DELETE FROM outbox_events WHERE aggregate_id = ${payment.id} AND event_type = 'payment_failed'`
        })))
      assert.include((yield* markThenDelete("now")).message, "written or marked published by this same transaction")
      assert.include((yield* markThenDelete("backdated")).message, "a mark is never backdated")
      const [after] = yield* sql`SELECT status FROM payments WHERE id = ${payment.id}`
      assert.strictEqual(after?.["status"], "AUTHORIZED")
      // A backdated event (so that it would look old enough to delete) is refused at insert.
      const backdated = yield* expectSqlRefusal({ code: "23000" })(sql`
        INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload, created_at)
        VALUES (gen_random_uuid(), 'payment', ${payment.id}, 'payment_failed', '{}'::jsonb, now() - interval '1 day')`)
      assert.include(backdated.message, "backdated")
      assert.strictEqual(yield* countOutbox(payment.id), before)
    }))

  it.effect("unpublished events cannot be deleted or truncated; published ones from earlier transactions can", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* authorizedPayment(600)
      const events = yield* countOutbox(payment.id)
      assert.strictEqual(events, 2, "created and authorized")
      const deleted = yield* expectSqlRefusal({ code: "23000" })(sql`DELETE FROM outbox_events WHERE aggregate_id = ${payment.id}`)
      assert.include(deleted.message, "not published yet")
      const truncated = yield* expectSqlRefusal({ code: "23000" })(sql`TRUNCATE outbox_events`)
      assert.include(truncated.message, "TRUNCATE on outbox_events is not allowed")
      // Marked published in the deleting transaction itself: refused; a backdated mark, so that it
      // would look published before this transaction began, is refused at the mark (0088: it used
      // to pass, and the never-published events were deleted).
      const markedNow = yield* expectSqlRefusal({ code: "23000" })(sql.withTransaction(Effect.gen(function* () {
        yield* sql`UPDATE outbox_events SET published_at = clock_timestamp() WHERE aggregate_id = ${payment.id}`
        yield* sql`DELETE FROM outbox_events WHERE aggregate_id = ${payment.id}`
      })))
      assert.include(markedNow.message, "written or marked published by this same transaction")
      const markedBackdated = yield* expectSqlRefusal({ code: "23000" })(sql.withTransaction(Effect.gen(function* () {
        yield* sql`UPDATE outbox_events SET published_at = now() - interval '1 day' WHERE aggregate_id = ${payment.id}`
        yield* sql`DELETE FROM outbox_events WHERE aggregate_id = ${payment.id}`
      })))
      assert.include(markedBackdated.message, "a mark is never backdated")
      // Nor in two steps: marked now, then moved back, in one transaction.
      const movedBack = yield* expectSqlRefusal({ code: "23000" })(sql.withTransaction(Effect.gen(function* () {
        yield* sql`UPDATE outbox_events SET published_at = clock_timestamp() WHERE aggregate_id = ${payment.id}`
        yield* sql`UPDATE outbox_events SET published_at = now() - interval '1 day' WHERE aggregate_id = ${payment.id}`
      })))
      assert.include(movedBack.message, "a mark is never backdated")
      assert.strictEqual(yield* countOutbox(payment.id), 2)
      // What retention does: rows published by an earlier transaction go.
      yield* sql`UPDATE outbox_events SET published_at = clock_timestamp() WHERE aggregate_id = ${payment.id}`
      yield* sql`DELETE FROM outbox_events WHERE aggregate_id = ${payment.id} AND published_at IS NOT NULL`
      assert.strictEqual(yield* countOutbox(payment.id), 0)
    }))

  // Issue 12, "never attacked by raw SQL": the constraints exist since 0003/0006; these prove they
  // refuse, with their SQLSTATE and constraint name, and that the boundary value itself passes.
  it.effect("a raw payment: amount 0, negative or over the bound, description of 501 characters are refused; 500 passes", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchant = yield* (yield* MerchantRepository).create("Boundaries")
      const insert = (id: string, amount_minor: bigint, description: string) =>
        sql.withTransaction(Effect.gen(function* () {
          yield* sql`
            INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, description, status, version, created_at, updated_at)
            VALUES (${id}, ${merchant.id}, ${amount_minor}, 'USD', 'pm_card_visa', ${description}, 'CREATED', 1, now(), now())`
          yield* sql`
            INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
            VALUES (${id}, 1, NULL, 'CREATED', 'psql', 'raw', now())`
          yield* sql`
            INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
            VALUES (gen_random_uuid(), 'payment', ${id}, 'payment_created', jsonb_build_object('version', 1))`
        }))
      const id = (n: number) => `pay_${String(n).padStart(24, "0")}`
      for (const amount_minor of [0n, -1n, 100_000_000_000n]) {
        yield* expectSqlRefusal({ code: "23514", constraint: "payments_amount_minor_check" })(insert(id(1), amount_minor, "x"))
      }
      yield* expectSqlRefusal({ code: "23514", constraint: "payments_description_check" })(insert(id(2), 1n, "d".repeat(501)))
      yield* insert(id(3), 99_999_999_999n, "d".repeat(500))
      // (payment_id, version) is unique in the history: a second row for version 1.
      yield* expectSqlRefusal({ code: "23505", constraint: "payment_status_history_payment_id_version_key" })(sql`
        INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
        VALUES (${id(3)}, 1, NULL, 'CREATED', 'psql', 'again', now())`)
    }))

  it.effect("failure details iff FAILED: a FAILED without them, or an AUTHORIZED with them, is refused", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* authorizedPayment(900)
      yield* expectSqlRefusal({ code: "23514", constraint: "payments_failure_iff_failed" })(sql`
        UPDATE payments SET status = 'FAILED', version = version + 1, updated_at = now() WHERE id = ${payment.id}`)
      const created = yield* (yield* PaymentRepository).create(Schema.decodeUnknownSync(CreatePaymentInput)({
        merchant_id: payment.merchant_id, amount_minor: 5, currency: "USD", payment_method: "pm_card_visa"
      }), context)
      yield* expectSqlRefusal({ code: "23514", constraint: "payments_failure_iff_failed" })(sql`
        UPDATE payments SET status = 'AUTHORIZED', version = version + 1, updated_at = now(), authorization_expires_at = now(),
               failure_code = 'oops', failure_message = 'not failed' WHERE id = ${created.id}`)
    }))

  it.effect("a settlement row with a negative fee or net is refused by its CHECK", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payment = yield* authorizedPayment(1_000)
      const row = (fee_minor: bigint, net_minor: bigint) => sql`
        INSERT INTO payment_settlements (payment_id, ledger_transaction_id, currency, gross_minor, fee_minor, net_minor, fee_bps, fee_fixed_minor)
        VALUES (${payment.id}, 1, 'USD', 1000, ${fee_minor}, ${net_minor}, 0, 0)`
      yield* expectSqlRefusal({ code: "23514", constraint: "payment_settlements_fee_minor_check" })(row(-1n, 1_001n))
      yield* expectSqlRefusal({ code: "23514", constraint: "payment_settlements_net_minor_check" })(row(1_001n, -1n))
    }))
})
