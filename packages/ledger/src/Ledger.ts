import { Context, DateTime, Duration, Effect, Layer, Option, Predicate, Schema } from "effect"
import { SqlClient, SqlError, SqlSchema } from "effect/sql"
import {
  AccountMismatch,
  BalanceOverflow,
  CurrencyMismatch,
  InsufficientFunds,
  InvalidAccount,
  InvalidPageRequest,
  LedgerUnavailable,
  type PostingError,
  ReferenceConflict,
  UnknownAccount
} from "./Errors.ts"
import {
  Account,
  AccountBalance,
  accountCodePattern,
  type AccountSpec,
  AccountType,
  currencyPattern,
  Discrepancy,
  type EntriesRequest,
  EntryPage,
  LedgerEntry,
  LedgerTransaction,
  limits,
  type PostingRequest,
  PostingResult,
  Side
} from "./Model.ts"
import { batchProblem, legsOf, postingProblem } from "./Validation.ts"

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

// --- rows --------------------------------------------------------------------------------------

const PostedRow = Schema.Struct({
  item: Schema.Int,
  outcome: Schema.Literals(["posted", "replayed", "reference_conflict"]),
  transaction_id: Schema.BigInt,
  posted_at: Schema.DateTimeUtcFromDate,
  description: Schema.String
})

const AccountRow = Schema.Struct({
  id: Schema.BigInt,
  code: Schema.String,
  type: AccountType,
  normal_side: Side,
  currency: Schema.String,
  allow_negative: Schema.Boolean
})

const BalanceRow = Schema.Struct({
  code: Schema.String,
  type: AccountType,
  normal_side: Side,
  currency: Schema.String,
  allow_negative: Schema.Boolean,
  balance_minor: Schema.BigIntFromString
})

const EntryRow = Schema.Struct({
  transaction_id: Schema.BigInt,
  entry_number: Schema.Int,
  reference: Schema.String,
  description: Schema.String,
  side: Side,
  amount_minor: Schema.BigInt,
  currency: Schema.String,
  posted_at: Schema.DateTimeUtcFromDate
})

const DiscrepancyRow = Schema.Struct({
  check_name: Schema.String,
  subject: Schema.String,
  expected_minor: Schema.NullOr(Schema.BigIntFromString),
  actual_minor: Schema.NullOr(Schema.BigIntFromString),
  detail: Schema.String
})

// --- what the database says when it refuses a posting (DETAIL is jsonb text) -------------------

const InsufficientFundsDetail = Schema.fromJsonString(Schema.Struct({
  reference: Schema.String,
  account: Schema.String,
  balance_minor: Schema.BigIntFromString,
  shortfall_minor: Schema.BigIntFromString
}))
const OverflowDetail = Schema.fromJsonString(Schema.Struct({
  reference: Schema.String,
  account: Schema.String,
  balance_minor: Schema.BigIntFromString,
  next_balance_minor: Schema.BigIntFromString
}))
const UnknownAccountDetail = Schema.fromJsonString(Schema.Struct({
  reference: Schema.String,
  account: Schema.String
}))
const CurrencyDetail = Schema.fromJsonString(Schema.Struct({
  reference: Schema.String,
  account: Schema.String,
  account_currency: Schema.String,
  leg_currency: Schema.String
}))
const ConflictDetail = Schema.fromJsonString(Schema.Struct({
  reference: Schema.String,
  transaction_id: Schema.BigIntFromString
}))

/** SQLSTATE and DETAIL of a PostgreSQL error, as the driver attaches them to the cause. */
const serverFields = (error: SqlError.SqlError): { readonly code: string; readonly detail: string } => {
  const cause = error.reason.cause
  const field = (name: string) =>
    Predicate.hasProperty(cause, name) && typeof cause[name] === "string" ? cause[name] : ""
  return { code: field("code"), detail: field("detail") }
}

type DatabaseRefusal = InsufficientFunds | BalanceOverflow | UnknownAccount | CurrencyMismatch | ReferenceConflict

/** The typed refusal the database raised, if this error is one (see migrations/0002_ledger.sql). */
const refusalOf = (error: SqlError.SqlError): Option.Option<DatabaseRefusal> => {
  const { code, detail } = serverFields(error)
  switch (code) {
    case "LG006":
      return Schema.decodeUnknownOption(InsufficientFundsDetail)(detail).pipe(Option.map((d) =>
        new InsufficientFunds({
          reference: d.reference,
          account: d.account,
          balanceMinor: d.balance_minor,
          shortfallMinor: d.shortfall_minor
        })
      ))
    case "22003":
      // Only our own overflow check carries a DETAIL; any other 22003 is left to be a defect.
      return Schema.decodeUnknownOption(OverflowDetail)(detail).pipe(Option.map((d) =>
        new BalanceOverflow({
          reference: d.reference,
          account: d.account,
          balanceMinor: d.balance_minor,
          nextBalanceMinor: d.next_balance_minor
        })
      ))
    case "LG008":
      return Schema.decodeUnknownOption(UnknownAccountDetail)(detail).pipe(Option.map((d) =>
        new UnknownAccount({ reference: d.reference, account: d.account })
      ))
    case "LG009":
      return Schema.decodeUnknownOption(CurrencyDetail)(detail).pipe(Option.map((d) =>
        new CurrencyMismatch({
          reference: d.reference,
          account: d.account,
          accountCurrency: d.account_currency,
          legCurrency: d.leg_currency
        })
      ))
    case "LG007":
      return Schema.decodeUnknownOption(ConflictDetail)(detail).pipe(Option.map((d) =>
        new ReferenceConflict({ reference: d.reference, existingTransactionId: d.transaction_id })
      ))
    default:
      return Option.none()
  }
}

