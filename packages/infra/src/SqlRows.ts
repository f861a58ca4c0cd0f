import { Effect, Schema } from "effect"
import type { SqlError } from "effect/sql/SqlError"

/**
 * Every row read from SQL is decoded by a schema (never typed by an unchecked `sql<{...}>`). For a
 * statement whose select list (or RETURNING list) and the table's constraints fix the shape, a row
 * that does not match is a bug, not a request error: a defect, loud.
 *
 * ```ts
 * const ids = decodeRows(Schema.Struct({ id: Schema.String }))
 * const updated = yield* ids(sql`UPDATE … RETURNING id`)
 * ```
 */
export const decodeRows = <S extends Schema.Top & { readonly DecodingServices: never }>(row: S) => {
  const decode = Schema.decodeUnknownEffect(Schema.Array(row))
  return <E, R>(statement: Effect.Effect<ReadonlyArray<unknown>, E, R>): Effect.Effect<ReadonlyArray<S["Type"]>, E, R> =>
    statement.pipe(Effect.flatMap(decode), Effect.catchTag("SchemaError", Effect.die))
}

/** `decodeRows` for statements that return exactly one row (an aggregate, INSERT … RETURNING). */
export const decodeRow = <S extends Schema.Top & { readonly DecodingServices: never }>(row: S) => {
  const rows = decodeRows(row)
  return <E, R>(statement: Effect.Effect<ReadonlyArray<unknown>, E, R>): Effect.Effect<S["Type"], E, R> =>
    rows(statement).pipe(
      Effect.flatMap(([first, ...rest]) =>
        first === undefined || rest.length > 0
          ? Effect.die(new Error(`expected exactly one row, got ${rest.length + (first === undefined ? 0 : 1)}`))
          : Effect.succeed(first)
      )
    )
}

/**
 * A CTE name that our code (never input) puts into a statement as is (`sql.literal`), when one
 * package's CTE reads another's in a composed statement: a plain lower-case identifier.
 */
export const cteName = /^[a-z_][a-z0-9_]{0,62}$/

export type { SqlError }
