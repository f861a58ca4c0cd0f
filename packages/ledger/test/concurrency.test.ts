import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Metric, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { PostingError } from "../src/Errors.ts"
import { Ledger, ledgerDeadlockRetries } from "../src/Ledger.ts"
import type { Leg, PostingRequest } from "../src/Model.ts"
import {
  account,
  assertLedgerHealthy,
  LedgerTestLayer,
  layerOptions,
  negativeNoNegativeAccounts,
  transfer,
  trialBalance
} from "./support.ts"

// Many fibers on many real connections (the test pool has 16), posting at once. What must hold:
// no deadlock (the service counts every deadlock it retries, so its retry never hid one), no error other than the expected business refusals, every
// currency's balances sum to zero, stored equals derived, no no-negative account below zero.

const FIBERS = 16

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed. */
const random = (seed: number) => {
  let state = seed >>> 0
  return (below: number) => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * below)
  }
}

/** Deadlocks the service met and retried, counted by the service itself (`ledgerDeadlockRetries`). */
const deadlockCount = Effect.map(Metric.value(ledgerDeadlockRetries), (counter) => counter.count)

/**
 * Samples, while `work` runs, how many of our connections are executing a posting at once: the
 * proof that the postings really ran in parallel on separate connections.
 */
const withParallelismProbe = <A, E, R>(work: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const maxActive = yield* Ref.make(0)
    const probe = yield* Effect.forkChild(Effect.forever(Effect.gen(function* () {
      const rows = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`
        SELECT count(*) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND state = 'active' AND query LIKE '%ledger_post(%'
          AND pid <> pg_backend_pid()`)
      const n = Number(rows[0]?.n ?? 0n)
      yield* Ref.update(maxActive, (m) => Math.max(m, n))
      yield* Effect.sleep("2 millis")
    })))
    const result = yield* work
    yield* Fiber.interrupt(probe)
    return { result, maxActive: yield* Ref.get(maxActive) }
  })

/** Runs postings on FIBERS fibers; business refusals are counted, anything else fails the test. */
type Work = { readonly single: PostingRequest } | { readonly batch: ReadonlyArray<PostingRequest> }

const postAll = (requests: ReadonlyArray<Work>) =>
  Effect.gen(function* () {
    const ledger = yield* Ledger
    const outcomes = yield* Effect.forEach(requests, (work) => {
      const post: Effect.Effect<unknown, PostingError> = "batch" in work
        ? ledger.postTransactions(work.batch)
        : ledger.postTransaction(work.single)
      return post.pipe(
        Effect.as("posted" as const),
        Effect.catchTag("InsufficientFunds", () => Effect.succeed("insufficient" as const))
      )
    }, { concurrency: FIBERS })
    return {
      outcomes,
      posted: outcomes.filter((o) => o === "posted").length,
      insufficient: outcomes.filter((o) => o === "insufficient").length
    }
  })

const assertInvariants = Effect.gen(function* () {
  assert.isTrue((yield* trialBalance).every(([, total]) => total === "0"), "every currency sums to zero")
  assert.deepStrictEqual(yield* negativeNoNegativeAccounts, [])
  yield* assertLedgerHealthy
})

