import { Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { isSqlError } from "effect/sql/SqlError"
import { failureText, sqlStateOf } from "./SqlFailure.ts"
import { decodeRow } from "./SqlRows.ts"

/** A process's database role cannot do its work: the setting that names it is wrong. The process stops, saying which. */
export class DatabaseRoleUnfit extends Schema.TaggedError<DatabaseRoleUnfit>()("DatabaseRoleUnfit", { message: Schema.String }) {}

const Role = decodeRow(Schema.Struct({ role: Schema.String }))
const Privilege = decodeRow(Schema.Struct({ deployed: Schema.Boolean, allowed: Schema.Boolean }))

/**
 * Checked once at start, on the pool of `setting`: its role holds `privilege` (INSERT unless said:
 * the consumers write their tables; the publisher, which inserts nothing, UPDATEs some columns) on each of `tables`. A
 * login the database refuses (a wrong password, a role or database that does not exist: SQLSTATE
 * class 28 or 3D) or a role without the grants (the API's URL given to the consumers) stops the
 * process with one line naming `setting`; otherwise the process ran, "ready", while its loops
 * retried for ever (outside operator review). A database that does not answer is an outage, not a
 * setting: said in a WARN, and the process starts (its loops retry); so does a table not deployed
 * yet (the server migrates).
 */
export const checkDatabaseRole = (setting: string, tables: ReadonlyArray<string>, privilege: "INSERT" | "UPDATE" = "INSERT") =>
  Layer.effectDiscard(Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const { role } = yield* Role(sql`SELECT current_user AS role`)
    for (const table of tables) {
      const { deployed, allowed } = yield* Privilege(sql`
        SELECT to_regclass(${table}) IS NOT NULL AS deployed,
               to_regclass(${table}) IS NOT NULL AND has_any_column_privilege(to_regclass(${table}), ${privilege}) AS allowed`)
      if (!deployed) return yield* Effect.logWarning(`${setting}: table ${table} is not deployed yet; the role's grants are not checked`)
      if (!allowed) {
        return yield* new DatabaseRoleUnfit({ message: `${setting}: the role ${role} may not ${privilege === "INSERT" ? "write" : "update"} ${table}; set ${setting} to the URL of the role that may (docs/security.md)` })
      }
    }
  }).pipe(
    Effect.catchIf(isSqlError, (error) => {
      const sqlClass = sqlStateOf(error)?.slice(0, 2)
      return sqlClass === "28" || sqlClass === "3D"
        ? Effect.fail(new DatabaseRoleUnfit({ message: `${setting}: the database refused the login: ${failureText(error)}` }))
        : Effect.logWarning(`${setting}: the role's grants could not be checked at start; the work retries`).pipe(
          Effect.annotateLogs({ error: failureText(error) })
        )
    })
  ))
