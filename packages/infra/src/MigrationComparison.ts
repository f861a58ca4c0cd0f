import { readdirSync } from "node:fs"
import { fileURLToPath } from "node:url"

/** The project's `migrations/` folder: hand-written SQL, `NNNN_name.sql`, applied in id order. */
export const migrationsDirectory = fileURLToPath(new URL("../../../migrations", import.meta.url))

/** A migration file's name as the loader reads it: `<id>_<lowercase name>.sql`. */
const migrationFile = /^(\d+)_([a-z0-9_]+)\.sql$/

/** A migration file as carried: its id, its name, and the file's name without `.sql` (`0101_name`, how it is named in messages). */
export interface CarriedMigration {
  readonly id: number
  readonly name: string
  readonly stem: string
}

/** The migrations this build carries: `<id>_<name>` of each file in `directory`, by id. */
export const carriedMigrations = (directory: string = migrationsDirectory): ReadonlyArray<CarriedMigration> =>
  readdirSync(directory)
    .flatMap((file) => {
      const match = migrationFile.exec(file)
      return match === null || match[2] === undefined ? [] : [{ id: Number(match[1]), name: match[2], stem: file.slice(0, -".sql".length) }]
    })
    .sort((a, b) => a.id - b.id)

/**
 * Files that start with digits, as a migration's name does, but that the loader does not read
 * (`0103_AddThing.sql`, `0103_add-thing.sql`, `0103_x.SQL`): skipped in silence before (outside re-test).
 */
const misnamedMigrationFiles = (directory: string = migrationsDirectory): ReadonlyArray<string> =>
  readdirSync(directory).filter((file) => /^\d/.test(file) && !migrationFile.test(file))

/**
 * How the database's migrations compare with this build's: the newest of each, and the carried
 * ones it lacks (`0101_name`), compared by id (the migrator's key). The migrator applies only ids
 * above the newest applied one, so a lacking one at or below it (a branch's migration merged after
 * a higher one was deployed) would be skipped for ever: `unreachable`. An id applied under another
 * name is `renamed` (a file renamed after it shipped, as 0049, 0073 and 0078 were; or two branches'
 * files sharing an id, which the name alone cannot tell apart): said in a WARN, never a stop.
 */
export interface MigrationComparison {
  readonly newest_applied: number
  readonly newest_carried: number
  readonly missing: ReadonlyArray<string>
  readonly unreachable: ReadonlyArray<string>
  readonly renamed: ReadonlyArray<string>
  /** Files of this build that share an id (two branches' migrations): the migrator would run one. */
  readonly shared_ids: ReadonlyArray<string>
  /** Files named like a migration that the loader does not read (`<digits>_<lower_snake>.sql` only). */
  readonly misnamed: ReadonlyArray<string>
}

export const compareMigrations = (
  applied: ReadonlyArray<{ readonly migration_id: number; readonly name: string }>,
  carried: ReadonlyArray<CarriedMigration> = carriedMigrations(),
  misnamed: ReadonlyArray<string> = misnamedMigrationFiles()
): MigrationComparison => {
  const newest_applied = applied.reduce((newest, row) => Math.max(newest, row.migration_id), 0)
  const appliedNames = new Map(applied.map((row) => [row.migration_id, row.name]))
  const lacking = carried.filter((file) => !appliedNames.has(file.id))
  const label = (file: CarriedMigration) => file.stem
  return {
    newest_applied,
    newest_carried: carried.at(-1)?.id ?? 0,
    missing: lacking.map(label),
    unreachable: lacking.filter((file) => file.id <= newest_applied).map(label),
    renamed: carried.flatMap((file) => {
      const name = appliedNames.get(file.id)
      return name === undefined || name === file.name ? [] : [`${label(file)} (applied as ${name})`]
    }),
    shared_ids: carried.filter((file) => carried.filter((other) => other.id === file.id).length > 1).map(label),
    misnamed
  }
}

/** Migration labels for one line: the first three, then how many more (an empty database lacks them all). */
export const migrationsInBrief = (labels: ReadonlyArray<string>): string =>
  labels.length <= 3 ? labels.join(", ") : `${labels.slice(0, 3).join(", ")} and ${labels.length - 3} more`

/** Why a build whose migrations the migrator would skip is stopped (nothing applied). */
export const unreachableMessage = (comparison: MigrationComparison): string =>
  `migrations ${migrationsInBrief(comparison.unreachable)} are not applied, yet the database has applied up to ${comparison.newest_applied}: the migrator applies only ids above its newest, so they would never run. Nothing applied: give them ids above ${comparison.newest_applied} (if one was applied and only its row in effect_sql_migrations is gone, restore the row instead; docs/runbook.md, "Migrations")`

/** Files sharing an id: the migrator records one name per id, and would run one of them only. */
const sharedIdsMessage = (comparison: MigrationComparison): string =>
  `migration files ${migrationsInBrief(comparison.shared_ids)} share an id: the migrator runs one migration per id, so one of them would never run. Nothing applied: give one an id above ${Math.max(comparison.newest_applied, comparison.newest_carried)} (docs/runbook.md, "Migrations")`

/** Files the loader does not read: their migrations would never run. */
const misnamedMessage = (comparison: MigrationComparison): string =>
  `files ${migrationsInBrief(comparison.misnamed)} in migrations/ are not named as the migrator reads them (<digits>_<lowercase, digits and _>.sql), so they would never run. Nothing applied: rename them (docs/runbook.md, "Migrations")`

/**
 * Why this build's own migration files cannot be applied as they are (a misnamed file, two files
 * sharing an id), whatever the database holds; undefined when they can. Every process stops on it:
 * a server or `migrate` before migrating, a CLI command before running.
 */
export const buildFilesRefusal = (comparison: MigrationComparison): string | undefined =>
  comparison.misnamed.length > 0 ? misnamedMessage(comparison)
  : comparison.shared_ids.length > 0 ? sharedIdsMessage(comparison)
  : undefined
