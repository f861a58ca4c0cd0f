import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import {
  AMOUNT_MINOR_MAX,
  allowedTransitionPairs,
  currencyCodes,
  generatePaymentId,
  generateRefundId,
  hiddenCharacterReason,
  looksLikeCardNumber,
  type Merchant,
  type Payment,
  type PaymentCommandName,
  paymentStatuses,
  type PaymentStatus,
  terminalStatuses,
  tokenHoldsCardDigits
} from "@pay/domain"
import { Effect, Schema } from "effect"
import * as fc from "fast-check"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { PaymentRepository } from "../src/PaymentRepository.ts"
import { applyCommand, commandFor, context, paymentInput, PaymentsTestLayer, postgresError, setup } from "./support.ts"

/**
 * The second line of defence: what happens when someone bypasses the code and writes raw SQL.
 * Every statement here is what a human with psql could type.
 */

const pathTo: Readonly<Record<PaymentStatus, ReadonlyArray<PaymentCommandName>>> = {
  CREATED: [],
  AUTHORIZED: ["authorize"],
  SETTLED: ["authorize", "settle"],
  FAILED: ["decline"],
  CANCELED: ["authorize", "cancel"],
  EXPIRED: ["authorize", "expire"]
}

/** A payment in `status`, reached through the repository (the legal way). */
const paymentIn = (merchant: Merchant, status: PaymentStatus) =>
  Effect.gen(function* () {
    const payments = yield* PaymentRepository
    let payment: Payment = yield* payments.create(paymentInput(merchant), context)
    for (const name of pathTo[status]) payment = yield* applyCommand(merchant.id, payment.id, commandFor(name), context)
    return payment
  })

const expectRejected = <A, R>(effect: Effect.Effect<A, SqlError, R>, pattern: RegExp) =>
  Effect.gen(function* () {
    const error = postgresError(yield* Effect.flip(effect))
    assert.strictEqual(error.code, "23000", `expected SQLSTATE 23000, got ${error.code}: ${error.message}`)
    assert.match(error.message, pattern)
    return error
  })

const statusOf = (id: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* decodeRows(Schema.Struct({ status: Schema.String, version: Schema.Number }))(sql`SELECT status, version FROM payments WHERE id = ${id}`)
    return rows[0]
  })

const legal = new Set(allowedTransitionPairs.map(([from, to]) => `${from}->${to}`))
const matrix = paymentStatuses.flatMap((from) => paymentStatuses.map((to) => ({ from, to })))

