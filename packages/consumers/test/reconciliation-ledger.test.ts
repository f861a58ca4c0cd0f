// Reconciliation against the ledger's own balances and the refunds' cap (an outside database
// review, 2026-12-05, .scratch/sqladv/report.md F1, F2, F8): money corrupted with raw SQL that
// `pnpm cli reconcile` did not see. Each merchant's payable balance is now compared with what its
// settlements, refunds and operators' corrections justify; every payment's refunds with its
// capture; the corrections are listed; only the `payment` aggregate's events count as in flight.
//
// The corruption is written as the owner (postgres) with the guards of its time in place, nothing
// disabled: the database is migrated in three steps, as a deployment attacked before the guards
// existed was. Up to 0086 a payable could be credited under any reference (0087/0090 tied it to a
// settlement, a refund or a correction); up to 0102 a refund inserted at REPEATABLE READ read its
// cap from a snapshot (0103 refuses that level). The rest is then applied, and the corrupted rows
// stay, as they would in production: reconciliation is what finds them.
import { assert, it } from "@effect/vitest"
import { generateMerchantId, generatePaymentId } from "@pay/domain"
import { postgresLayer, sqlFileLoader } from "@pay/infra"
import { NodeServices } from "@effect/platform-node"
import { PgMigrator } from "@effect/sql-pg"
import { acquireEmptyTestDatabase, testDatabaseAsRole } from "@pay/testkit"
import { Deferred, Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { makeReconciliation } from "../src/Reconciliation.ts"

/** Applies the carried migrations up to `last` (all when undefined). */
const migrateTo = (last: number | undefined) =>
  PgMigrator.run({
    loader: sqlFileLoader().pipe(Effect.map((migrations) => migrations.filter(([id]) => last === undefined || id <= last)))
  }).pipe(Effect.provide(NodeServices.layer))

const occurredAt = `to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`

type Leg = readonly [account: string, side: "debit" | "credit", amount_minor: number]
const post = (reference: string, legs: ReadonlyArray<Leg>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const postings = [{
      reference, description: reference,
      legs: legs.map(([account, side, amount_minor]) => ({ account, side, amount_minor, currency: "EUR" }))
    }]
    yield* sql`SELECT outcome FROM ledger_post(${JSON.stringify(postings)}::jsonb)`
  })

const openAccounts = (merchants: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    for (const merchant of merchants) yield* sql`INSERT INTO merchants (id, name) VALUES (${merchant}, 'reconciliation ledger')`
    const rows = [
      ["acquirer:receivable:EUR", "asset"], ["platform:fees:EUR", "revenue"],
      ...merchants.map((merchant) => [`merchant:${merchant}:payable:EUR`, "liability"])
    ]
    for (const [code, type] of rows) {
      yield* sql`INSERT INTO accounts (code, type, currency, allow_negative) VALUES (${code}, ${type}::ledger_account_type, 'EUR', false)`
    }
  })

/** A payment of `amount` EUR, created, authorized and settled (no fee) the way the application writes it (0102's guards). */
const settledPayment = (merchant: string, amount: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const id = yield* generatePaymentId
    const transition = (from: string, to: string, extra: Record<string, unknown>) =>
      sql.withTransaction(Effect.gen(function* () {
        yield* sql`UPDATE payments SET status = ${to}, version = version + 1, updated_at = date_trunc('milliseconds', clock_timestamp()),
                     authorization_expires_at = CASE WHEN ${to} = 'AUTHORIZED' THEN now() + interval '7 days' ELSE authorization_expires_at END,
                     captured_amount_minor = CASE WHEN ${to} = 'SETTLED' THEN amount_minor ELSE captured_amount_minor END
                   WHERE id = ${id}`
        yield* sql`INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
                   SELECT id, version, ${from}, ${to}, 'test', 'test', updated_at FROM payments WHERE id = ${id}`
        yield* sql`INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
                   SELECT gen_random_uuid(), 'payment', p.id, ${`payment_${to.toLowerCase()}`},
                     jsonb_build_object('type', ${`payment_${to.toLowerCase()}`}::text, 'status', p.status, 'version', p.version, 'currency', p.currency,
                       'payment_id', p.id, 'merchant_id', p.merchant_id, 'occurred_at', ${sql.literal(occurredAt)},
                       'amount_minor', p.amount_minor, 'previous_status', ${from}::text) || ${JSON.stringify(extra)}::jsonb
                   FROM payments p WHERE p.id = ${id}`
        if (to !== "SETTLED") return
        yield* post(`payment:${id}:settlement`, [["acquirer:receivable:EUR", "debit", amount], [`merchant:${merchant}:payable:EUR`, "credit", amount]])
        yield* sql`INSERT INTO payment_settlements (payment_id, ledger_transaction_id, currency, gross_minor, fee_minor, net_minor, fee_bps, fee_fixed_minor)
                   SELECT ${id}, t.id, 'EUR', ${amount}, 0, ${amount}, 0, 0 FROM transactions t WHERE t.reference = ${`payment:${id}:settlement`}`
      }))
    yield* sql.withTransaction(Effect.gen(function* () {
      yield* sql`INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, status, version, created_at, updated_at)
                 VALUES (${id}, ${merchant}, ${amount}, 'EUR', 'pm_card_visa', 'CREATED', 1, date_trunc('milliseconds', now()), date_trunc('milliseconds', now()))`
      yield* sql`INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
                 VALUES (${id}, 1, NULL, 'CREATED', 'test', 'test', date_trunc('milliseconds', now()))`
      yield* sql`INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
                 SELECT gen_random_uuid(), 'payment', p.id, 'payment_created',
                   jsonb_build_object('type', 'payment_created', 'status', 'CREATED', 'version', 1, 'currency', p.currency, 'payment_id', p.id,
                     'merchant_id', p.merchant_id, 'occurred_at', ${sql.literal(occurredAt)}, 'amount_minor', p.amount_minor)
                 FROM payments p WHERE p.id = ${id}`
    }))
    yield* transition("CREATED", "AUTHORIZED", {})
    yield* transition("AUTHORIZED", "SETTLED", { fee_minor: 0, net_minor: amount, captured_amount_minor: amount })
    return id
  })

