import { isCurrencyCode } from "@pay/domain"
import { Context, DateTime, Duration, Effect, Layer, Metric, Option, Schema } from "effect"
import { SqlClient, type SqlError, SqlSchema } from "effect/sql"
import {
  AccountMismatch,
  InvalidAccount,
  InvalidPageRequest,
  type LedgerUnavailable,
  type PostingError,
  ReferenceConflict,
  UnknownAccount
} from "./Errors.ts"
import { isTransient, orDieOnSchema, translatePostingFailure, unavailableOrDie } from "./LedgerFailures.ts"
import { AccountRow, BalanceRow, checked, DiscrepancyRow, EntryRow, PostedRow, toTransaction } from "./LedgerRows.ts"
import {
  Account,
  AccountBalance,
  accountCodePattern,
  type AccountSpec,
  Discrepancy,
  type EntriesRequest,
  EntryPage,
  LedgerEntry,
  limits,
  type PostingRequest,
  PostingResult
} from "./Model.ts"
import { makePostTransactionWith, type PostingAlongside, postingJson } from "./PostingStatement.ts"
import { batchProblem, postingProblem } from "./Validation.ts"

/**
 * The Ledger: posts double-entry transactions and reads balances and entries.
 *
 * Posting is one round trip: `SELECT * FROM ledger_post($1::jsonb)`, a PL/pgSQL function that
 * inserts the transaction and its entries; the entries trigger locks the balance rows in
 * account-id order, checks funds and updates the stored balances; a deferred trigger checks at
 * commit that debits equal credits. The code checks the same rules before sending (Validation.ts),
 * so a database refusal of a malformed posting is a bug and surfaces as a defect.
 *
 * Inside a caller's `sql.withTransaction`, a posting runs on the caller's connection under a
 * savepoint (Effect nests `withTransaction` as SAVEPOINT / RELEASE): a refused posting rolls back
 * to the savepoint only, and the caller's transaction stays usable. Outside, it is a single
 * autocommitted statement.
 */
export class Ledger extends Context.Service<Ledger, {
  /** Create-or-get, race-free. Fails if the code exists with another type, currency or rule. */
  readonly ensureAccount: (
    spec: AccountSpec
  ) => Effect.Effect<Account, InvalidAccount | AccountMismatch | LedgerUnavailable>
  /** Posts one transaction; a retry with the same reference and legs answers `replayed: true`. */
  readonly postTransaction: (request: PostingRequest) => Effect.Effect<PostingResult, PostingError>
  /**
   * For a caller's transaction that ends on any failure of this call (the settle): the posting
   * without the savepoint that would keep that transaction usable after a refusal (two round trips
   * fewer), and the caller's `alongside` writes in the same statement (one more: the settlement row
   * with its event). `alongsideRows`: the rows of the CTE the caller named `counted`.
   */
  readonly postTransactionWith: (
    request: PostingRequest,
    alongside: PostingAlongside
  ) => Effect.Effect<{ readonly result: PostingResult; readonly alongsideRows: number }, PostingError>
  /**
   * Posts many transactions in one database transaction, all or nothing (replays excepted: a
   * posting whose reference already holds the same legs is answered `replayed: true`). Results are
   * in request order; an error names the refused posting by its reference.
   */
  readonly postTransactions: (
    requests: ReadonlyArray<PostingRequest>
  ) => Effect.Effect<ReadonlyArray<PostingResult>, PostingError>
  readonly balance: (account: string) => Effect.Effect<AccountBalance, UnknownAccount | LedgerUnavailable>
  /** The balance recomputed from the entries posted at or before `instant`. */
  readonly balanceAsOf: (
    account: string,
    instant: DateTime.Utc
  ) => Effect.Effect<AccountBalance, UnknownAccount | LedgerUnavailable>
  readonly entries: (
    request: EntriesRequest
  ) => Effect.Effect<EntryPage, UnknownAccount | InvalidPageRequest | LedgerUnavailable>
  /** `ledger_verify()`: every discrepancy between stored and derived figures; empty when healthy. */
  readonly verify: Effect.Effect<ReadonlyArray<Discrepancy>, LedgerUnavailable>
}>()("ledger/Ledger") {
  static readonly layer = Layer.effect(Ledger, Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return makeLedger(sql)
  }))
}

/**
 * Every posting retried after a transient failure, and those retried after a deadlock: counted
 * where they happen (PostgreSQL's own deadlock counter is flushed at most once a second, so a test
 * reading it can miss one). Rows are locked in account-id order, so the deadlock count stays 0.
 */
