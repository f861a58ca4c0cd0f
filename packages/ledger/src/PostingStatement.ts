/**
 * What a posting sends: the JSON `ledger_post` takes, and the statement of `Ledger.postTransactionWith`
 * (the posting with the caller's own writes after it, in one round trip).
 */
import { cteName } from "@pay/infra"
import { Effect, Option, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { Fragment } from "effect/sql/Statement"
import type { PostingError } from "./Errors.ts"
import { orDieOnSchema, translatePostingFailure } from "./LedgerFailures.ts"
import { PostedRow } from "./LedgerRows.ts"
import type { PostingRequest, PostingResult } from "./Model.ts"
import { legsOf, postingProblem } from "./Validation.ts"

/** The JSON `ledger_post` takes. Amounts travel as decimal strings, never as JS numbers. */
export const postingJson = (requests: ReadonlyArray<PostingRequest>): string =>
  JSON.stringify(requests.map((request) => ({
    reference: request.reference,
    description: request.description,
    legs: legsOf(request).map((leg) => ({
      account: leg.account,
      side: leg.side,
      amount_minor: leg.amount_minor.toString(),
      currency: leg.currency
    }))
  })))

/** The CTE of `postTransactionWith`'s statement that holds the posting's row. */
export const postedCte = "posted"

/**
 * The caller's writes that belong with a posting, in the posting's own statement
 * (`Ledger.postTransactionWith`): `ctes` are CTEs after the posting (`name AS (…), …`) that may
 * read its row from the CTE `posted` (item, outcome, transaction_id, posted_at); the rows of the
 * one named `counted` are counted in the answer, so the caller can check what it wrote.
 */
export interface PostingAlongside {
  readonly ctes: Fragment
  readonly counted: string
}

/** A posting's row with the count of the caller's rows written alongside it. */
const PostedWithAlongsideRow = Schema.Struct({ ...PostedRow.fields, alongside_rows: Schema.Int })
const decodePostedWithAlongside = Schema.decodeUnknownEffect(Schema.Array(PostedWithAlongsideRow))

type ResultsOf = (
  requests: ReadonlyArray<PostingRequest>,
  rows: ReadonlyArray<typeof PostedRow.Type>
) => Effect.Effect<Array<PostingResult>, PostingError>

/**
 * `Ledger.postTransactionWith`: one `ledger_post` call with the caller's CTEs after it, in one
 * statement, inside the caller's transaction (no savepoint, no retry: the caller's transaction
 * ends on any failure, and a refused posting fails the statement whole, the caller's rows with it).
 */
export const makePostTransactionWith = (sql: SqlClient.SqlClient, resultsOf: ResultsOf) => {
  const statement = (json: string, alongside: PostingAlongside) =>
    Effect.gen(function* () {
      if (!cteName.test(alongside.counted)) {
        return yield* Effect.die(new Error(`postTransactionWith: ${JSON.stringify(alongside.counted)} is not a CTE name`))
      }
      const rows = yield* sql`
        WITH ${sql.literal(postedCte)} AS MATERIALIZED (
          SELECT item, outcome, transaction_id, posted_at, description FROM ledger_post(${json}::jsonb)),
        ${alongside.ctes}
        SELECT item, outcome, transaction_id, posted_at, description,
               (SELECT count(*) FROM ${sql.literal(alongside.counted)})::int AS alongside_rows
        FROM ${sql.literal(postedCte)}`
      return yield* decodePostedWithAlongside(rows)
    }).pipe(orDieOnSchema, Effect.catchTag("SqlError", translatePostingFailure))

  return Effect.fn("Ledger.postTransactionWith")(function* (request: PostingRequest, alongside: PostingAlongside) {
    const problem = postingProblem(request)
    if (problem !== undefined) return yield* problem
    if (Option.isNone(yield* Effect.serviceOption(sql.transactionService))) {
      return yield* Effect.die(new Error("Ledger.postTransactionWith needs the caller's transaction"))
    }
    const rows = yield* statement(postingJson([request]), alongside)
    const [result] = yield* resultsOf([request], rows)
    if (result === undefined) return yield* Effect.die(new Error("ledger_post answered no row"))
    return { result, alongsideRows: rows[0]?.alongside_rows ?? 0 }
  })
}