const refundIdOf = (paymentId: string, n: number) => `re_${paymentId.slice(4, 27)}${n}`

/** A PENDING refund and its refund_created event, as RefundStore writes them (no statement of its own: the caller's transaction). */
const pendingRefund = (paymentId: string, refundId: string, amount: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`INSERT INTO refunds (id, payment_id, merchant_id, amount_minor, currency, status, created_at, updated_at)
               SELECT ${refundId}, p.id, p.merchant_id, ${amount}, p.currency, 'PENDING', date_trunc('milliseconds', now()), date_trunc('milliseconds', now())
               FROM payments p WHERE p.id = ${paymentId}`
    yield* sql`INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
               SELECT gen_random_uuid(), 'payment', r.payment_id, 'refund_created',
                 jsonb_build_object('type', 'refund_created', 'reason', NULL, 'status', 'PENDING', 'version', 1, 'currency', r.currency,
                   'refund_id', r.id, 'payment_id', r.payment_id, 'merchant_id', r.merchant_id,
                   'occurred_at', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'amount_minor', r.amount_minor)
               FROM refunds r WHERE r.id = ${refundId}`
  })

/** The refund succeeds (fee kept): its reversal posting, its row, its event, in one transaction. */
const refundSucceeds = (merchant: string, paymentId: string, refundId: string, amount: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(Effect.gen(function* () {
      const reference = `payment:${paymentId}:refund:${refundId}`
      yield* post(reference, [[`merchant:${merchant}:payable:EUR`, "debit", amount], ["acquirer:receivable:EUR", "credit", amount]])
      yield* sql`UPDATE refunds SET status = 'SUCCEEDED', updated_at = date_trunc('milliseconds', clock_timestamp()),
                   ledger_transaction_id = (SELECT id FROM transactions WHERE reference = ${reference})
                 WHERE id = ${refundId}`
      yield* sql`INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
                 SELECT gen_random_uuid(), 'payment', r.payment_id, 'refund_succeeded',
                   jsonb_build_object('type', 'refund_succeeded', 'reason', NULL, 'status', 'SUCCEEDED', 'version', 2, 'currency', r.currency,
                     'refund_id', r.id, 'payment_id', r.payment_id, 'merchant_id', r.merchant_id,
                     'occurred_at', to_char(r.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                     'amount_minor', r.amount_minor, 'fee_returned_minor', 0)
                 FROM refunds r WHERE r.id = ${refundId}`
    }))
  })

/**
 * F1 as the review did it: a transaction at REPEATABLE READ takes its snapshot; another refunds
 * the whole capture and commits; the first then refunds it again, its cap read from the snapshot.
 */
const raceTwoFullRefunds = (paymentId: string, amount: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const snapshotTaken = yield* Deferred.make<void>()
    const otherCommitted = yield* Deferred.make<void>()
    const stale = sql.withTransaction(Effect.gen(function* () {
      yield* sql`SELECT 1`
      yield* Deferred.succeed(snapshotTaken, undefined)
      yield* Deferred.await(otherCommitted)
      yield* pendingRefund(paymentId, refundIdOf(paymentId, 1), amount)
    })).pipe(Effect.provideService(SqlClient.BeginTransaction, "BEGIN ISOLATION LEVEL REPEATABLE READ"))
    const other = Effect.gen(function* () {
      yield* Deferred.await(snapshotTaken)
      yield* sql.withTransaction(pendingRefund(paymentId, refundIdOf(paymentId, 2), amount))
      yield* Deferred.succeed(otherCommitted, undefined)
    })
    yield* Effect.all([stale, other], { concurrency: "unbounded" })
  })

