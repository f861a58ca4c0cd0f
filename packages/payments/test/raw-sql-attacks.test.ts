// Rules the code keeps that only the database keeps for someone with psql: each attacked by a raw
// statement, and each refusal checked by its SQLSTATE and the constraint (or guard) that refused,
// so that a refusal for another reason (a typo, a foreign key) cannot pass for the rule. Each
// boundary is also crossed from the allowed side (500 characters pass, 501 do not).
import { assert, layer } from "@effect/vitest"
import { AMOUNT_MINOR_MAX, generatePaymentId } from "@pay/domain"
import { decodeRows } from "@pay/infra"
import { expectSqlRefusal } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { context, paymentInput, PaymentsTestLayer, setup } from "./support.ts"

const refused = expectSqlRefusal

const checkViolation = (constraint: string) => ({ code: "23514", constraint })

layer(PaymentsTestLayer)("raw SQL against the rules only the code would otherwise keep (real Postgres)", (it) => {
  /** A raw INSERT of a payment; the statement is all that runs (no transaction to commit). */
  const insertPayment = (merchantId: string, columns: { readonly amount_minor?: bigint; readonly description?: string | null; readonly failure_code?: string | null; readonly failure_message?: string | null }) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      return yield* sql.withTransaction(Effect.gen(function* () {
        const id = yield* generatePaymentId
        yield* sql`
          INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, description, status, failure_code,
                                failure_message, version, created_at, updated_at)
          VALUES (${id}, ${merchantId}, ${columns.amount_minor ?? 1_000n}, 'EUR', 'pm_card_visa', ${columns.description ?? null}, 'CREATED',
                  ${columns.failure_code ?? null}, ${columns.failure_message ?? null}, 1, now(), now())`
        // The creation's history row and its event, so that an allowed insert commits
        // (payments_history_complete; payment_status_history_has_event, migration 0010).
        yield* sql`
          INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
          VALUES (${id}, 1, NULL, 'CREATED', 'psql', 'raw-sql', now())`
        yield* sql`
          INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
          VALUES (gen_random_uuid(), 'payment', ${id}, 'payment_created', jsonb_build_object('version', 1))`
        return id
      }))
    })

  it.effect("amount: 0, negative and one above the maximum are refused by payments_amount_minor_check; 1 and the maximum pass", () =>
    Effect.gen(function* () {
      const { merchant } = yield* setup
      for (const amount_minor of [0n, -1n, AMOUNT_MINOR_MAX + 1n]) {
        yield* refused(insertPayment(merchant.id, { amount_minor }), checkViolation("payments_amount_minor_check"))
      }
      yield* insertPayment(merchant.id, { amount_minor: 1n })
      yield* insertPayment(merchant.id, { amount_minor: AMOUNT_MINOR_MAX })
    }))

  it.effect("description: 500 characters pass, 501 are refused by payments_description_check", () =>
    Effect.gen(function* () {
      const { merchant } = yield* setup
      yield* insertPayment(merchant.id, { description: "é".repeat(500) })
      yield* refused(insertPayment(merchant.id, { description: "é".repeat(501) }), checkViolation("payments_description_check"))
    }))

  it.effect("failure details iff FAILED: a CREATED payment with a failure code, or one of the pair without the other, is refused by payments_failure_iff_failed", () =>
    Effect.gen(function* () {
      const { merchant } = yield* setup
      yield* refused(insertPayment(merchant.id, { failure_code: "card_declined", failure_message: "Declined." }), checkViolation("payments_failure_iff_failed"))
      yield* refused(insertPayment(merchant.id, { failure_code: "card_declined" }), checkViolation("payments_failure_iff_failed"))
      yield* refused(insertPayment(merchant.id, { failure_message: "Declined." }), checkViolation("payments_failure_iff_failed"))
    }))

  it.effect("history: a second row with the same (payment_id, version) is refused by the unique constraint (a lost update cannot hide)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant, payments } = yield* setup
      const payment = yield* payments.create(paymentInput(merchant), context)
      yield* refused(
        sql`INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
            VALUES (${payment.id}, 1, NULL, 'CREATED', 'psql', 'raw-sql', now())`,
        { code: "23505", constraint: "payment_status_history_payment_id_version_key" }
      )
    }))

  it.effect("idempotency keys: a duplicate (merchant_id, idempotency_key) is refused by idempotency_keys_merchant_key; the request a key names cannot be edited", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant } = yield* setup
      const insertKey = (id: string, fingerprint: string) => sql`
        INSERT INTO idempotency_keys (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint)
        VALUES (${id}, ${merchant.id}, 'key-1', 'POST', '/v1/payments', ${fingerprint})`
      yield* insertKey(crypto.randomUUID(), "a".repeat(64))
      yield* refused(insertKey(crypto.randomUUID(), "b".repeat(64)), { code: "23505", constraint: "idempotency_keys_merchant_key" })
      const immutable = { code: "23000", message: /the request it names is immutable/ }
      for (const column of ["request_fingerprint", "request_path", "request_method", "request_body"] as const) {
        const value = column === "request_fingerprint" ? "c".repeat(64) : column === "request_path" ? "/v1/other" : column === "request_method" ? "PUT" : '{"amount":1}'
        yield* refused(
          sql`UPDATE idempotency_keys SET ${sql(column)} = ${value}${column === "request_body" ? sql`::jsonb` : sql``}
              WHERE merchant_id = ${merchant.id} AND idempotency_key = 'key-1'`,
          immutable
        )
      }
      const [row] = yield* decodeRows(Schema.Struct({ request_fingerprint: Schema.String }))(sql`
        SELECT request_fingerprint FROM idempotency_keys WHERE merchant_id = ${merchant.id} AND idempotency_key = 'key-1'`)
      assert.strictEqual(row?.request_fingerprint, "a".repeat(64))
    }))

  it.effect("settlement rows: a negative fee or net, or fee + net ≠ gross, is refused by its CHECK before anything else is looked at", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant, payments } = yield* setup
      const payment = yield* payments.create(paymentInput(merchant), context)
      const insert = (fee_minor: bigint, net_minor: bigint) => sql`
        INSERT INTO payment_settlements (payment_id, ledger_transaction_id, gross_minor, fee_minor, net_minor, fee_bps, fee_fixed_minor, currency)
        VALUES (${payment.id}, -1, 1000, ${fee_minor}, ${net_minor}, 0, 0, 'EUR')`
      yield* refused(insert(-1n, 1_001n), checkViolation("payment_settlements_fee_minor_check"))
      yield* refused(insert(1_001n, -1n), checkViolation("payment_settlements_net_minor_check"))
      yield* refused(insert(10n, 10n), checkViolation("payment_settlements_fee_plus_net"))
    }))
})
