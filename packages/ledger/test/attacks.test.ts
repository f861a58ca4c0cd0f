import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import { expectSqlRefusal } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { Ledger } from "../src/Ledger.ts"
import { account, assertLedgerHealthy, countRows, LedgerTestLayer, layerOptions, transfer } from "./support.ts"

// Issue 11, "the ledger's balance rule can be defeated by raw SQL": what a hostile session tries
// with SET CONSTRAINTS, savepoints, several statements, triggers and temp tables of its own. The
// test connects as `postgres` (superuser, owner of every table): only what needs DDL on the
// ledger's own tables or session_replication_role is out of reach of these guards (docs/security.md).

const CASH = "atk:cash:USD"
const PAYABLE = "atk:payable:USD"

const setup = Effect.gen(function* () {
  const ledger = yield* Ledger
  const sql = yield* SqlClient.SqlClient
  const cash = yield* ledger.ensureAccount(account(CASH, "asset", "USD", true))
  const payable = yield* ledger.ensureAccount(account(PAYABLE, "liability", "USD", false))
  yield* ledger.postTransaction(transfer(`atk-seed-${cash.id}`, CASH, PAYABLE, 1_000n))
  return { ledger, sql, cash: cash.id, payable: payable.id }
})

const payableBalance = Effect.gen(function* () {
  const ledger = yield* Ledger
  return (yield* ledger.balance(PAYABLE)).balance_minor
})

/** Inserts transaction `reference` and, in ONE statement, a balanced pair of `amount_minor`. */
const balancedPair = (sql: SqlClient.SqlClient, reference: string, cash: bigint, payable: bigint, amount_minor: bigint) =>
  Effect.gen(function* () {
    yield* sql`INSERT INTO transactions (reference, description) VALUES (${reference}, 'attack')`
    yield* sql`
      INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency)
      SELECT t.id, n, CASE n WHEN 1 THEN ${cash} ELSE ${payable} END,
             CASE n WHEN 1 THEN 'debit' ELSE 'credit' END::ledger_side, ${amount_minor}, 'USD'
      FROM transactions t, generate_series(1, 2) AS n WHERE t.reference = ${reference}`
  })

const extraEntry = (sql: SqlClient.SqlClient, reference: string, entryNumber: number, accountId: bigint, side: string, amount_minor: bigint) =>
  sql`INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency)
      SELECT id, ${entryNumber}, ${accountId}, ${side}::ledger_side, ${amount_minor}, 'USD'
      FROM transactions WHERE reference = ${reference}`