it.effect("each payable is compared with its settlements, refunds and corrections (corrections listed); refunds past the capture are a difference; another aggregate's event is never in flight; a clean merchant agrees, as the owner and as pay_consumer", () =>
  Effect.gen(function* () {
    const info = yield* acquireEmptyTestDatabase
    const owner = yield* Layer.build(postgresLayer({ url: Redacted.make(info.url), maxConnections: 3, applicationName: "pay-test-owner" }))
    const [overRefunded, overCredited, clean] = [yield* generateMerchantId, yield* generateMerchantId, yield* generateMerchantId]

    const reconciled = yield* Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // Before 0087: 1000 on a payable under a reference that is neither a settlement's, a refund's nor a correction's.
      yield* migrateTo(86)
      yield* openAccounts([overRefunded, overCredited, clean])
      yield* post("adjustment:pre-0087", [["acquirer:receivable:EUR", "debit", 1_000], [`merchant:${overCredited}:payable:EUR`, "credit", 1_000]])

      // Before 0103: 20000 of refunds held on a 10000 capture, one of them SUCCEEDED (the payable pays it from another payment).
      yield* migrateTo(102)
      const captured = yield* settledPayment(overRefunded, 10_000)
      yield* settledPayment(overRefunded, 15_000)
      yield* raceTwoFullRefunds(captured, 10_000)
      yield* refundSucceeds(overRefunded, captured, refundIdOf(captured, 2), 10_000)
      const cleanPayment = yield* settledPayment(clean, 5_000)
      yield* sql.withTransaction(pendingRefund(cleanPayment, refundIdOf(cleanPayment, 1), 2_000))
      yield* refundSucceeds(clean, cleanPayment, refundIdOf(cleanPayment, 1), 2_000)
      yield* migrateTo(undefined)

      const before = yield* makeReconciliation(sql).reconcile()
      assert.deepStrictEqual(before.differences.map((row) => row.merchant_id).sort(), [overRefunded, overCredited].sort())
      assert.deepStrictEqual(before.corrections, [])
      const refundRow = before.differences.find((row) => row.merchant_id === overRefunded)
      assert.deepStrictEqual(
        [refundRow?.refund_mismatched_payment_count, refundRow?.refund_mismatched_payment_ids, refundRow?.payable_balance_minor, refundRow?.payable_expected_minor],
        [1n, [captured], 15_000n, 15_000n],
        "the payable agrees (the refund was posted); the payment's refunds do not"
      )
      const creditRow = before.differences.find((row) => row.merchant_id === overCredited)
      assert.deepStrictEqual([creditRow?.payable_balance_minor, creditRow?.payable_expected_minor, creditRow?.refund_mismatched_payment_count], [1_000n, 0n, 0n])
      const cleanRow = before.rows.find((row) => row.merchant_id === clean)
      assert.deepStrictEqual([cleanRow?.payable_balance_minor, cleanRow?.payable_expected_minor, cleanRow?.refunds_refunded_minor], [3_000n, 3_000n, 2_000n])

      // An operator's correction (the owner is not pay_app, 0091/0103): legitimate, so no difference, and listed.
      yield* post("correction:incident-7", [["acquirer:receivable:EUR", "debit", 700], [`merchant:${clean}:payable:EUR`, "credit", 700]])
      // F8: an event of another aggregate names the clean merchant; it is no money in flight.
      yield* sql`INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
                 VALUES (gen_random_uuid(), 'paymentx', ${cleanPayment}, 'payment_settled',
                         jsonb_build_object('type', 'payment_settled', 'merchant_id', ${clean}::text, 'currency', 'EUR',
                                            'amount_minor', 99000000, 'fee_minor', 0, 'net_minor', 99000000))`
      return yield* makeReconciliation(sql).reconcile()
    }).pipe(Effect.provide(owner))

    // The role reconcile runs as (the CLI's consumer commands, the consumers process) reads every table it needs.
    const asConsumer = yield* Effect.gen(function* () {
      return yield* makeReconciliation(yield* SqlClient.SqlClient).reconcile()
    }).pipe(Effect.provide(testDatabaseAsRole(info, "pay_consumer", 1)))
    for (const report of [reconciled, asConsumer]) {
      assert.deepStrictEqual(report.differences.map((row) => row.merchant_id).sort(), [overRefunded, overCredited].sort())
      assert.deepStrictEqual(report.corrections, [{ merchant_id: clean, currency: "EUR", correction_count: 1n, corrections_minor: 700n }])
      const cleanRow = report.rows.find((row) => row.merchant_id === clean)
      assert.deepStrictEqual(
        [cleanRow?.payable_balance_minor, cleanRow?.payable_expected_minor, cleanRow?.in_flight_count, cleanRow?.in_flight_gross_minor],
        [3_700n, 3_700n, 1n, 5_000n],
        "the correction justified and listed; in flight: the real payment_settled, not the other aggregate's"
      )
    }
  }).pipe(Effect.scoped), { timeout: 60_000 })