export const ledgerPostingRetries = Metric.counter("ledger_posting_retries_total", {
  description: "ledger_post calls retried after a deadlock, a serialization failure or a lost connection"
})
export const ledgerDeadlockRetries = Metric.counter("ledger_deadlock_retries_total", {
  description: "ledger_post calls retried after PostgreSQL reported a deadlock (expected: 0)"
})

/** 10, 20, 40 ms (bounded by limits.postingRetryCount_max), each with up to 50% random jitter. */
const retryBackoff_ms = (retry: number): number => 10 * 2 ** retry * (1 + Math.random() / 2)

/** Posting: one `ledger_post` call per request or batch, validated first, retried when transient. */
const makePosting = (sql: SqlClient.SqlClient) => {
  const postStatement = SqlSchema.findAll({
    Request: Schema.String,
    Result: PostedRow,
    execute: (json) =>
      sql`SELECT item, outcome, transaction_id, posted_at, description FROM ledger_post(${json}::jsonb)`
  })

  /**
   * One call of `ledger_post`, under a savepoint when the caller holds a transaction. Outside a
   * caller's transaction, a deadlock, a serialization failure or a lost connection is retried, at
   * most `limits.postingRetryCount_max` times with a jittered backoff: the failed attempt was rolled
   * back whole, or it committed and the retry finds its reference and answers a replay. (A
   * hand-written loop rather than Effect.retry: nothing is built for retrying until an attempt has
   * failed.)
   */
  const callPost = (requests: ReadonlyArray<PostingRequest>) =>
    Effect.gen(function* () {
      const nested = Option.isSome(yield* Effect.serviceOption(sql.transactionService))
      const json = postingJson(requests)
      const statement = nested ? sql.withTransaction(postStatement(json)) : postStatement(json)
      // Inside a caller's transaction nothing is retried: a deadlock there involves locks the
      // caller's own transaction holds, and its snapshot or connection is the caller's. The caller
      // gets LedgerUnavailable (retryable) and retries its whole transaction.
      const transient = (error: SqlError.SqlError) => !nested && isTransient(error)
      const attempt = (retry: number): Effect.Effect<ReadonlyArray<typeof PostedRow.Type>, SqlError.SqlError | Schema.SchemaError> =>
        Effect.catchTag(statement, "SqlError", (error) =>
          transient(error) && retry < limits.postingRetryCount_max
            ? Metric.update(ledgerPostingRetries, 1).pipe(
              Effect.andThen(error.reason._tag === "DeadlockError" ? Metric.update(ledgerDeadlockRetries, 1) : Effect.void),
              Effect.andThen(Effect.sleep(Duration.millis(retryBackoff_ms(retry)))),
              Effect.andThen(attempt(retry + 1))
            )
            : Effect.fail(error))
      return yield* attempt(0)
    }).pipe(
      orDieOnSchema,
      Effect.catchTag("SqlError", translatePostingFailure)
    )

  /** Turns `ledger_post` rows (any order) into one result per request, in request order. */
  const resultsOf = (requests: ReadonlyArray<PostingRequest>, rows: ReadonlyArray<typeof PostedRow.Type>) =>
    Effect.gen(function* () {
      const results: Array<PostingResult> = []
      for (const row of rows) {
        const request = requests[row.item]
        if (request === undefined) return yield* Effect.die(new Error(`ledger_post answered for item ${row.item}`))
        if (row.outcome === "reference_conflict") {
          return yield* new ReferenceConflict({ reference: request.reference, existingTransactionId: row.transaction_id })
        }
        results[row.item] = new PostingResult({
          transaction: toTransaction(row, request.reference),
          replayed: row.outcome === "replayed"
        }, checked)
      }
      if (rows.length !== requests.length) {
        return yield* Effect.die(new Error(`ledger_post answered ${rows.length} rows for ${requests.length} postings`))
      }
      return results
    })

  const postTransactions = Effect.fn("Ledger.postTransactions")(function* (requests: ReadonlyArray<PostingRequest>) {
    const problem = batchProblem(requests)
    if (problem !== undefined) return yield* problem
    const rows = yield* callPost(requests)
    return yield* resultsOf(requests, rows)
  })

  const postTransaction = Effect.fn("Ledger.postTransaction")(function* (request: PostingRequest) {
    const problem = postingProblem(request)
    if (problem !== undefined) return yield* problem
    const rows = yield* callPost([request])
    const [result] = yield* resultsOf([request], rows)
    if (result === undefined) return yield* Effect.die(new Error("ledger_post answered no row"))
    return result
  })

  return { postTransaction, postTransactions, resultsOf }
}