layer(LedgerTestLayer, layerOptions)("Attacks on the ledger's balance rule (issue 11)", (it) => {
  it.effect("SET CONSTRAINTS ALL IMMEDIATE after a balanced pair, then a 1,000,000 credit: refused, nothing moves", () =>
    Effect.gen(function* () {
      const { sql, cash, payable } = yield* setup
      const before = yield* payableBalance
      const entriesBefore = yield* countRows("ledger_entries")
      // The audit's reproduction: the deferred check fires (and passes) at SET CONSTRAINTS.
      const refusal = yield* expectSqlRefusal({ code: "LG003" })(sql.withTransaction(Effect.gen(function* () {
        yield* balancedPair(sql, "atk-immediate", cash, payable, 100n)
        yield* sql`SET CONSTRAINTS ALL IMMEDIATE`
        yield* extraEntry(sql, "atk-immediate", 3, payable, "credit", 1_000_000n)
      })))
      assert.include(refusal.message, "written by one statement")
      // The same credit with a matching debit (balanced on its own) is refused too: the transaction
      // is sealed at the end of the statement that wrote its entries.
      yield* expectSqlRefusal({ code: "LG003", message: /written by one statement/ })(sql.withTransaction(Effect.gen(function* () {
        yield* balancedPair(sql, "atk-immediate-pair", cash, payable, 100n)
        yield* sql`SET CONSTRAINTS ALL IMMEDIATE`
        yield* sql`INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency)
                   SELECT id, n, CASE n WHEN 3 THEN ${cash} ELSE ${payable} END,
                          CASE n WHEN 3 THEN 'debit' ELSE 'credit' END::ledger_side, 1000000, 'USD'
                   FROM transactions, generate_series(3, 4) AS n WHERE reference = 'atk-immediate-pair'`
      })))
      assert.strictEqual(yield* payableBalance, before)
      assert.strictEqual(yield* countRows("ledger_entries"), entriesBefore)
      yield* assertLedgerHealthy
    }))

  it.effect("an unbalanced statement is refused at once, whatever SET CONSTRAINTS says, even in one CTE with its transaction", () =>
    Effect.gen(function* () {
      const { sql, cash, payable } = yield* setup
      for (const mode of ["DEFERRED", "IMMEDIATE"] as const) {
        const refusal = yield* expectSqlRefusal({ code: "LG001" })(sql.withTransaction(Effect.gen(function* () {
          yield* sql.unsafe(`SET CONSTRAINTS ALL ${mode}`)
          yield* sql`
            WITH t AS (INSERT INTO transactions (reference, description) VALUES (${`atk-cte-${mode}`}, 'attack') RETURNING id)
            INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency)
            SELECT t.id, n, CASE n WHEN 1 THEN ${cash} ELSE ${payable} END,
                   CASE n WHEN 1 THEN 'debit' ELSE 'credit' END::ledger_side,
                   CASE n WHEN 1 THEN 100 ELSE 1000100 END, 'USD'
            FROM t, generate_series(1, 2) AS n`
        })))
        assert.include(refusal.message, "unbalanced in USD: debits 100 <> credits 1000100")
      }
      yield* assertLedgerHealthy
    }))

  it.effect("savepoints: a check spent inside a rolled-back savepoint, or entries split across savepoints, cannot commit", () =>
    Effect.gen(function* () {
      const { sql, cash, payable } = yield* setup
      const before = yield* payableBalance
      // Entries in a savepoint, the deferred check fired there, the savepoint rolled back: the
      // transaction row is left without entries, and COMMIT refuses it.
      yield* expectSqlRefusal({ code: "LG001", message: /\(atk-savepoint\) has 0 entries; at least two are required/ })(sql.withTransaction(Effect.gen(function* () {
        yield* sql`INSERT INTO transactions (reference, description) VALUES ('atk-savepoint', 'attack')`
        yield* sql`SAVEPOINT atk`
        yield* sql`INSERT INTO ledger_entries (transaction_id, entry_number, account_id, side, amount_minor, currency)
                   SELECT id, n, CASE n WHEN 1 THEN ${cash} ELSE ${payable} END,
                          CASE n WHEN 1 THEN 'debit' ELSE 'credit' END::ledger_side, 100, 'USD'
                   FROM transactions, generate_series(1, 2) AS n WHERE reference = 'atk-savepoint'`
        yield* sql`SET CONSTRAINTS ALL IMMEDIATE`
        yield* sql`ROLLBACK TO SAVEPOINT atk`
      })))
      // A balanced pair, then a savepoint and an extra credit released into the transaction.
      yield* expectSqlRefusal({ code: "LG003", message: /written by one statement/ })(sql.withTransaction(Effect.gen(function* () {
        yield* balancedPair(sql, "atk-savepoint-extra", cash, payable, 100n)
        yield* sql`SAVEPOINT atk`
        yield* extraEntry(sql, "atk-savepoint-extra", 3, payable, "credit", 1_000_000n)
        yield* sql`RELEASE SAVEPOINT atk`
      })))
      assert.strictEqual(yield* payableBalance, before)
      yield* assertLedgerHealthy
    }))

  it.effect("several statements: a debit now and the credit later is refused at the first statement", () =>
    Effect.gen(function* () {
      const { sql, cash, payable } = yield* setup
      yield* expectSqlRefusal({ code: "LG001", message: /\(atk-split\) is unbalanced in USD: debits 100 <> credits 0/ })(sql.withTransaction(Effect.gen(function* () {
        yield* sql`INSERT INTO transactions (reference, description) VALUES ('atk-split', 'attack')`
        yield* extraEntry(sql, "atk-split", 1, cash, "debit", 100n)
        yield* extraEntry(sql, "atk-split", 2, payable, "credit", 100n)
      })))
      yield* assertLedgerHealthy
    }))

  it.effect("a trigger of the session's own (temp table, function in pg_temp) cannot write account_balances", () =>
    Effect.gen(function* () {
      const { sql, payable } = yield* setup
      const before = yield* payableBalance
      // Before: the guard skipped any write at pg_trigger_depth() > 0, so this committed.
      const refusal = yield* expectSqlRefusal({ code: "LG004" })(sql.withTransaction(Effect.gen(function* () {
        yield* sql`CREATE TEMP TABLE atk_trap (x int) ON COMMIT DROP`
        yield* sql.unsafe(`CREATE FUNCTION pg_temp.atk_boost() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            UPDATE public.account_balances SET balance_minor = balance_minor + 1000000 WHERE account_id = ${payable};
            RETURN NULL;
          END $$`)
        yield* sql`CREATE TRIGGER atk_trap_boost AFTER INSERT ON atk_trap FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.atk_boost()`
        yield* sql`INSERT INTO atk_trap VALUES (1)`
      })))
      assert.include(refusal.message, "stored balances change only through ledger entries")
      // The entries trigger itself, attached to a table of the session's own with fake entries.
      yield* expectSqlRefusal({ code: "LG004", message: /ledger_apply_entries\(\) fires only for INSERT statements on public\.ledger_entries/ })(sql.withTransaction(Effect.gen(function* () {
        yield* sql`CREATE TEMP TABLE atk_entries (LIKE public.ledger_entries) ON COMMIT DROP`
        yield* sql`CREATE TRIGGER atk_apply AFTER INSERT ON atk_entries REFERENCING NEW TABLE AS new_entries
                   FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_apply_entries()`
        yield* sql`INSERT INTO atk_entries SELECT id, 9, ${payable}, 'credit', 1000000, 'USD', posted_at
                   FROM transactions ORDER BY id DESC LIMIT 1`
      })))
      assert.strictEqual(yield* payableBalance, before)
      yield* assertLedgerHealthy
    }))

  it.effect("a temp table named account_balances cannot stand in for the real one inside the entries trigger", () =>
    Effect.gen(function* () {
      const { sql, cash, payable } = yield* setup
      const before = yield* payableBalance
      // pg_temp comes first in a session's search_path: before, the trigger moved the copy and the
      // real stored balance silently missed the posting (ledger_verify: balance_mismatch).
      yield* sql.withTransaction(Effect.gen(function* () {
        yield* sql`CREATE TEMP TABLE account_balances ON COMMIT DROP AS SELECT * FROM public.account_balances`
        yield* balancedPair(sql, "atk-shadow", cash, payable, 25n)
      }))
      assert.strictEqual(yield* payableBalance, before + 25n)
      yield* assertLedgerHealthy
    }))

  it.effect("every function of every schema we own pins its search_path; the balance writers belong to a role nobody logs in as", () =>
    Effect.gen(function* () {
      const { sql } = yield* setup
      // Every schema but the system's, and no extension's functions (not ours to pin). Listing
      // `public` alone missed acquirer_sim.locked_approval (0073, pinned by 0075).
      const unpinned = yield* decodeRows(Schema.Struct({ name: Schema.String }))(sql`
        SELECT p.oid::regprocedure::text AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
          AND p.prokind = 'f'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
          AND NOT coalesce('search_path=pg_catalog, public, pg_temp' = ANY (p.proconfig), false)
        ORDER BY 1`)
      assert.deepStrictEqual(unpinned.map((row) => row.name), [])
      const schemas = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`
        SELECT count(DISTINCT p.pronamespace)::bigint AS n FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('public', 'acquirer_sim')`)
      assert.strictEqual(schemas[0]?.n, 2n, "the check sees functions in both schemas")
      const writers = yield* decodeRows(Schema.Struct({
        name: Schema.String, owner: Schema.String, definer: Schema.Boolean, public_execute: Schema.Boolean,
        owner_login: Schema.Boolean
      }))(sql`
        SELECT p.proname AS name, p.proowner::regrole::text AS owner, p.prosecdef AS definer,
               has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute, r.rolcanlogin AS owner_login
        FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
        WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('ledger_apply_entries', 'ledger_open_balance')
        ORDER BY p.proname`)
      assert.deepStrictEqual(writers.map((w) => [w.name, w.owner, w.definer, w.public_execute, w.owner_login]), [
        ["ledger_apply_entries", "pay_ledger_writer", true, false, false],
        ["ledger_open_balance", "pay_ledger_writer", true, false, false]
      ])
    }))
})