layer(LedgerTestLayer, layerOptions)("Ledger under concurrency", (it) => {
  it.effect("16 fibers among 4 hot accounts, three rounds: no deadlock, sums zero, no-negative holds", () =>
    Effect.gen(function* () {
      const ledger = yield* Ledger
      const hot = ["hot:cash:USD", "hot:bank:USD", "hot:merchant-a:USD", "hot:merchant-b:USD"]
      yield* ledger.ensureAccount(account(hot[0] ?? "", "asset", "USD", true))
      yield* ledger.ensureAccount(account(hot[1] ?? "", "asset", "USD", true))
      yield* ledger.ensureAccount(account(hot[2] ?? "", "liability", "USD", false))
      yield* ledger.ensureAccount(account(hot[3] ?? "", "liability", "USD", false))
      const deadlocksBefore = yield* deadlockCount
      let maxActive = 0
      let insufficient = 0
      // The model: each account's balance from the transfers that the ledger said it posted,
      // signed in the account's normal direction (cash and bank are debit-normal assets, the
      // merchants credit-normal liabilities). A ledger that refused everything, or posted what it
      // refused, ends with other balances.
      const debitNormal = new Set([hot[0], hot[1]])
      const expected = new Map(hot.map((code) => [code, 0n]))
      const move = (code: string, side: "debit" | "credit", amount_minor: bigint) =>
        expected.set(code, (expected.get(code) ?? 0n) + ((side === "debit") === debitNormal.has(code) ? amount_minor : -amount_minor))
      let posted = 0
      for (const round of [1, 2, 3]) {
        const next = random(round)
        const requests = Array.from({ length: 200 }, (_, i) => {
          const from = hot[next(4)] ?? ""
          const to = hot[(hot.indexOf(from) + 1 + next(3)) % 4] ?? ""
          return transfer(`hot-${round}-${i}`, to, from, BigInt(1 + next(100)))
        })
        const { result, maxActive: active } = yield* withParallelismProbe(postAll(requests.map((single) => ({ single }))))
        maxActive = Math.max(maxActive, active)
        insufficient += result.insufficient
        posted += result.posted
        assert.strictEqual(result.posted + result.insufficient, requests.length)
        requests.forEach((request, index) => {
          if (result.outcomes[index] !== "posted") return
          for (const leg of request.debits) move(leg.account, "debit", leg.amount_minor)
          for (const leg of request.credits) move(leg.account, "credit", leg.amount_minor)
        })
        yield* assertInvariants
      }
      const balances = yield* Effect.forEach(hot, (code) => Effect.map(ledger.balance(code), (b) => [code, b.balance_minor] as const))
      assert.deepStrictEqual(new Map(balances), expected, "final balances = the sum of the transfers the ledger reported as posted")
      assert.isAbove(posted, 0, "the ledger posted transfers, not only refused them")
      assert.strictEqual(yield* deadlockCount, deadlocksBefore, "the service met no deadlock (rows locked in account-id order)")
      assert.isAtLeast(maxActive, 4, "postings ran on parallel connections")
      // The no-negative accounts were really pressed against zero.
      assert.isAbove(insufficient, 0)
    }))

  it.effect("16 fibers among 200 accounts with 2 to 6 legs in random order: no deadlock, sums zero", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO accounts (code, type, currency, allow_negative)
                 SELECT 'many:' || g || ':' || c, CASE WHEN g % 2 = 0 THEN 'asset' ELSE 'liability' END::ledger_account_type,
                        c, g % 3 <> 0
                 FROM generate_series(1, 100) AS g, (VALUES ('USD'), ('EUR')) AS currencies(c)`
      const deadlocksBefore = yield* deadlockCount
      const next = random(42)
      const leg = (currency: string, amount_minor: bigint): Leg => ({
        account: `many:${1 + next(100)}:${currency}`,
        amount_minor,
        currency
      })
      const requests = Array.from({ length: 400 }, (_, i): PostingRequest => {
        const currency = next(2) === 0 ? "USD" : "EUR"
        const debitAmounts = Array.from({ length: 1 + next(3) }, () => BigInt(1 + next(50)))
        const total = debitAmounts.reduce((a, b) => a + b, 0n)
        const split = BigInt(next(Number(total)))
        const creditAmounts = split > 0n ? [split, total - split] : [total]
        return {
          reference: `many-${i}`,
          description: "multi-leg",
          debits: debitAmounts.map((amount) => leg(currency, amount)),
          credits: creditAmounts.map((amount) => leg(currency, amount))
        }
      })
      // Batches too: several postings, many accounts, one database transaction each.
      const batches = Array.from({ length: 20 }, (_, b) => ({
        batch: requests.slice(b * 5, b * 5 + 5).map((r) => ({ ...r, reference: `batch-${r.reference}` }))
      }))
      const { result } = yield* withParallelismProbe(postAll([...requests.map((single) => ({ single })), ...batches]))
      assert.isAbove(result.posted, 0)
      assert.strictEqual(yield* deadlockCount, deadlocksBefore, "the service met no deadlock (rows locked in account-id order)")
      yield* assertInvariants
    }))

  it.effect("connections killed mid-posting: each posting is retried and recorded exactly once", () =>
    Effect.gen(function* () {
      const ledger = yield* Ledger
      const sql = yield* SqlClient.SqlClient
      yield* ledger.ensureAccount(account("kill:cash:USD", "asset", "USD", true))
      yield* ledger.ensureAccount(account("kill:merchant:USD", "liability", "USD", false))
      const requests = Array.from({ length: 400 }, (_, i) => transfer(`kill-${i}`, "kill:cash:USD", "kill:merchant:USD", 1n))
      const done = yield* Ref.make(false)
      // Terminates (pg_terminate_backend) every connection that is running a posting, twice, while
      // the postings run; bounded to 200 looks, 5 ms apart.
      const killer = Effect.gen(function* () {
        let killed = 0
        let rounds = 0
        for (let look = 0; look < 200 && rounds < 2 && !(yield* Ref.get(done)); look++) {
          const rows = yield* decodeRows(Schema.Struct({ killed: Schema.Boolean }))(sql`
            SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'
              AND query LIKE '%FROM ledger_post(%'`)
          const now = rows.filter((row) => row.killed).length
          if (now > 0) rounds += 1
          killed += now
          yield* Effect.sleep(now > 0 ? "30 millis" : "5 millis")
        }
        return killed
      })
      const [results, killed] = yield* Effect.all([
        Effect.forEach(requests, (request) => ledger.postTransaction(request), { concurrency: 8 }).pipe(
          Effect.ensuring(Ref.set(done, true))
        ),
        killer
      ], { concurrency: 2 })
      assert.isAbove(killed, 0, "some postings were in flight when their connection was killed")
      assert.strictEqual(results.length, requests.length)
      const recorded = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`SELECT count(*) AS n FROM transactions WHERE reference LIKE 'kill-%'`)
      assert.strictEqual(recorded[0]?.n, BigInt(requests.length))
      assert.strictEqual((yield* ledger.balance("kill:merchant:USD")).balance_minor, BigInt(requests.length))
      yield* assertInvariants
    }))

  it.effect("caller transactions posting in opposite orders: the deadlock reaches one caller as LedgerUnavailable", () =>
    Effect.gen(function* () {
      const ledger = yield* Ledger
      const sql = yield* SqlClient.SqlClient
      for (const name of ["a", "b", "c", "d"]) yield* ledger.ensureAccount(account(`dl:${name}:USD`, "asset", "USD", true))
      // Each caller holds the locks of its first posting until it commits, then wants the other's.
      // A barrier, not a pause: neither takes its second posting before both hold their first
      // (with a sleep, a loaded machine could run one caller to its commit before the other began).
      const holding = { x: yield* Deferred.make<void>(), y: yield* Deferred.make<void>() }
      const caller = (first: readonly [string, string], second: readonly [string, string], reference: "x" | "y") =>
        sql.withTransaction(Effect.gen(function* () {
          yield* ledger.postTransaction(transfer(`dl-${reference}-1`, first[0], first[1], 1n))
          yield* Deferred.succeed(holding[reference], undefined)
          yield* Deferred.await(holding[reference === "x" ? "y" : "x"])
          yield* ledger.postTransaction(transfer(`dl-${reference}-2`, second[0], second[1], 1n))
        }))
      const ab = ["dl:a:USD", "dl:b:USD"] as const
      const cd = ["dl:c:USD", "dl:d:USD"] as const
      const [x, y] = yield* Effect.all([Effect.exit(caller(ab, cd, "x")), Effect.exit(caller(cd, ab, "y"))], {
        concurrency: 2
      })
      const failures = [x, y].filter(Exit.isFailure)
      assert.strictEqual(failures.length, 1, "one caller committed, the other was refused")
      const failure = failures[0] === undefined ? undefined : Exit.findErrorOption(failures[0])
      assert.isTrue(failure?._tag === "Some", `a typed failure, not a defect: ${String(failures[0]?.cause)}`)
      if (failure?._tag === "Some") {
        assert.strictEqual(failure.value._tag, "LedgerUnavailable")
        if (failure.value._tag === "LedgerUnavailable") assert.isTrue(failure.value.retryable)
      }
      yield* assertInvariants
    }))

  it.effect("the same reference posted by 8 fibers at once: one posting, seven replays", () =>
    Effect.gen(function* () {
      const ledger = yield* Ledger
      yield* ledger.ensureAccount(account("dup:cash:USD", "asset", "USD", true))
      yield* ledger.ensureAccount(account("dup:merchant:USD", "liability", "USD", false))
      for (const round of [1, 2, 3]) {
        const results = yield* Effect.forEach(
          Array.from({ length: 8 }),
          () => ledger.postTransaction(transfer(`dup-${round}`, "dup:cash:USD", "dup:merchant:USD", 10n)),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(results.filter((r) => !r.replayed).length, 1)
        assert.strictEqual(new Set(results.map((r) => r.transaction.id)).size, 1)
      }
      assert.strictEqual((yield* ledger.balance("dup:merchant:USD")).balance_minor, 30n)
      yield* assertInvariants
    }))
})
