// The application's role (migrations/0012_app_role.sql; issue 11, "the application is a superuser
// that owns every table"): everything here runs as `pay_app` on a fresh clone. It can do the
// application's work (merchants, payments, a settlement with its posting, the outbox's bookkeeping)
// and nothing that switches a guard off or rewrites money: each attempt is refused with 42501.
import { assert, layer } from "@effect/vitest"
import { CreatePaymentInput } from "@pay/domain"
import { decodeRows, postgresLayer } from "@pay/infra"
import { Ledger } from "@pay/ledger"
import { MerchantRepository } from "@pay/merchants"
import { OutboxWriter } from "@pay/outbox"
import { FeeSchedules, SettlementPosting } from "@pay/settlement"
import { acquireTestDatabase, expectSqlRefusal } from "@pay/testkit"
import { Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { PaymentRepository } from "../src/index.ts"
import { applyCommand, context } from "./support.ts"

const AppRoleDatabase = Layer.unwrap(
  Effect.gen(function* () {
    const info = yield* acquireTestDatabase
    const url = new URL(info.url)
    url.username = "pay_app"
    url.password = ""
    return postgresLayer({ url: Redacted.make(url.toString()), maxConnections: 4, applicationName: "pay-test-app-role" })
  })
)

const AppRoleLayer = Layer.mergeAll(PaymentRepository.layer, MerchantRepository.layer, SettlementPosting.layer).pipe(
  Layer.provideMerge(Layer.mergeAll(Ledger.layer, FeeSchedules.layer, OutboxWriter.layer)),
  Layer.provideMerge(AppRoleDatabase)
)

/** Refused for want of a privilege, on the object the statement attacks (the message names it). */
const denied = (message: RegExp) => expectSqlRefusal({ code: "42501", message })

layer(AppRoleLayer, { excludeTestServices: true, timeout: "60 seconds" })("the application role (pay_app)", (it) => {
  it.effect("is neither superuser nor owner, and does the application's work: create, authorize, settle with its posting", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [me] = yield* decodeRows(Schema.Struct({ user: Schema.String, superuser: Schema.Boolean, owns: Schema.Boolean }))(sql`
        SELECT current_user AS user, r.rolsuper AS superuser,
               EXISTS (SELECT 1 FROM pg_tables WHERE tableowner = current_user) AS owns
        FROM pg_roles r WHERE r.rolname = current_user`)
      assert.deepStrictEqual(me, { user: "pay_app", superuser: false, owns: false })
      const merchant = yield* (yield* MerchantRepository).create("App role")
      const payments = yield* PaymentRepository
      const created = yield* payments.create(Schema.decodeUnknownSync(CreatePaymentInput)({
        merchant_id: merchant.id, amount_minor: 1_000, currency: "USD", payment_method: "pm_card_visa"
      }), context)
      yield* applyCommand(merchant.id, created.id, { _tag: "authorize" }, context)
      const settled = yield* applyCommand(merchant.id, created.id, { _tag: "settle" }, context)
      assert.strictEqual(settled.status, "SETTLED")
      assert.deepStrictEqual(yield* (yield* Ledger).verify, [])
    }))

  it.effect("every table of the schema is granted to pay_app explicitly (a migration that adds one must say what the app may do)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const ungranted = yield* decodeRows(Schema.Struct({ name: Schema.String }))(sql`
        SELECT n.nspname || '.' || c.relname AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'acquirer_sim')
          AND c.relname <> 'effect_sql_migrations'
          AND NOT has_table_privilege(c.oid, 'SELECT')
        ORDER BY 1`)
      assert.deepStrictEqual(ungranted.map((row) => row.name), [], "grant these to pay_app in their migration (docs/security.md, rule 3)")
    }))

  it.effect("cannot switch guards off: DISABLE TRIGGER, session_replication_role, SET ROLE to the balance writer", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* denied(/must be owner of table ledger_entries/)(sql`ALTER TABLE ledger_entries DISABLE TRIGGER ALL`)
      yield* denied(/must be owner of table account_balances/)(sql`ALTER TABLE account_balances DISABLE TRIGGER account_balances_guard`)
      yield* denied(/must be owner of table outbox_events/)(sql`ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_keep_unpublished`)
      yield* denied(/permission denied to set parameter "session_replication_role"/)(sql`SET session_replication_role = replica`)
      yield* denied(/permission denied to set role "pay_ledger_writer"/)(sql`SET ROLE pay_ledger_writer`)
    }))

  it.effect("cannot rewrite money or history: UPDATE, DELETE, TRUNCATE on ledger, balances, history, settlements; no event rewrite", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // Each refused on the table it attacks: the privilege is missing, no guard trigger ran.
      const attempts = [
        ["ledger_entries", sql`UPDATE ledger_entries SET amount_minor = amount_minor + 1`],
        ["ledger_entries", sql`DELETE FROM ledger_entries`],
        ["ledger_entries", sql`TRUNCATE ledger_entries`],
        ["transactions", sql`UPDATE transactions SET description = 'rewritten'`],
        ["transactions", sql`DELETE FROM transactions`],
        ["accounts", sql`UPDATE accounts SET allow_negative = true`],
        ["account_balances", sql`UPDATE account_balances SET balance_minor = balance_minor + 1000000`],
        ["account_balances", sql`INSERT INTO account_balances (account_id, currency, normal_side, allow_negative) VALUES (1, 'USD', 'credit', true)`],
        ["account_balances", sql`DELETE FROM account_balances`],
        ["payment_status_history", sql`UPDATE payment_status_history SET actor = 'someone else'`],
        ["payment_status_history", sql`DELETE FROM payment_status_history`],
        ["payment_settlements", sql`UPDATE payment_settlements SET fee_minor = 0`],
        ["payment_settlements", sql`DELETE FROM payment_settlements`],
        ["payments", sql`DELETE FROM payments`],
        ["outbox_events", sql`TRUNCATE outbox_events`],
        ["outbox_events", sql`UPDATE outbox_events SET payload = '{}'::jsonb`],
        ["payment_transitions", sql`INSERT INTO payment_transitions VALUES ('SETTLED', 'CREATED')`]
      ] as const
      for (const [table, attempt] of attempts) yield* denied(new RegExp(`^permission denied for table ${table}$`))(attempt)
    }))

  it.effect("cannot create or alter objects, temp tables or functions in pg_temp, nor run the balance writers", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* denied(/permission denied for schema public/)(sql`CREATE TABLE public.app_role_probe (x int)`)
      yield* denied(/permission denied to create temporary tables/)(sql`CREATE TEMP TABLE app_role_probe (x int)`)
      yield* denied(/permission denied to create temporary tables/)(sql.unsafe(`CREATE FUNCTION pg_temp.app_role_probe() RETURNS int LANGUAGE sql AS 'SELECT 1'`))
      yield* denied(/must be owner of table payments/)(sql`ALTER TABLE payments ADD COLUMN probe int`)
      yield* denied(/must be owner of relation payments/)(sql`DROP TRIGGER payments_guard_update ON payments`)
      yield* denied(/permission denied for schema public/)(sql`CREATE OR REPLACE FUNCTION ledger_verify() RETURNS int LANGUAGE sql AS 'SELECT 0'`)
      const executable = yield* decodeRows(Schema.Struct({ apply: Schema.Boolean, open: Schema.Boolean }))(sql`
        SELECT has_function_privilege('ledger_apply_entries()', 'EXECUTE') AS apply,
               has_function_privilege('ledger_open_balance()', 'EXECUTE') AS open`)
      assert.deepStrictEqual(executable[0], { apply: false, open: false })
    }))
})
