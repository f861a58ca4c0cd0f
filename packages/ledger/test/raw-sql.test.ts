import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Ledger } from "../src/Ledger.ts"
import { account, assertLedgerHealthy, countRows, LedgerTestLayer, layerOptions, refusedBy, transfer } from "./support.ts"

// Around the service: raw SQL, as the table owner (the test connects as `postgres`, which owns
// every table of the database the migrations built). The database alone must refuse.

const CASH = "raw:cash:USD"
const PAYABLE = "raw:payable:USD"
const CASH_EUR = "raw:cash:EUR"

const setup = Effect.gen(function* () {
  const ledger = yield* Ledger
  const sql = yield* SqlClient.SqlClient
  const cash = yield* ledger.ensureAccount(account(CASH, "asset", "USD", true))
  const payable = yield* ledger.ensureAccount(account(PAYABLE, "liability", "USD", false))
  const cashEur = yield* ledger.ensureAccount(account(CASH_EUR, "asset", "EUR", true))
  yield* ledger.postTransaction(transfer("raw-seed", CASH, PAYABLE, 1_000n))
  return { ledger, sql, cash: cash.id, payable: payable.id, cashEur: cashEur.id }
})

/** One raw transaction: a `transactions` row and the given entries, committed together. */
const rawPosting = (
  reference: string,
  entries: ReadonlyArray<readonly [accountId: bigint, side: "debit" | "credit", amount_minor: bigint, currency: string]>
) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(Effect.gen(function* () {
      const [row] = yield* decodeRows(Schema.Struct({ id: Schema.BigInt }))(sql`
        INSERT INTO transactions (reference, description) VALUES (${reference}, 'raw sql') RETURNING id`)
      if (row === undefined) return yield* Effect.die(new Error("no id"))
      // Every leg in one statement: the entries trigger seals a transaction at the end of the
      // statement that wrote its entries (migrations/0009_ledger_guards.sql).
      const legs = JSON.stringify(entries.map(([accountId, side, amount_minor, currency], index) => ({
        entry_number: index + 1, account_id: String(accountId), side, amount_minor: String(amount_minor), currency
      })))
      yield* sql`INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency)
                 SELECT ${row.id}, l.entry_number, l.account_id, l.side, l.amount_minor, l.currency
                 FROM jsonb_to_recordset(${legs}::jsonb)
                   AS l(entry_number int, account_id bigint, side ledger_side, amount_minor bigint, currency text)`
    }))
  })

