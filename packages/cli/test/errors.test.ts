// An operator pipes the CLI's output (`pnpm cli dlq list | jq`): results go to stdout, refusals and
// failures to stderr with an exit code that says whose fault it was (2: the command line, 1: the
// rest). Before, a malformed argument, an unknown parked event or merchant, and a database that did
// not answer were printed by the runtime's logger on stdout, with a stack trace and, for an unknown
// parked event, no message at all.
import { assert, describe, it } from "@effect/vitest"
import { acquireEmptyTestDatabase, acquireTestDatabase, testDatabaseUrlAsRole } from "@pay/testkit"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { databaseTarget } from "@pay/infra"
import { cli, describeRun } from "./support.ts"

/** One statement through psql on `url` (as its owner), its output trimmed. */
const psqlOn = (url: string) => (statement: string) => Effect.promise(() => new Promise<string>((resolve, reject) =>
  execFile("psql", [url, "-Atqc", statement], (error, stdout) => (error === null ? resolve(stdout.trim()) : reject(error)))))

describe("pnpm cli: refusals and failures on stderr, with their exit code", () => {
  it.effect("a malformed argument or an extra one is exit 2, an unknown merchant, parked event or consumer exit 1, a database that does not answer exit 1; stdout stays empty; --help is stdout and exit 0", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const malformed = yield* cli(database.url, ["fees", "set", "mer_x", "EUR", "10", "1"])
      assert.strictEqual(malformed.exitCode, 2, describeRun(malformed))
      assert.strictEqual(malformed.stdout, "", describeRun(malformed))
      assert.include(malformed.stderr, "invalid argument: a merchant id is")

      const negative = yield* cli(database.url, ["consumers", "reset", "settlement.g1", "-5"])
      assert.strictEqual(negative.exitCode, 2, describeRun(negative))
      assert.strictEqual(negative.stdout, "", describeRun(negative))
      // The argument named, its range in digits (not "Expected … between 0n and …n").
      assert.include(negative.stderr, "invalid argument: offset must be a whole number from 0 to 4611686018427387904")

      // A consumer name with a typo used to store offsets for a consumer nobody runs, and say so with exit 0.
      const typo = yield* cli(database.url, ["consumers", "reset", "settlemnt.g1", "5"])
      assert.strictEqual(typo.exitCode, 1, describeRun(typo))
      assert.strictEqual(typo.stdout, "", describeRun(typo))
      assert.include(typo.stderr, "no consumer settlemnt.g1 (known: settlement.g1, webhooks")
      // Its lag used to be printed as the whole topic's, for a consumer nobody runs.
      const typoLag = yield* cli(database.url, ["consumers", "lag", "settlemnt.g1"])
      assert.deepStrictEqual([typoLag.exitCode, typoLag.stdout], [1, ""], describeRun(typoLag))
      assert.include(typoLag.stderr, "no consumer settlemnt.g1 (known: settlement.g1, webhooks")
      // And `dlq list` of it printed [] (exit 0): "nothing parked".
      const typoDlq = yield* cli(database.url, ["dlq", "list", "settlemnt.g1"])
      assert.deepStrictEqual([typoDlq.exitCode, typoDlq.stdout], [1, ""], describeRun(typoDlq))
      assert.include(typoDlq.stderr, "no consumer settlemnt.g1 (known: settlement.g1, webhooks")
      const offsets = yield* cli(database.url, ["consumers", "offsets"])
      assert.deepStrictEqual([offsets.exitCode, offsets.stdout.trim()], [0, "[]"], describeRun(offsets))
      // An extra argument used to be ignored (exit 0, as if the command were what was meant).
      for (const extra of [["consumers", "offsets", "extra"], ["dlq", "redrive", "1", "2"]]) {
        const refused = yield* cli(database.url, extra)
        assert.deepStrictEqual([refused.exitCode, refused.stdout], [2, ""], `${extra.join(" ")}: ${describeRun(refused)}`)
        assert.include(refused.stderr, "usage:")
      }
      const badName = yield* cli(database.url, ["consumers", "reset", "bad/name", "5"])
      assert.strictEqual(badName.exitCode, 2, describeRun(badName))
      assert.include(badName.stderr, "is not a consumer name")

      const merchant = "mer_000000000000000000000000"
      const unknownMerchant = yield* cli(database.url, ["fees", "set", merchant, "EUR", "10", "1"])
      assert.strictEqual(unknownMerchant.exitCode, 1, describeRun(unknownMerchant))
      assert.strictEqual(unknownMerchant.stdout, "", describeRun(unknownMerchant))
      assert.include(unknownMerchant.stderr, `no merchant ${merchant}: nothing changed`)
      // A key for an unknown merchant said so with the foreign key's stack trace.
      const keyForNobody = yield* cli(database.url, ["keys", "create", merchant])
      assert.deepStrictEqual([keyForNobody.exitCode, keyForNobody.stdout], [1, ""], describeRun(keyForNobody))
      assert.include(keyForNobody.stderr, `no merchant ${merchant}: nothing changed`)
      assert.notInclude(keyForNobody.stderr, "    at ")
      // Every command says which database it works on (never the password).
      // A key command's is KEYS_DATABASE_URL's (here derived from DATABASE_URL, an owner's: as it is).
      assert.include(keyForNobody.stderr, `database: ${databaseTarget(database.url)} (KEYS_DATABASE_URL is not set: derived from DATABASE_URL)`)

      const unknownParked = yield* cli(database.url, ["dlq", "redrive", "999999"])
      assert.strictEqual(unknownParked.exitCode, 1, describeRun(unknownParked))
      assert.strictEqual(unknownParked.stdout, "", describeRun(unknownParked))
      assert.include(unknownParked.stderr, "no parked event 999999: nothing re-driven")

      // Asking for help is not an error: the usage on stdout, exit 0, with no database at all.
      for (const asked of [["--help"], ["-h"], ["help"], ["merchants", "create", "--help"], ["consumers", "reset", "-h"]]) {
        const help = yield* cli("postgres://app@127.0.0.1:1/nothing", asked)
        assert.deepStrictEqual([help.exitCode, help.stderr], [0, ""], describeRun(help))
        assert.include(help.stdout, "pnpm cli consumers reset <consumer> <offset>")
      }
      const noCommand = yield* cli(database.url, [])
      assert.deepStrictEqual([noCommand.exitCode, noCommand.stdout], [2, ""], describeRun(noCommand))
      assert.include(noCommand.stderr, "usage:")

      // Port 1 on loopback: nothing listens, the connection is refused at once.
      const down = yield* cli("postgres://app@127.0.0.1:1/nothing", ["dlq", "list"])
      assert.strictEqual(down.exitCode, 1, describeRun(down))
      assert.strictEqual(down.stdout, "", describeRun(down))
      assert.include(down.stderr, "Failed to connect")
      // One line naming the database and the driver's reason, not a stack trace.
      // (A consumer command works on two connections, the API's and the consumers': both named.)
      assert.include(down.stderr, "database app@127.0.0.1:1/nothing (DATABASE_URL) or the consumers' app@127.0.0.1:1/nothing (CONSUMERS_DATABASE_URL): ")
      assert.include(down.stderr, "ECONNREFUSED")
      assert.notInclude(down.stderr, "    at ")
    })), { timeout: 120_000 })

  it.effect("on a migrated database the application's role alone runs a command: the schema owner's URL is never connected (one that answers nothing is ignored), and without it the default does not matter", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const asApp = new URL(database.url)
      asApp.username = "pay_app"
      // Before 0085 every command ran the migrator first: as pay_app (the default owner URL) it was
      // refused reading effect_sql_migrations, whatever the command; an operator's triage failed.
      const alone = yield* cli(asApp.toString(), ["idempotency", "parked"])
      assert.strictEqual(alone.exitCode, 0, describeRun(alone))
      assert.notInclude(alone.stderr, "permission denied", describeRun(alone))
      const ownerUnreachable = yield* cli(asApp.toString(), ["consumers", "offsets"], { MIGRATION_DATABASE_URL: "postgres://postgres@127.0.0.1:1/nothing" })
      assert.deepStrictEqual([ownerUnreachable.exitCode, ownerUnreachable.stdout.trim()], [0, "[]"], describeRun(ownerUnreachable))
      // The consumers' connection unreachable, the API's fine: the message names the consumers' setting too
      // (it named DATABASE_URL alone, which worked: outside operator review).
      const consumersDown = yield* cli(asApp.toString(), ["consumers", "offsets"], { CONSUMERS_DATABASE_URL: "postgres://pay_consumer@127.0.0.1:1/nothing" })
      assert.strictEqual(consumersDown.exitCode, 1, describeRun(consumersDown))
      assert.include(consumersDown.stderr, "the consumers' pay_consumer@127.0.0.1:1/nothing (CONSUMERS_DATABASE_URL): ", describeRun(consumersDown))
      assert.include(consumersDown.stderr, "ECONNREFUSED")
    })))

  it.effect("a schema behind the CLI: every command stops in one line, nothing done and nothing migrated, even with the owner's URL at hand; `migrate` as the app role is refused in one line saying what to set", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const psql = psqlOn(database.url)
      // The newest migration forgotten (its effects stay; the bookkeeping says it is pending).
      const newest = yield* psql("SELECT max(migration_id) FROM effect_sql_migrations")
      const newestLabel = `${newest.padStart(4, "0")}_${yield* psql(`SELECT name FROM effect_sql_migrations WHERE migration_id = ${newest}`)}`
      yield* psql(`DELETE FROM effect_sql_migrations WHERE migration_id = ${newest}`)
      const asApp = testDatabaseUrlAsRole(database.url, "pay_app")
      // A read, and a write, with the owner's URL in the environment (an operator's shell during an
      // incident): refused, and the schema untouched. Before, each applied the migration first.
      for (const args of [["consumers", "offsets"], ["merchants", "create", "Behind"]]) {
        const refused = yield* cli(asApp, args, { MIGRATION_DATABASE_URL: database.url })
        assert.deepStrictEqual([refused.exitCode, refused.stdout], [1, ""], describeRun(refused))
        assert.include(refused.stderr, `the database's schema is behind this CLI (it lacks ${newestLabel}; newest applied ${Number(newest) - 1}, this build carries ${newest}): nothing done`, describeRun(refused))
        assert.include(refused.stderr, "pnpm cli migrate")
        assert.notInclude(refused.stderr, "    at ")
        assert.strictEqual(yield* psql("SELECT max(migration_id) FROM effect_sql_migrations"), String(Number(newest) - 1), `${args.join(" ")}: nothing migrated`)
      }
      assert.strictEqual(yield* psql("SELECT count(*) FROM merchants"), "0", "nothing written")
      // migrate as the app role (MIGRATION_DATABASE_URL left to default to DATABASE_URL): one line saying what to set.
      const asAppRole = yield* cli(asApp, ["migrate"])
      assert.deepStrictEqual([asAppRole.exitCode, asAppRole.stdout], [1, ""], describeRun(asAppRole))
      assert.include(asAppRole.stderr, "migrations as MIGRATION_DATABASE_URL (pay_app@")
      assert.include(asAppRole.stderr, "set it to the schema owner's URL")
      assert.notInclude(asAppRole.stderr, "    at ")
      // (migrate as the owner: the next test, on an empty database; this one's "pending" migration
      // is applied already, and would fail to apply again.)
    })))

  it.effect("a migration lacking below the newest applied one (a branch's file merged after a higher one shipped): a command says which, and migrate stops naming it instead of skipping it for ever", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const psql = psqlOn(database.url)
      const newest = yield* psql("SELECT max(migration_id) FROM effect_sql_migrations")
      const [id, name] = (yield* psql(`SELECT migration_id || '|' || name FROM effect_sql_migrations WHERE migration_id < ${newest} ORDER BY migration_id DESC LIMIT 1`)).split("|")
      const label = `${(id ?? "").padStart(4, "0")}_${name ?? ""}`
      // The bookkeeping of the one before the newest gone: the migrator (ids above the newest only) would never apply it.
      yield* psql(`DELETE FROM effect_sql_migrations WHERE migration_id = ${id}`)
      const asApp = testDatabaseUrlAsRole(database.url, "pay_app")
      const refused = yield* cli(asApp, ["consumers", "offsets"])
      assert.deepStrictEqual([refused.exitCode, refused.stdout], [1, ""], describeRun(refused))
      assert.include(refused.stderr, `the database's schema is behind this CLI (it lacks ${label}; newest applied ${newest}, this build carries ${newest})`, describeRun(refused))
      const migrate = yield* cli(asApp, ["migrate"], { MIGRATION_DATABASE_URL: database.url })
      assert.deepStrictEqual([migrate.exitCode, migrate.stdout], [1, ""], describeRun(migrate))
      assert.include(migrate.stderr, `migrations ${label} are not applied, yet the database has applied up to ${newest}: the migrator applies only ids above its newest, so they would never run. Nothing applied`, describeRun(migrate))
      assert.notInclude(migrate.stderr, "which defaults to DATABASE_URL", "no hint about the owner's URL: the build's files are the matter")
      assert.notInclude(migrate.stderr, "    at ")
      assert.strictEqual(yield* psql(`SELECT count(*) FROM effect_sql_migrations WHERE migration_id = ${id}`), "0", "nothing recorded as applied")
    })))

  it.effect("a migration applied under another name (a file renamed after it shipped): commands and migrate run, migrate warns naming it", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const psql = psqlOn(database.url)
      const [id, name] = (yield* psql("SELECT migration_id || '|' || name FROM effect_sql_migrations ORDER BY migration_id LIMIT 1 OFFSET 3")).split("|")
      yield* psql(`UPDATE effect_sql_migrations SET name = 'its_old_name' WHERE migration_id = ${id}`)
      const asApp = testDatabaseUrlAsRole(database.url, "pay_app")
      const command = yield* cli(asApp, ["consumers", "offsets"])
      assert.strictEqual(command.exitCode, 0, describeRun(command))
      const migrate = yield* cli(asApp, ["migrate"], { MIGRATION_DATABASE_URL: database.url, LOG_LEVEL: "Info" })
      assert.strictEqual(migrate.exitCode, 0, describeRun(migrate))
      assert.include(migrate.stderr, "migrations: applied under another name", describeRun(migrate))
      assert.include(migrate.stderr, `${(id ?? "").padStart(4, "0")}_${name ?? ""} (applied as its_old_name)`, describeRun(migrate))
    })))

  it.effect("an empty database: a command says the schema is behind (applied 0); migrate as the owner creates it", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireEmptyTestDatabase
      const refused = yield* cli(database.url, ["idempotency", "parked"])
      assert.deepStrictEqual([refused.exitCode, refused.stdout], [1, ""], describeRun(refused))
      assert.include(refused.stderr, "the database's schema is behind this CLI (it lacks 0001_foundation, 0002_ledger, 0003_payments and ", describeRun(refused))
      const migrated = yield* cli(testDatabaseUrlAsRole(database.url, "pay_app"), ["migrate"], { MIGRATION_DATABASE_URL: database.url })
      assert.strictEqual(migrated.exitCode, 0, describeRun(migrated))
      const progress: unknown = JSON.parse(migrated.stdout)
      assert.isTrue(typeof progress === "object" && progress !== null && "newest_applied" in progress && progress.newest_applied === Reflect.get(progress, "newest_carried"), migrated.stdout)
      const again = yield* cli(database.url, ["migrate"])
      assert.deepStrictEqual(JSON.parse(again.stdout), progress, "migrate again: nothing pending, the same answer")
      const parked = yield* cli(testDatabaseUrlAsRole(database.url, "pay_app"), ["idempotency", "parked"])
      assert.strictEqual(parked.exitCode, 0, describeRun(parked))
    })))
})
