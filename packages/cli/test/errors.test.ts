// An operator pipes the CLI's output (`pnpm cli dlq list | jq`): results go to stdout, refusals and
// failures to stderr with an exit code that says whose fault it was (2: the command line, 1: the
// rest). Before, a malformed argument, an unknown parked event or merchant, and a database that did
// not answer were printed by the runtime's logger on stdout, with a stack trace and, for an unknown
// parked event, no message at all.
import { assert, describe, it } from "@effect/vitest"
import { acquireTestDatabase } from "@pay/testkit"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { databaseTarget } from "@pay/infra"
import { cli, describeRun } from "./support.ts"

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
      assert.include(keyForNobody.stderr, `database: ${databaseTarget(database.url)} (DATABASE_URL)`)

      const unknownParked = yield* cli(database.url, ["dlq", "redrive", "999999"])
      assert.strictEqual(unknownParked.exitCode, 1, describeRun(unknownParked))
      assert.strictEqual(unknownParked.stdout, "", describeRun(unknownParked))
      assert.include(unknownParked.stderr, "no parked event 999999: nothing re-driven")

      // Asking for help is not an error: the usage on stdout, exit 0, with no database at all.
      for (const flag of ["--help", "-h", "help"]) {
        const help = yield* cli("postgres://app@127.0.0.1:1/nothing", [flag])
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

  it.effect("the application's role where the schema owner is needed (a pending migration, MIGRATION_DATABASE_URL left to default to DATABASE_URL): one line saying what to set, exit 1, not a stack trace", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      // The newest migration forgotten: the next command applies it first, as the role it runs as.
      yield* Effect.promise(() => new Promise<void>((resolve, reject) =>
        execFile("psql", [database.url, "-qc", "DELETE FROM effect_sql_migrations WHERE migration_id = (SELECT max(migration_id) FROM effect_sql_migrations)"],
          (error) => (error === null ? resolve() : reject(error)))))
      const asApp = new URL(database.url)
      asApp.username = "pay_app"
      const refused = yield* cli(asApp.toString(), ["consumers", "offsets"], { MIGRATION_DATABASE_URL: asApp.toString() })
      assert.deepStrictEqual([refused.exitCode, refused.stdout], [1, ""], describeRun(refused))
      assert.include(refused.stderr, "migrations as MIGRATION_DATABASE_URL (pay_app@")
      assert.include(refused.stderr, "permission denied")
      assert.include(refused.stderr, "set it to the schema owner's URL")
      assert.notInclude(refused.stderr, "    at ")
    })))
})