layer(LedgerTestLayer, layerOptions)("Raw SQL against the ledger tables", (it) => {
  it.effect("a balanced raw posting commits and keeps the stored balances right", () =>
    Effect.gen(function* () {
      const { ledger, cash, payable } = yield* setup
      const before = (yield* ledger.balance(PAYABLE)).balance_minor
      yield* rawPosting("raw-balanced", [[cash, "debit", 25n, "USD"], [payable, "credit", 25n, "USD"]])
      assert.strictEqual((yield* ledger.balance(PAYABLE)).balance_minor, before + 25n)
      yield* assertLedgerHealthy
    }))

  it.effect("an imbalanced transaction cannot commit", () =>
    Effect.gen(function* () {
      const { cash, payable } = yield* setup
      const before = yield* countRows("ledger_entries")
      const imbalanced = yield* refusedBy(
        rawPosting("raw-imbalanced", [[cash, "debit", 100n, "USD"], [payable, "credit", 90n, "USD"]])
      )
      assert.strictEqual(imbalanced.code, "LG001")
      assert.include(imbalanced.message, "unbalanced in USD: debits 100 <> credits 90")
      // balanced in sum, not per currency
      const { cashEur } = yield* setup
      const crossCurrency = yield* refusedBy(
        rawPosting("raw-cross-currency", [[cash, "debit", 100n, "USD"], [cashEur, "credit", 100n, "EUR"]])
      )
      assert.strictEqual(crossCurrency.code, "LG001")
      assert.include(crossCurrency.message, "(raw-cross-currency) is unbalanced in EUR: debits 0 <> credits 100")
      // One leg is unbalanced at the end of its statement; no leg at all is refused at COMMIT (two required).
      const oneEntry = yield* refusedBy(rawPosting("raw-one-entry", [[cash, "debit", 100n, "USD"]]))
      assert.strictEqual(oneEntry.code, "LG001")
      assert.include(oneEntry.message, "(raw-one-entry) is unbalanced in USD: debits 100 <> credits 0")
      const noEntry = yield* refusedBy(rawPosting("raw-no-entry", []))
      assert.strictEqual(noEntry.code, "LG001")
      assert.include(noEntry.message, "(raw-no-entry) has 0 entries; at least two are required")
      assert.strictEqual(yield* countRows("ledger_entries"), before)
      yield* assertLedgerHealthy
    }))

  it.effect("an imbalanced transaction cannot commit even with the constraint set IMMEDIATE", () =>
    Effect.gen(function* () {
      const { sql, cash, payable } = yield* setup
      // The transaction and two unbalanced legs in ONE statement, so that the balance is what is
      // checked. Written as two statements (a transaction, then one leg), the transaction's own
      // check, immediate, refused the first for having no entries (LG001 too, "at least two are
      // required"): the unbalanced leg was never written (outside test audit: only the SQLSTATE
      // was checked). One leg in one statement is refused for its count as well.
      const refusal = yield* refusedBy(sql.withTransaction(Effect.gen(function* () {
        yield* sql`SET CONSTRAINTS ALL IMMEDIATE`
        yield* sql`
          WITH t AS (INSERT INTO transactions (reference, description) VALUES ('raw-immediate', 'x') RETURNING id)
          INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency)
          SELECT t.id, n, CASE n WHEN 1 THEN ${cash} ELSE ${payable} END, CASE n WHEN 1 THEN 'debit' ELSE 'credit' END::ledger_side,
                 CASE n WHEN 1 THEN 5 ELSE 4 END, 'USD'
          FROM t, generate_series(1, 2) AS n`
      })))
      assert.strictEqual(refusal.code, "LG001")
      assert.include(refusal.message, "(raw-immediate) is unbalanced in USD: debits 5 <> credits 4")
      yield* assertLedgerHealthy
    }))

  it.effect("an entry in the wrong currency, on an unknown account or transaction, or not > 0 is refused", () =>
    Effect.gen(function* () {
      const { cash, cashEur, payable } = yield* setup
      const wrongCurrency = yield* refusedBy(
        rawPosting("raw-wrong-currency", [[cashEur, "debit", 5n, "USD"], [payable, "credit", 5n, "USD"]])
      )
      assert.strictEqual(wrongCurrency.code, "LG009")
      assert.match(wrongCurrency.message, /is in USD but account \d+ holds EUR/)
      const unknownAccount = yield* refusedBy(
        rawPosting("raw-unknown-account", [[999_999n, "debit", 5n, "USD"], [payable, "credit", 5n, "USD"]])
      )
      assert.strictEqual(unknownAccount.code, "23503")
      assert.include(unknownAccount.message, "refers to account 999999, which does not exist")
      const zero = yield* refusedBy(rawPosting("raw-zero", [[cash, "debit", 0n, "USD"], [payable, "credit", 0n, "USD"]]))
      assert.strictEqual(zero.code, "23514")
      assert.include(zero.message, "ledger_entries_amount_positive")
      const negative = yield* refusedBy(
        rawPosting("raw-negative", [[cash, "debit", -5n, "USD"], [payable, "credit", -5n, "USD"]])
      )
      assert.strictEqual(negative.code, "23514")
      assert.include(negative.message, "ledger_entries_amount_positive")
      const sql = yield* SqlClient.SqlClient
      const orphan = yield* refusedBy(
        sql`INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency)
            VALUES (999999, 1, ${cash}, 'debit', 5, 'USD')`
      )
      assert.strictEqual(orphan.code, "23503")
      assert.include(orphan.message, "refers to transaction 999999, which does not exist")
      yield* assertLedgerHealthy
    }))

  it.effect("a no-negative account cannot be taken below zero by raw SQL", () =>
    Effect.gen(function* () {
      const { ledger, cash, payable } = yield* setup
      const balance = (yield* ledger.balance(PAYABLE)).balance_minor
      const refusal = yield* refusedBy(
        rawPosting("raw-overdraw", [[payable, "debit", balance + 1n, "USD"], [cash, "credit", balance + 1n, "USD"]])
      )
      assert.strictEqual(refusal.code, "LG006")
      assert.include(refusal.message, "insufficient funds on")
      yield* assertLedgerHealthy
    }))

  it.effect("entries and transactions cannot be updated, deleted or truncated, by the owner either", () =>
    Effect.gen(function* () {
      const { sql } = yield* setup
      const owner = yield* decodeRows(Schema.Struct({ owner: Schema.String, me: Schema.String }))(sql`
        SELECT tableowner AS owner, current_user AS me FROM pg_tables WHERE tablename = 'ledger_entries'`)
      assert.strictEqual(owner[0]?.owner, owner[0]?.me)
      const entriesBefore = yield* countRows("ledger_entries")
      const transactionsBefore = yield* countRows("transactions")
      const attempts = [
        sql`UPDATE ledger_entries SET amount_minor = amount_minor + 1`,
        sql`UPDATE ledger_entries SET amount_minor = 1 WHERE false`,
        sql`DELETE FROM ledger_entries`,
        sql`TRUNCATE ledger_entries`,
        sql`UPDATE transactions SET description = 'rewritten'`,
        sql`DELETE FROM transactions WHERE reference = 'raw-seed'`,
        sql`TRUNCATE transactions CASCADE`,
        sql`UPDATE accounts SET currency = 'EUR'`,
        sql`DELETE FROM accounts`,
        sql`TRUNCATE accounts CASCADE`
      ]
      for (const attempt of attempts) {
        const refusal = yield* refusedBy(attempt)
        assert.strictEqual(refusal.code, "LG002", refusal.message)
        assert.include(refusal.message, "is not allowed: the ledger is append-only")
      }
      assert.strictEqual(yield* countRows("ledger_entries"), entriesBefore)
      assert.strictEqual(yield* countRows("transactions"), transactionsBefore)
      yield* assertLedgerHealthy
    }))

  it.effect("a committed transaction is sealed: no entry can join it later, and its stamps cannot be forged", () =>
    Effect.gen(function* () {
      const { sql, cash, payable } = yield* setup
      const late = yield* refusedBy(sql.withTransaction(Effect.gen(function* () {
        // A balanced pair added to an old transaction would pass a balance check; the seal refuses it.
        yield* sql`INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency, posted_at)
                   SELECT id, 90, ${cash}, 'debit', 5, 'USD', posted_at FROM transactions WHERE reference = 'raw-seed'`
        yield* sql`INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency, posted_at)
                   SELECT id, 91, ${payable}, 'credit', 5, 'USD', posted_at FROM transactions WHERE reference = 'raw-seed'`
      })))
      assert.strictEqual(late.code, "LG003")
      assert.include(late.message, "does not belong to a transaction created by this database transaction")
      const backdated = yield* refusedBy(sql.withTransaction(Effect.gen(function* () {
        yield* sql`INSERT INTO transactions (reference, description, posted_at)
                   VALUES ('raw-backdated', 'x', now() - interval '1 day')`
        yield* sql`INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency, posted_at)
                   SELECT id, n, CASE n WHEN 1 THEN ${cash} ELSE ${payable} END, CASE n WHEN 1 THEN 'debit' ELSE 'credit' END::ledger_side,
                          5, 'USD', posted_at
                   FROM transactions, generate_series(1, 2) AS n WHERE reference = 'raw-backdated'`
      })))
      assert.strictEqual(backdated.code, "LG005")
      assert.include(backdated.message, "(raw-backdated) carries a created_xact_id or posted_at that is not its own")
      const forged = yield* refusedBy(sql.withTransaction(
        sql`INSERT INTO transactions (reference, description, created_xact_id) VALUES ('raw-forged', 'x', '1'::xid8)`
      ))
      assert.strictEqual(forged.code, "LG005")
      assert.include(forged.message, "(raw-forged) carries a created_xact_id or posted_at that is not its own")
      yield* assertLedgerHealthy
    }))

  it.effect("a stored balance cannot be written directly; edited by hand anyway, ledger_verify() reports it", () =>
    Effect.gen(function* () {
      const { sql, payable } = yield* setup
      const direct = yield* refusedBy(sql`UPDATE account_balances SET balance_minor = balance_minor + 1 WHERE account_id = ${payable}`)
      assert.strictEqual(direct.code, "LG004")
      assert.include(direct.message, "UPDATE on account_balances is not allowed: stored balances change only through ledger entries")
      const truncate = yield* refusedBy(sql`TRUNCATE account_balances`)
      assert.strictEqual(truncate.code, "LG004")
      assert.include(truncate.message, "TRUNCATE on account_balances is not allowed")

      // What only a superuser can do: switch triggers off for the session and edit the number.
      const edit = (delta: bigint) =>
        sql.withTransaction(Effect.gen(function* () {
          yield* sql`SET LOCAL session_replication_role = replica`
          yield* sql`UPDATE account_balances SET balance_minor = balance_minor + ${delta} WHERE account_id = ${payable}`
        }))
      yield* edit(1n)
      const ledger = yield* Ledger
      const discrepancies = yield* ledger.verify
      assert.deepStrictEqual(
        discrepancies.map((d) => [d.check, d.subject]).sort(),
        [["balance_mismatch", PAYABLE], ["trial_balance_nonzero", "USD"]]
      )
      const mismatch = discrepancies.find((d) => d.check === "balance_mismatch")
      assert.strictEqual((mismatch?.actual_minor ?? 0n) - (mismatch?.expected_minor ?? 0n), 1n)
      // Put it back, and the ledger is healthy again.
      yield* edit(-1n)
      yield* assertLedgerHealthy
    }))

  it.effect("ledger_verify() also reports an entry removed behind the triggers' back", () =>
    Effect.gen(function* () {
      const { sql } = yield* setup
      const behindTheTriggers = (statement: Effect.Effect<unknown, unknown>) =>
        sql.withTransaction(Effect.gen(function* () {
          yield* sql`SET LOCAL session_replication_role = replica`
          yield* statement
        }))
      // Superuser only, and only on this throwaway database: simulate a lost row, then restore it.
      const [lost] = yield* decodeRows(Schema.Struct({ transaction_id: Schema.BigInt, account_id: Schema.BigInt, amount_minor: Schema.BigInt }))(sql`
        SELECT transaction_id, account_id, amount_minor FROM ledger_entries
        WHERE transaction_id = (SELECT id FROM transactions WHERE reference = 'raw-seed') AND entry_number = 2`)
      if (lost === undefined) return assert.fail("the seed posting has no second entry")
      yield* behindTheTriggers(sql`DELETE FROM ledger_entries
        WHERE transaction_id = ${lost.transaction_id} AND entry_number = 2`)
      const ledger = yield* Ledger
      const checks = (yield* ledger.verify).map((d) => `${d.check} ${d.subject}`).sort()
      assert.deepStrictEqual(checks, [
        `balance_mismatch ${PAYABLE}`,
        "transaction_too_few_entries raw-seed",
        "transaction_unbalanced raw-seed USD"
      ])
      yield* behindTheTriggers(sql`
        INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency, posted_at)
        SELECT t.id, 2, ${lost.account_id}, 'credit', ${lost.amount_minor}, 'USD', t.posted_at
        FROM transactions t WHERE t.id = ${lost.transaction_id}`)
      yield* assertLedgerHealthy
    }))
})