/** Accounts: create-or-get, race-free. */
const makeAccounts = (sql: SqlClient.SqlClient) => {
  const findAccount = SqlSchema.findOneOption({
    Request: Schema.String,
    Result: AccountRow,
    execute: (code) =>
      sql`SELECT id, code, type::text AS type, normal_side::text AS normal_side, currency, allow_negative
          FROM accounts WHERE code = ${code}`
  })

  const ensureAccount = Effect.fn("Ledger.ensureAccount")(function* (spec: AccountSpec) {
    if (!accountCodePattern.test(spec.code) || spec.code.length > limits.accountCodeLength_max) {
      return yield* new InvalidAccount({ account: spec.code, reason: "not an account code" })
    }
    if (!isCurrencyCode(spec.currency)) {
      return yield* new InvalidAccount({ account: spec.code, reason: `"${spec.currency}" is not a currency code` })
    }
    // Two statements on purpose: when a concurrent caller inserts the same code, ON CONFLICT waits
    // for it and skips; only a new statement (new snapshot) then sees the row it committed.
    yield* sql`INSERT INTO accounts (code, type, currency, allow_negative)
               VALUES (${spec.code}, ${spec.type}::ledger_account_type, ${spec.currency}, ${spec.allowNegative})
               ON CONFLICT (code) DO NOTHING`
    const found = yield* findAccount(spec.code)
    if (Option.isNone(found)) {
      return yield* Effect.die(new Error(`account ${spec.code} neither inserted nor found`))
    }
    const row = found.value
    const existing = `${row.type} ${row.currency} allowNegative=${row.allow_negative}`
    const requested = `${spec.type} ${spec.currency} allowNegative=${spec.allowNegative}`
    if (existing !== requested) {
      return yield* new AccountMismatch({ account: spec.code, existing, requested })
    }
    return new Account({
      id: row.id,
      code: row.code,
      type: row.type,
      normalSide: row.normal_side,
      currency: row.currency,
      allowNegative: row.allow_negative
    })
  }, (effect) => orDieOnSchema(Effect.catchTag(effect, "SqlError", unavailableOrDie("ensureAccount"))))

  return { findAccount, ensureAccount }
}

/** Balances: stored, and recomputed as of an instant. */
const makeBalances = (sql: SqlClient.SqlClient) => {
  const toBalance = (row: typeof BalanceRow.Type) =>
    new AccountBalance({
      account: row.code,
      type: row.type,
      normalSide: row.normal_side,
      currency: row.currency,
      allowNegative: row.allow_negative,
      balance_minor: row.balance_minor
    })

  const findBalance = SqlSchema.findOneOption({
    Request: Schema.String,
    Result: BalanceRow,
    execute: (code) =>
      sql`SELECT a.code, a.type::text AS type, a.normal_side::text AS normal_side, a.currency, a.allow_negative,
                 b.balance_minor::text AS balance_minor
          FROM accounts a JOIN account_balances b ON b.account_id = a.id
          WHERE a.code = ${code}`
  })

  const balance = Effect.fn("Ledger.balance")(function* (account: string) {
    const row = yield* findBalance(account)
    if (Option.isNone(row)) return yield* new UnknownAccount({ account })
    return toBalance(row.value)
  }, (effect) => orDieOnSchema(Effect.catchTag(effect, "SqlError", unavailableOrDie("balance"))))

  const findBalanceAsOf = SqlSchema.findOneOption({
    Request: Schema.Struct({ code: Schema.String, instant: Schema.String }),
    Result: BalanceRow,
    execute: ({ code, instant }) =>
      sql`SELECT a.code, a.type::text AS type, a.normal_side::text AS normal_side, a.currency, a.allow_negative,
                 coalesce(sum(CASE WHEN e.side = a.normal_side THEN e.amount_minor::numeric
                                   ELSE -e.amount_minor::numeric END), 0)::text AS balance_minor
          FROM accounts a
          LEFT JOIN ledger_entries e ON e.account_id = a.id AND e.posted_at <= ${instant}::timestamptz
          WHERE a.code = ${code}
          GROUP BY a.id`
  })

  const balanceAsOf = Effect.fn("Ledger.balanceAsOf")(function* (account: string, instant: DateTime.Utc) {
    const row = yield* findBalanceAsOf({ code: account, instant: DateTime.formatIso(instant) })
    if (Option.isNone(row)) return yield* new UnknownAccount({ account })
    return toBalance(row.value)
  }, (effect) => orDieOnSchema(Effect.catchTag(effect, "SqlError", unavailableOrDie("balanceAsOf"))))

  return { balance, balanceAsOf }
}