/** 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now: the server went away. */
const serverGoneAway = (error: SqlError.SqlError) => serverFields(error).code.startsWith("57P0")

/** Failures after which the same statement may succeed: nothing of the attempt was kept. */
const isTransient = (error: SqlError.SqlError) =>
  error.reason._tag === "DeadlockError" ||
  error.reason._tag === "SerializationError" ||
  error.reason._tag === "ConnectionError" ||
  serverGoneAway(error)

/**
 * Infrastructure failures become `LedgerUnavailable`; anything else (a constraint the code should
 * have prevented, a syntax error, an unknown server error) is a bug: a defect, loud, cause kept.
 */
const unavailableOrDie = (operation: string) => (error: SqlError.SqlError): Effect.Effect<never, LedgerUnavailable> => {
  switch (error.reason._tag) {
    case "ConnectionError":
    case "AuthenticationError":
    case "AuthorizationError":
    case "LockTimeoutError":
    case "StatementTimeoutError":
    case "DeadlockError":
    case "SerializationError":
      return Effect.fail(
        new LedgerUnavailable({ operation, reason: error.message, retryable: error.isRetryable, cause: error })
      )
    default:
      return serverGoneAway(error)
        ? Effect.fail(new LedgerUnavailable({ operation, reason: error.message, retryable: true, cause: error }))
        : Effect.die(error)
  }
}

const translatePostingFailure = (
  error: SqlError.SqlError
): Effect.Effect<never, DatabaseRefusal | LedgerUnavailable> => {
  const refusal = refusalOf(error)
  return Option.isSome(refusal) ? Effect.fail(refusal.value) : unavailableOrDie("post")(error)
}

/** A row that does not match its schema means the database and this code disagree: a defect. */
const orDieOnSchema = <A, E, R>(effect: Effect.Effect<A, E | Schema.SchemaError, R>) =>
  Effect.catchTag(effect, "SchemaError", (error) => Effect.die(error))

// Values built from rows the row schema has already decoded: their checks would run twice.
const checked = { disableChecks: true } as const

const toTransaction = (row: typeof PostedRow.Type, reference: string) =>
  new LedgerTransaction({
    id: row.transaction_id,
    reference,
    description: row.description,
    postedAt: row.posted_at
  }, checked)

/** 10, 20, 40 ms (bounded by limits.postingRetryCountMax), each with up to 50% random jitter. */
const retryBackoff_ms = (retry: number): number => 10 * 2 ** retry * (1 + Math.random() / 2)

/** The JSON `ledger_post` takes. Amounts travel as decimal strings, never as JS numbers. */
const postingJson = (requests: ReadonlyArray<PostingRequest>): string =>
  JSON.stringify(requests.map((request) => ({
    reference: request.reference,
    description: request.description,
    legs: legsOf(request).map((leg) => ({
      account: leg.account,
      side: leg.side,
      amount_minor: leg.amountMinor.toString(),
      currency: leg.currency
    }))
  })))

export const makeLedger = (sql: SqlClient.SqlClient): Ledger["Service"] => {
  const postStatement = SqlSchema.findAll({
    Request: Schema.String,
    Result: PostedRow,
    execute: (json) =>
      sql`SELECT item, outcome, transaction_id, posted_at, description FROM ledger_post(${json}::jsonb)`
  })

  /**
   * One call of `ledger_post`, under a savepoint when the caller holds a transaction. Outside a
   * caller's transaction, a deadlock, a serialization failure or a lost connection is retried, at
   * most `limits.postingRetryCountMax` times with a jittered backoff: the failed attempt was rolled
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
          transient(error) && retry < limits.postingRetryCountMax
            ? Effect.sleep(Duration.millis(retryBackoff_ms(retry))).pipe(Effect.andThen(attempt(retry + 1)))
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

  const findAccount = SqlSchema.findOneOption({
    Request: Schema.String,
    Result: AccountRow,
    execute: (code) =>
      sql`SELECT id, code, type::text AS type, normal_side::text AS normal_side, currency, allow_negative
          FROM accounts WHERE code = ${code}`
  })

  const ensureAccount = Effect.fn("Ledger.ensureAccount")(function* (spec: AccountSpec) {
    if (!accountCodePattern.test(spec.code) || spec.code.length > limits.accountCodeLengthMax) {
      return yield* new InvalidAccount({ account: spec.code, reason: "not an account code" })
    }
    if (!currencyPattern.test(spec.currency)) {
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

  const toBalance = (row: typeof BalanceRow.Type) =>
    new AccountBalance({
      account: row.code,
      type: row.type,
      normalSide: row.normal_side,
      currency: row.currency,
      allowNegative: row.allow_negative,
      balanceMinor: row.balance_minor
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
    if (!Number.isInteger(request.limit) || request.limit < 1 || request.limit > limits.pageSizeMax) {
      return yield* new InvalidPageRequest({ reason: `limit must be an integer from 1 to ${limits.pageSizeMax}` })
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
          amountMinor: row.amount_minor,
          currency: row.currency,
          postedAt: row.posted_at
        })
      ),
      next: rows.length > request.limit && last !== undefined
        ? { transactionId: last.transaction_id, entryNumber: last.entry_number }
        : null
    })
  }, (effect) => orDieOnSchema(Effect.catchTag(effect, "SqlError", unavailableOrDie("entries"))))

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
          expectedMinor: row.expected_minor,
          actualMinor: row.actual_minor,
          detail: row.detail
        })
      )
    ),
    orDieOnSchema,
    Effect.catchTag("SqlError", unavailableOrDie("verify")),
    Effect.withSpan("Ledger.verify")
  )

  return Ledger.of({ ensureAccount, postTransaction, postTransactions, balance, balanceAsOf, entries, verify })
}
