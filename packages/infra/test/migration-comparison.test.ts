// How a database's migrations compare with a build's (Postgres.ts `compareMigrations`): the
// migrator applies only ids above the newest applied one and one migration per id, so what it would
// skip for ever is named (and stops a start: errors.test.ts in the CLI covers that wiring), while a
// file renamed after it shipped is only a warning.
import { assert, it } from "@effect/vitest"
import { compareMigrations } from "@pay/infra"

const applied = [{ migration_id: 1, name: "foundation" }, { migration_id: 2, name: "ledger" }, { migration_id: 5, name: "outbox" }]

it("lacking ids are missing, those below the newest applied unreachable; a renamed id is not missing; files sharing an id, and files named like migrations the loader skips, are named", () => {
  const carried = [
    { id: 1, name: "foundation", stem: "0001_foundation" }, { id: 2, name: "ledger_renamed", stem: "0002_ledger_renamed" }, { id: 3, name: "branch", stem: "0003_branch" },
    { id: 5, name: "outbox", stem: "0005_outbox" }, { id: 5, name: "other_branch", stem: "0005_other_branch" }, { id: 6, name: "next", stem: "0006_next" }
  ]
  assert.deepStrictEqual(compareMigrations(applied, carried, ["0007_AddThing.sql"]), {
    newest_applied: 5,
    newest_carried: 6,
    missing: ["0003_branch", "0006_next"],
    unreachable: ["0003_branch"],
    renamed: ["0002_ledger_renamed (applied as ledger)", "0005_other_branch (applied as outbox)"],
    shared_ids: ["0005_outbox", "0005_other_branch"],
    misnamed: ["0007_AddThing.sql"]
  })
  // The file's own name, as written, not a padded id.
  assert.deepStrictEqual(compareMigrations([], [{ id: 103, name: "x", stem: "103_x" }], []).missing, ["103_x"])
})

it("a database that has it all, and an empty one", () => {
  const carried = [{ id: 1, name: "foundation", stem: "0001_foundation" }, { id: 2, name: "ledger", stem: "0002_ledger" }, { id: 5, name: "outbox", stem: "0005_outbox" }]
  assert.deepStrictEqual(compareMigrations(applied, carried, []), { newest_applied: 5, newest_carried: 5, missing: [], unreachable: [], renamed: [], shared_ids: [], misnamed: [] })
  assert.deepStrictEqual(compareMigrations([], carried, []).missing, ["0001_foundation", "0002_ledger", "0005_outbox"])
  assert.deepStrictEqual(compareMigrations([], carried, []).unreachable, [])
})