/** An account's entries, in posting order, a bounded page at a time. */
const makeEntries = (sql: SqlClient.SqlClient, findAccount: ReturnType<typeof makeAccounts>["findAccount"]) => {
  const findEntries = SqlSchema.findAll({
    Request: Schema.Struct({
      accountId: Schema.BigInt,
      afterTransactionId: Schema.BigInt,
      afterEntryNumber: Schema.Int,
      rowCount: Schema.Int
    }),
    Result: EntryRow,
    execute: (page) =>
      sql`SELECT e.transaction_id, e.entry_number, t.reference, t.description, e.side::text AS side,
                 e.amount_minor, e.currency, e.posted_at
          FROM ledger_entries e JOIN transactions t ON t.id = e.transaction_id
          WHERE e.account_id = ${page.accountId}
            AND (e.transaction_id, e.entry_number) > (${page.afterTransactionId}::bigint, ${page.afterEntryNumber}::integer)
          ORDER BY e.transaction_id, e.entry_number
          LIMIT ${page.rowCount}::integer`
  })

  const entries = Effect.fn("Ledger.entries")(function* (request: EntriesRequest) {
    if (!Number.isInteger(request.limit) || request.limit < 1 || request.limit > limits.pageSize_max) {
      return yield* new InvalidPageRequest({ reason: `limit must be an integer from 1 to ${limits.pageSize_max}` })
    }
    const account = yield* findAccount(request.account)
    if (Option.isNone(account)) return yield* new UnknownAccount({ account: request.account })
    // One row more than asked tells whether another page follows.
    const rows = yield* findEntries({
      accountId: account.value.id,
      afterTransactionId: request.after?.transactionId ?? 0n,
      afterEntryNumber: request.after?.entryNumber ?? 0,
      rowCount: request.limit + 1
    })
    const page = rows.slice(0, request.limit)
    const last = page[page.length - 1]
    return new EntryPage({
      entries: page.map((row) =>
        new LedgerEntry({
          transactionId: row.transaction_id,
          entryNumber: row.entry_number,
          reference: row.reference,
          description: row.description,
          side: row.side,
          amount_minor: row.amount_minor,
          currency: row.currency,
          postedAt: row.posted_at
        })
      ),
      next: rows.length > request.limit && last !== undefined
        ? { transactionId: last.transaction_id, entryNumber: last.entry_number }
        : null
    })
  }, (effect) => orDieOnSchema(Effect.catchTag(effect, "SqlError", unavailableOrDie("entries"))))

  return entries
}

const makeVerify = (sql: SqlClient.SqlClient) => {
  const verifyStatement = SqlSchema.findAll({
    Request: Schema.Void,
    Result: DiscrepancyRow,
    execute: () =>
      sql`SELECT check_name, subject, expected_minor::text AS expected_minor, actual_minor::text AS actual_minor, detail
          FROM ledger_verify()`
  })

  const verify = verifyStatement(undefined).pipe(
    Effect.map((rows) =>
      rows.map((row) =>
        new Discrepancy({
          check: row.check_name,
          subject: row.subject,
          expected_minor: row.expected_minor,
          actual_minor: row.actual_minor,
          detail: row.detail
        })
      )
    ),
    orDieOnSchema,
    Effect.catchTag("SqlError", unavailableOrDie("verify")),
    Effect.withSpan("Ledger.verify")
  )

  return verify
}

export const makeLedger = (sql: SqlClient.SqlClient): Ledger["Service"] => {
  const accounts = makeAccounts(sql)
  const { resultsOf, ...posting } = makePosting(sql)
  return Ledger.of({
    ensureAccount: accounts.ensureAccount,
    ...posting,
    postTransactionWith: makePostTransactionWith(sql, resultsOf),
    ...makeBalances(sql),
    entries: makeEntries(sql, accounts.findAccount),
    verify: makeVerify(sql)
  })
}