layer(PaymentsTestLayer)("payments triggers against raw SQL (real Postgres)", (it) => {
  it.effect("the 6x6 matrix: a raw UPDATE (with history and outbox rows) succeeds exactly for the allowed pairs, SETTLED only with its posting", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant } = yield* setup
      const outcomes: Array<string> = []
      for (const { from, to } of matrix) {
        const payment = yield* paymentIn(merchant, from)
        const failed = to === "FAILED"
        // A well-formed raw transition: version + 1, time forward, failure details iff FAILED,
        // and its audit row. Only the pair itself decides.
        const attempt = sql.withTransaction(
          Effect.gen(function* () {
            yield* sql`
              UPDATE payments
              SET status = ${to}, version = version + 1, updated_at = updated_at + interval '1 second',
                  failure_code = ${failed ? "raw_sql" : null}, failure_message = ${failed ? "set by hand" : null},
                  captured_amount_minor = ${to === "SETTLED" ? sql`amount_minor` : sql`NULL`},
                  authorization_expires_at = ${from === "CREATED" && to === "AUTHORIZED" ? sql`now() + interval '7 days'` : sql`authorization_expires_at`}
              WHERE id = ${payment.id}`
            yield* sql`
              INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
              VALUES (${payment.id}, ${payment.version + 1}, ${from}, ${to}, 'psql', 'raw', now())`
            // ... and its event (migrations/0010_outbox_guards.sql: no history row without one).
            yield* sql`
              INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload)
              VALUES (gen_random_uuid(), 'payment', ${payment.id}, ${`payment_${to.toLowerCase()}`},
                      jsonb_build_object('version', ${payment.version + 1}::int))`
          })
        )
        const result = yield* Effect.result(attempt)
        const after = yield* statusOf(payment.id)
        if (legal.has(`${from}->${to}`) && to === "SETTLED") {
          // Legal, but SETTLED needs its settlement posting (migrations/0011_settlement_tie.sql).
          assert.strictEqual(result._tag, "Failure", `${from} -> ${to} without a posting must be rejected`)
          if (result._tag === "Failure") assert.match(postgresError(result.failure).message, /without its settlement posting/)
          assert.deepStrictEqual(after, { status: from, version: payment.version })
          outcomes.push(`${from}->${to}:needs-posting`)
        } else if (legal.has(`${from}->${to}`)) {
          assert.strictEqual(result._tag, "Success", `${from} -> ${to} must be accepted`)
          assert.deepStrictEqual(after, { status: to, version: payment.version + 1 })
          outcomes.push(`${from}->${to}:ok`)
        } else {
          assert.strictEqual(result._tag, "Failure", `${from} -> ${to} must be rejected`)
          if (result._tag === "Failure") {
            const error = postgresError(result.failure)
            assert.strictEqual(error.code, "23000")
            assert.match(error.message, terminalStatuses.includes(from) ? /terminal/ : /illegal payment transition/)
          }
          assert.deepStrictEqual(after, { status: from, version: payment.version })
          outcomes.push(`${from}->${to}:rejected`)
        }
      }
      // AUTHORIZED -> EXPIRED is accepted here because the authorization is due: this layer runs on
      // the TestClock (epoch), so it expired in 1970. Expiring one not yet due: expiry.test.ts.
      assert.strictEqual(outcomes.filter((outcome) => outcome.endsWith(":ok")).length, 6)
      assert.deepStrictEqual(outcomes.filter((outcome) => outcome.endsWith(":needs-posting")), ["AUTHORIZED->SETTLED:needs-posting"])
      assert.strictEqual(outcomes.filter((outcome) => outcome.endsWith(":rejected")).length, 29)
    }))

  it.effect("a bare UPDATE payments SET status = … that skips or reverses a transition is rejected", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant } = yield* setup
      const created = yield* paymentIn(merchant, "CREATED")
      yield* expectRejected(sql`UPDATE payments SET status = 'SETTLED' WHERE id = ${created.id}`, /illegal payment transition CREATED -> SETTLED/)
      const authorized = yield* paymentIn(merchant, "AUTHORIZED")
      yield* expectRejected(sql`UPDATE payments SET status = 'CREATED' WHERE id = ${authorized.id}`, /illegal payment transition AUTHORIZED -> CREATED/)
      const settled = yield* paymentIn(merchant, "SETTLED")
      yield* expectRejected(sql`UPDATE payments SET status = 'AUTHORIZED', version = version + 1 WHERE id = ${settled.id}`, /terminal/)
      // A mass update is refused by whichever row the executor reaches first (illegal pair,
      // terminal payment, or AUTHORIZED -> SETTLED without the version step): none changes.
      yield* expectRejected(
        sql`UPDATE payments SET status = 'SETTLED' WHERE merchant_id = ${merchant.id}`,
        /illegal payment transition|terminal|must move version/
      )
      assert.strictEqual((yield* statusOf(created.id))?.status, "CREATED")
      assert.strictEqual((yield* statusOf(authorized.id))?.status, "AUTHORIZED")
    }))

  it.effect("a terminal payment cannot change at all, not even a no-op or a non-status column", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant } = yield* setup
      for (const status of ["SETTLED", "FAILED"] as const) {
        const payment = yield* paymentIn(merchant, status)
        yield* expectRejected(sql`UPDATE payments SET description = 'edited' WHERE id = ${payment.id}`, /terminal/)
        yield* expectRejected(sql`UPDATE payments SET status = status WHERE id = ${payment.id}`, /terminal/)
        yield* expectRejected(sql`UPDATE payments SET failure_message = NULL, failure_code = NULL WHERE id = ${payment.id}`, /terminal/)
      }
    }))

  it.effect("a transition must move the version by exactly one, forward in time, and change nothing else", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant } = yield* setup
      const payment = yield* paymentIn(merchant, "CREATED")
      yield* expectRejected(sql`UPDATE payments SET status = 'AUTHORIZED' WHERE id = ${payment.id}`, /version from 1 to 2, not 1/)
      yield* expectRejected(sql`UPDATE payments SET status = 'AUTHORIZED', version = 3 WHERE id = ${payment.id}`, /version from 1 to 2, not 3/)
      yield* expectRejected(
        sql`UPDATE payments SET status = 'AUTHORIZED', version = 2, updated_at = updated_at - interval '1 second' WHERE id = ${payment.id}`,
        /backwards/
      )
      yield* expectRejected(
        sql`UPDATE payments SET status = 'AUTHORIZED', version = 2, amount_minor = 1 WHERE id = ${payment.id}`,
        /may only change status/
      )
      yield* expectRejected(sql`UPDATE payments SET status = 'CREATED', version = 2 WHERE id = ${payment.id}`, /illegal payment transition CREATED -> CREATED/)
      assert.deepStrictEqual(yield* statusOf(payment.id), { status: "CREATED", version: 1 })
    }))

  it.effect("a legal raw transition without its history row is rolled back at COMMIT", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant } = yield* setup
      const payment = yield* paymentIn(merchant, "CREATED")
      yield* expectRejected(
        sql.withTransaction(sql`UPDATE payments SET status = 'AUTHORIZED', authorization_expires_at = now(), version = 2 WHERE id = ${payment.id}`),
        /without a payment_status_history row/
      )
      assert.deepStrictEqual(yield* statusOf(payment.id), { status: "CREATED", version: 1 })
    }))

  it.effect("a payment is born CREATED at version 1, and is never deleted", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant } = yield* setup
      const insert = (status: string, version: number) =>
        Effect.gen(function* () {
          const id = yield* generatePaymentId
          return yield* sql`
            INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, status, version, created_at, updated_at,
                                  failure_code, failure_message)
            VALUES (${id}, ${merchant.id}, 100, 'USD', 'pm_card_visa', ${status}, ${version}, now(), now(),
                    ${status === "FAILED" ? "x" : null}, ${status === "FAILED" ? "y" : null})`
        })
      yield* expectRejected(insert("AUTHORIZED", 1), /must be inserted with status CREATED, not AUTHORIZED/)
      yield* expectRejected(insert("SETTLED", 1), /must be inserted with status CREATED/)
      yield* expectRejected(insert("FAILED", 1), /must be inserted with status CREATED/)
      yield* expectRejected(insert("CREATED", 2), /must be inserted at version 1/)

      const payment = yield* paymentIn(merchant, "CREATED")
      yield* expectRejected(sql`DELETE FROM payments WHERE id = ${payment.id}`, /DELETE on payments is not allowed/)
      yield* expectRejected(sql`TRUNCATE payments CASCADE`, /TRUNCATE on .* is not allowed/)
      assert.strictEqual((yield* statusOf(payment.id))?.status, "CREATED")
    }))

  it.effect("the status history is append-only and can only describe allowed moves", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant } = yield* setup
      const payment = yield* paymentIn(merchant, "AUTHORIZED")
      yield* expectRejected(sql`UPDATE payment_status_history SET actor = 'someone else' WHERE payment_id = ${payment.id}`, /append-only/)
      yield* expectRejected(sql`DELETE FROM payment_status_history WHERE payment_id = ${payment.id}`, /append-only/)
      yield* expectRejected(sql`TRUNCATE payment_status_history`, /append-only/)
      // An invented move (AUTHORIZED -> CREATED) has no row in payment_transitions: foreign key.
      const invented = postgresError(yield* Effect.flip(sql`
        INSERT INTO payment_status_history (payment_id, version, from_status, to_status, actor, correlation_id, occurred_at)
        VALUES (${payment.id}, 3, 'AUTHORIZED', 'CREATED', 'psql', 'raw', now())`))
      assert.strictEqual(invented.code, "23503")
      const rows = yield* decodeRows(Schema.Struct({ n: Schema.Number }))(sql`SELECT count(*)::int AS n FROM payment_status_history WHERE payment_id = ${payment.id}`)
      assert.strictEqual(rows[0]?.n, 2)
    }))

  it.effect("the transition rules themselves cannot be edited with raw SQL", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* expectRejected(sql`INSERT INTO payment_transitions VALUES ('SETTLED', 'CREATED')`, /only through a migration/)
      yield* expectRejected(sql`DELETE FROM payment_transitions`, /only through a migration/)
      yield* expectRejected(sql`UPDATE payment_transitions SET to_status = 'SETTLED'`, /only through a migration/)
      // CASCADE, or Postgres refuses earlier because history references the table.
      yield* expectRejected(sql`TRUNCATE payment_transitions CASCADE`, /TRUNCATE on .* is not allowed/)
    }))

  it.effect("the database's rules equal the code's: transitions, terminal statuses, currencies, amount bound", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const pairs = yield* decodeRows(Schema.Struct({ from_status: Schema.String, to_status: Schema.String }))(sql`SELECT from_status, to_status FROM payment_transitions`)
      assert.deepStrictEqual(
        new Set(pairs.map((pair) => `${pair.from_status}->${pair.to_status}`)),
        new Set(allowedTransitionPairs.map(([from, to]) => `${from}->${to}`))
      )
      const terminal = paymentStatuses.filter((status) => !pairs.some((pair) => pair.from_status === status))
      assert.deepStrictEqual(terminal, [...terminalStatuses])

      const definitions = yield* decodeRows(Schema.Struct({ name: Schema.String, definition: Schema.String }))(sql`
        SELECT conname AS name, pg_get_constraintdef(oid) AS definition
        FROM pg_constraint WHERE conrelid = 'payments'::regclass AND conname IN ('payments_currency_check', 'payments_amount_minor_check')`)
      const currencyCheck = definitions.find((row) => row.name === "payments_currency_check")?.definition ?? ""
      const databaseCodes = [...currencyCheck.matchAll(/'([A-Z]{3})'/g)].map((match) => match[1])
      assert.deepStrictEqual(databaseCodes, [...currencyCodes])
      const amountCheck = definitions.find((row) => row.name === "payments_amount_minor_check")?.definition ?? ""
      assert.include(amountCheck, String(AMOUNT_MINOR_MAX))

      const { merchant } = yield* setup
      const id = yield* generatePaymentId
      const tooBig = postgresError(yield* Effect.flip(sql`
        INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, status, version, created_at, updated_at)
        VALUES (${id}, ${merchant.id}, ${AMOUNT_MINOR_MAX + 1n}::bigint, 'USD', 'pm_card_visa', 'CREATED', 1, now(), now())`))
      assert.strictEqual(tooBig.code, "23514")
      const unknownCurrency = postgresError(yield* Effect.flip(sql`
        INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, status, version, created_at, updated_at)
        VALUES (${id}, ${merchant.id}, 100, 'ZZZ', 'pm_card_visa', 'CREATED', 1, now(), now())`))
      assert.strictEqual(unknownCurrency.code, "23514")
      const cardNumber = postgresError(yield* Effect.flip(sql`
        INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, status, version, created_at, updated_at)
        VALUES (${id}, ${merchant.id}, 100, 'USD', 'pm_4242424242424242', 'CREATED', 1, now(), now())`))
      assert.strictEqual(cardNumber.code, "23514")
      // The same number grouped, as the API also refuses it: 0080's column trigger (BEFORE INSERT;
      // 0076's CHECK, which ran on every UPDATE of older rows too, was dropped by 0084).
      const groupedCardNumber = postgresError(yield* Effect.flip(sql`
        INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, status, version, created_at, updated_at)
        VALUES (${id}, ${merchant.id}, 100, 'USD', 'pm_4242_4242_4242_4242', 'CREATED', 1, now(), now())`))
      assert.strictEqual(groupedCardNumber.code, "23514")
      assert.include(groupedCardNumber.message, "payments_no_card_data: payments.payment_method")
    }))

  it.effect("card data (0080): a raw INSERT of a card number in payment_method, description, a metadata key or value, a refund's metadata, and a raw UPDATE writing one, are refused (23514); ordinary text is stored", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant, payments } = yield* setup
      const id = yield* generatePaymentId
      const insertPayment = (paymentMethod: string, description: string | null, metadata: unknown) => sql`
        INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, description, metadata, status, version, created_at, updated_at)
        VALUES (${id}, ${merchant.id}, 100, 'USD', ${paymentMethod}, ${description}::text, ${JSON.stringify(metadata)}::jsonb, 'CREATED', 1, now(), now())`
      const refused = <A, R>(effect: Effect.Effect<A, SqlError, R>, constraint: string, column: string) =>
        Effect.gen(function* () {
          const error = postgresError(yield* Effect.flip(effect))
          assert.strictEqual(error.code, "23514", `${column}: ${error.message}`)
          assert.include(error.message, `${constraint}: ${column}`)
          assert.notInclude(error.message, "4242", "the value is never echoed")
        })
      yield* refused(insertPayment("pm_4242x4242x4242x4242", null, {}), "payments_no_card_data", "payments.payment_method")
      yield* refused(insertPayment("pm_4242a4242b4242c4242", null, {}), "payments_no_card_data", "payments.payment_method")
      yield* refused(insertPayment("pm_card_visa", "card 4242 4242 4242 4242", {}), "payments_no_card_data", "payments.description")
      // Grouped by no-break spaces or an invisible joiner (0117; outside re-test: stored before).
      yield* refused(insertPayment("pm_card_visa", "card 4242\u00A04242\u00A04242\u00A04242", {}), "payments_no_card_data", "payments.description")
      yield* refused(insertPayment("pm_card_visa", null, { note: "4111\u200B1111\u200B1111\u200B1111" }), "payments_no_card_data", "payments.metadata")
      yield* refused(insertPayment("pm_card_visa", null, { note: "4242-4242-4242-4242" }), "payments_no_card_data", "payments.metadata")
      yield* refused(insertPayment("pm_card_visa", null, { "4242424242424242": "x" }), "payments_no_card_data", "payments.metadata")
      // A number, not a string, is found too (raw SQL is not held to the API's strings-only rule).
      yield* refused(insertPayment("pm_card_visa", null, { card: 4242424242424242 }), "payments_no_card_data", "payments.metadata")

      // Ordinary text, a Luhn-invalid 16-digit order number and a token with a word between dates are stored.
      const fine = yield* payments.create(paymentInput(merchant, {
        payment_method: "pm_2024_12_a_31_12_2025",
        description: "Order #1001: 2 shirts, size 42, 19.99 EUR each",
        metadata: { order_id: "4242424242424243", at: "2026-12-04 10:30:00" }
      }), context)
      const settled = yield* paymentIn(merchant, "SETTLED")
      // The column triggers run before the tables' own guards: an UPDATE is refused for what it writes.
      yield* refused(sql`UPDATE payments SET description = 'card 4111 1111 1111 1111' WHERE id = ${fine.id}`, "payments_no_card_data", "payments.description")
      yield* refused(sql`UPDATE payments SET payment_method = 'pm_4111x1111x1111x1111' WHERE id = ${fine.id}`, "payments_no_card_data", "payments.payment_method")
      const refundId = yield* generateRefundId
      yield* refused(sql`
        INSERT INTO refunds (id, payment_id, merchant_id, amount_minor, currency, status, metadata, created_at, updated_at)
        VALUES (${refundId}, ${settled.id}, ${merchant.id}, 1, ${settled.currency}, 'PENDING', '{"card": "4242 4242 4242 4242"}'::jsonb, now(), now())`,
      "refunds_no_card_data", "refunds.metadata")
      const stored = yield* decodeRows(Schema.Struct({ description: Schema.String, order_id: Schema.String }))(sql`
        SELECT description, metadata ->> 'order_id' AS order_id FROM payments WHERE id = ${fine.id}`)
      assert.deepStrictEqual(stored, [{ description: "Order #1001: 2 shirts, size 42, 19.99 EUR each", order_id: "4242424242424243" }])
    }))

  it.effect("card data (0080, 0117, 0119, 0120): the database's functions decide as the code does, on the same generated inputs (Unicode spaces, invisible characters, other scripts' digits, letters Unicode added lately among them)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // Digit-heavy text over the separators that matter, and real card numbers inside words.
      const text = fc.string({ unit: fc.constantFrom("4", "2", "1", "0", "7", "9", " ", "-", ".", "/", "_", ":", "a", "X", "\u00A0", "\u2009", "\u200B", "\u00B7", "\t", "\u2013", "\uFF14", "\uFF12", "\u2460", "\n", "\u200E", "\u3164", "\u0664", "\u0662", "\u096A", "\uFE0F", "x", "\u{1CCD6}", "\u{1D7D2}", "\u30FC", "\uFF0D", "\uFF0E", "\u{1FBF4}"), minLength: 8, maxLength: 48 })
      const cards = fc.constantFrom("4242 4242 4242 4242", "4111-1111-1111-1111 12/28", "#12 378282246310005", "x4242424242424242", "6011.1111.1111.1117", "4242\u00A04242\u00A04242\u00A04242", "4111\u202F1111\u202F1111\u202F1111", "4242\u200B4242\u200B4242\u200B4242", "4242  4242  4242  4242", "4242\t4242\t4242\t4242", "4242\u20134242\u20134242\u20134242", "\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12\uFF14\uFF12", "Room 101\n4242 4242 4242 4242\n12/28", "4242\u200E4242\u200E4242\u200E4242", "4242\u30FC4242\u30FC4242\u30FC4242", "\uFF14\uFF12\uFF14\uFF12\uFF0D\uFF14\uFF12\uFF14\uFF12\uFF0D\uFF14\uFF12\uFF14\uFF12\uFF0D\uFF14\uFF12\uFF14\uFF12", "\u{1D7D2}\u{1D7D0}\u{1D7D2}\u{1D7D0}\u{1D7D2}\u{1D7D0}\u{1D7D2}\u{1D7D0}\u{1D7D2}\u{1D7D0}\u{1D7D2}\u{1D7D0}\u{1D7D2}\u{1D7D0}\u{1D7D2}\u{1D7D0}", "\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662", "4242 4242 4242 4242x", "Tel 020 7946 0958 / 020 7946 0959")
      const texts = fc.sample(fc.oneof(text, fc.tuple(text, cards, text).map((parts) => parts.join(" "))), { numRuns: 1500, seed: 20261204 })
      // Tokens: digits among separators and letters, and card numbers split by letters inside them.
      const tokenText = fc.string({ unit: fc.constantFrom("4", "2", "4", "2", "4", "_", "-", ".", " ", "x", "y"), minLength: 12, maxLength: 40 })
      const letterGroupedCards = fc.constantFrom("4242x4242x4242x4242", "4111ab1111ab1111ab1111", "3782x822463x10005", "6011y1111y1111y1117", "4242x4242x4242x4243")
      const tokens = fc.sample(fc.oneof(tokenText, fc.tuple(tokenText, letterGroupedCards, tokenText).map((parts) => parts.join(""))), { numRuns: 1500, seed: 20261204 })
      const verdicts = (fn: "looks_like_card_number" | "payment_method_holds_card_digits", values: ReadonlyArray<string>) =>
        decodeRows(Schema.Struct({ value: Schema.String, refused: Schema.Boolean }))(sql`
          SELECT value, ${sql.literal(fn)}(value) AS refused FROM jsonb_array_elements_text(${JSON.stringify(values)}::jsonb) AS value`)
      const textRows = yield* verdicts("looks_like_card_number", texts)
      const tokenRows = yield* verdicts("payment_method_holds_card_digits", tokens)
      assert.strictEqual(textRows.length, texts.length)
      assert.strictEqual(tokenRows.length, tokens.length)
      for (const row of textRows) assert.strictEqual(row.refused, looksLikeCardNumber(row.value), `text ${JSON.stringify(row.value)}`)
      for (const row of tokenRows) assert.strictEqual(row.refused, tokenHoldsCardDigits(row.value), `token ${JSON.stringify(row.value)}`)
      // Both verdicts occur: the comparison is not between two functions that always say no.
      assert.isAbove(textRows.filter((row) => row.refused).length, 50)
      assert.isAbove(textRows.filter((row) => !row.refused).length, 50)
      assert.isAbove(tokenRows.filter((row) => row.refused).length, 50)
      assert.isAbove(tokenRows.filter((row) => !row.refused).length, 50)
    }))

  it.effect("hidden characters (0083): a raw INSERT of a control character or a bidirectional override in a description, a metadata key or value, a refund's metadata or an endpoint's description, and a raw UPDATE writing one, are refused (23514); a row stored before this rule or 0080's still authorizes and settles (0084)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { merchant, payments } = yield* setup
      const id = yield* generatePaymentId
      const insertPayment = (description: string | null, metadata: unknown) => sql`
        INSERT INTO payments (id, merchant_id, amount_minor, currency, payment_method, description, metadata, status, version, created_at, updated_at)
        VALUES (${id}, ${merchant.id}, 100, 'USD', 'pm_card_visa', ${description}::text, ${JSON.stringify(metadata)}::jsonb, 'CREATED', 1, now(), now())`
      const refused = <A, R>(effect: Effect.Effect<A, SqlError, R>, constraint: string, column: string) =>
        Effect.gen(function* () {
          const error = postgresError(yield* Effect.flip(effect))
          assert.strictEqual(error.code, "23514", `${column}: ${error.message}`)
          assert.include(error.message, `${constraint}: ${column}`)
        })
      yield* refused(insertPayment("escape \u001b[2J", {}), "payments_free_text_displayable", "payments.description")
      yield* refused(insertPayment("pay \u202Eliamg", {}), "payments_free_text_displayable", "payments.description")
      yield* refused(insertPayment(null, { note: "C1 \u009B" }), "payments_free_text_displayable", "payments.metadata")
      yield* refused(insertPayment(null, { "k\u2067": "v" }), "payments_free_text_displayable", "payments.metadata")

      // Tabs, line breaks and the right-to-left marks are text.
      const fine = yield* payments.create(paymentInput(merchant, { description: "one\r\ntwo\tthree \u200F\u05E9", metadata: { note: "a\nb" } }), context)
      assert.strictEqual(fine.description, "one\r\ntwo\tthree \u200F\u05E9")
      // The column triggers run before the tables' own guards: an UPDATE is refused for what it writes.
      yield* refused(sql`UPDATE payments SET description = ${"x\u0007"} WHERE id = ${fine.id}`, "payments_free_text_displayable", "payments.description")
      yield* refused(sql`UPDATE payments SET metadata = ${JSON.stringify({ k: "\u2066" })}::jsonb WHERE id = ${fine.id}`, "payments_free_text_displayable", "payments.metadata")
      const settled = yield* paymentIn(merchant, "SETTLED")
      const refundId = yield* generateRefundId
      yield* refused(sql`
        INSERT INTO refunds (id, payment_id, merchant_id, amount_minor, currency, status, metadata, created_at, updated_at)
        VALUES (${refundId}, ${settled.id}, ${merchant.id}, 1, ${settled.currency}, 'PENDING', ${JSON.stringify({ why: "\u0085" })}::jsonb, now(), now())`,
      "refunds_free_text_displayable", "refunds.metadata")
      yield* refused(sql`
        INSERT INTO webhook_endpoints (merchant_id, url, event_types, description)
        VALUES (${merchant.id}, 'https://hooks.example.com/in', ARRAY['*'], ${"ops \u202D"})`,
      "webhook_endpoints_free_text_displayable", "webhook_endpoints.description")

      // A row stored before the rules (written here with the triggers off for one statement, as the
      // owner could: a hidden character, 0083; a token of grouped digits, 0076/0080) still reads back
      // and changes status: the triggers never run on a status change, and no CHECK holds the rule
      // (0076's NOT VALID CHECK did, and refused every UPDATE of such a row: dropped by 0084).
      const older = yield* payments.create(paymentInput(merchant), context)
      yield* sql.withTransaction(Effect.gen(function* () {
        yield* sql`ALTER TABLE payments DISABLE TRIGGER payments_free_text_displayable`
        yield* sql`ALTER TABLE payments DISABLE TRIGGER payments_card_data_refused`
        yield* sql`ALTER TABLE payments DISABLE TRIGGER payments_guard_update`
        yield* sql`UPDATE payments SET description = ${"before \u202E the rule"}, payment_method = 'pm_4242_4242_4242_4242' WHERE id = ${older.id}`
        yield* sql`SET CONSTRAINTS ALL IMMEDIATE`
        yield* sql`ALTER TABLE payments ENABLE TRIGGER payments_guard_update`
        yield* sql`ALTER TABLE payments ENABLE TRIGGER payments_card_data_refused`
        yield* sql`ALTER TABLE payments ENABLE TRIGGER payments_free_text_displayable`
      }))
      const authorized = yield* applyCommand(merchant.id, older.id, commandFor("authorize"), context)
      assert.strictEqual(authorized.status, "AUTHORIZED")
      assert.strictEqual(authorized.description, "before \u202E the rule")
      assert.strictEqual(authorized.payment_method, "pm_4242_4242_4242_4242")
      const settledOlder = yield* applyCommand(merchant.id, older.id, commandFor("settle"), context)
      assert.strictEqual(settledOlder.status, "SETTLED")
    }))

  it.effect("hidden characters (0083): the database's class is the code's, code point by code point over the whole Basic Multilingual Plane and a sample above it", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const codePoints: Array<number> = []
      for (let codePoint = 1; codePoint <= 0xffff; codePoint++) if (codePoint < 0xd800 || codePoint > 0xdfff) codePoints.push(codePoint)
      for (let codePoint = 0x10000; codePoint <= 0x10ffff; codePoint += 0x1f3) codePoints.push(codePoint)
      const texts = codePoints.map((codePoint) => `a${String.fromCodePoint(codePoint)}b`)
      const [row] = yield* decodeRows(Schema.Struct({ refused: Schema.NullOr(Schema.Array(Schema.Int)), tried: Schema.Int }))(sql`
        SELECT array_agg(ascii(substr(value, 2)) ORDER BY ascii(substr(value, 2))) FILTER (WHERE text_has_hidden_character(value)) AS refused,
               count(*)::int AS tried
        FROM jsonb_array_elements_text(${JSON.stringify(texts)}::jsonb) AS value`)
      assert.strictEqual(row?.tried, texts.length)
      const byCode = codePoints.filter((codePoint) => hiddenCharacterReason(`a${String.fromCodePoint(codePoint)}b`) !== undefined)
      assert.deepStrictEqual(row?.refused ?? [], byCode)
      // 28 C0 controls (not NUL, tab, LF, CR), DEL and 32 C1 controls, 5 + 4 bidirectional formats.
      assert.strictEqual(byCode.length, 28 + 33 + 9)
      // Metadata: the printed form's prefilter (a backslash, DEL, C1, bidi) then the exact walk; the
      // same verdicts for every code point as a value and as a key, and a backslash alone is text.
      const objects = codePoints.flatMap((codePoint) => [{ note: `a${String.fromCodePoint(codePoint)}b` }, { [`k${String.fromCodePoint(codePoint)}`]: "v" }])
      objects.push({ path: "C:\\orders\\1001", quote: "\"x\"" })
      const [metadataRow] = yield* decodeRows(Schema.Struct({ refused: Schema.NullOr(Schema.Array(Schema.Int)), tried: Schema.Int }))(sql`
        SELECT array_agg(ordinality::int - 1 ORDER BY ordinality) FILTER (WHERE metadata_has_hidden_character(value)) AS refused, count(*)::int AS tried
        FROM jsonb_array_elements(${JSON.stringify(objects)}::jsonb) WITH ORDINALITY AS element(value, ordinality)`)
      assert.strictEqual(metadataRow?.tried, objects.length)
      const metadataByCode = objects.flatMap((object, index) =>
        Object.entries(object).some(([key, value]) => hiddenCharacterReason(key) !== undefined || hiddenCharacterReason(value) !== undefined) ? [index] : [])
      assert.deepStrictEqual(metadataRow?.refused ?? [], metadataByCode)
      assert.strictEqual(metadataByCode.length, 2 * (28 + 33 + 9))
    }))
})
