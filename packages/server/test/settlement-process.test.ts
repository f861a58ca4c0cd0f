// Settlement against the real server process, started the way scripts/run.sh starts it
// (`node packages/server/src/main.ts`), on a fresh database, the run's Redis and Kafka: bursts of
// concurrent settles with different keys, and `kill -9` between the acquirer's capture and our
// commit, finished by the client's retry and by the completer. Everything asserted is read back
// from PostgreSQL, the acquirer simulator's own table, and the API.
import { decodeRows } from "@pay/infra"
import { assert, layer } from "@effect/vitest"
import type { MerchantId } from "@pay/domain"
import { Effect, Fiber, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { FeeSchedules, merchantPayable } from "@pay/settlement"
import { createMerchant, TestServer, testServerLayer } from "./support/TestServer.ts"
import {
  Api,
  authorizedPayment,
  codeOf,
  describeAnswer,
  get,
  jsonOf,
  newKey,
  payableBalance,
  paymentStatus,
  replayed,
  settle,
  settleUntilDecided,
  type TestMerchant
} from "./support/Api.ts"
import {
  acquirerCaptures,
  acquirerOperation,
  assertBooksConsistent,
  assertSettledOnce,
  type ExpectedSettlement,
  expectedPayable,
  type FeeTerms
} from "@pay/settlement/test-support"
import { runCli } from "./support/Cli.ts"

const layerOptions = { excludeTestServices: true, timeout: "90 seconds" } as const

const processLayer = (env: Readonly<Record<string, string>>) =>
  Layer.mergeAll(Api.fromTestServer, FeeSchedules.layer).pipe(Layer.provideMerge(testServerLayer({ env })))

const setFees = (merchantId: MerchantId, currency: string, terms: FeeTerms) =>
  Effect.gen(function* () {
    const fees = yield* FeeSchedules
    yield* fees.set(merchantId, currency, terms)
  })

const assertBooks = (merchant: TestMerchant, settled: ReadonlyArray<ExpectedSettlement>) =>
  Effect.gen(function* () {
    for (const expected of settled) yield* assertSettledOnce(expected)
    yield* assertBooksConsistent
    assert.deepStrictEqual(yield* payableBalance(merchant), expectedPayable(settled), "GET /v1/balance")
  })

/** Polls `check` until it returns true; fails after `timeout_ms`. */
const eventually = <E, R>(label: string, check: Effect.Effect<boolean, E, R>, timeout_ms: number, interval_ms = 50) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout_ms
    while (Date.now() < deadline) {
      if (yield* check) return
      yield* Effect.sleep(interval_ms)
    }
    return assert.fail(`${label}: not within ${timeout_ms} ms`)
  })

/** Retries a settle whose outcome was unknown (503) or in progress (409 in use) until it is decided; bounded. */
const settleUntilDecidedAfterUnknown = (m: TestMerchant, paymentId: string, key: string) =>
  Effect.gen(function* () {
    for (let attempt = 1; attempt <= 50; attempt++) {
      const answer = yield* settle(m, paymentId, key)
      const undecided = answer.status === 503 || (answer.status === 409 && codeOf(answer) === "idempotency_key_in_use")
      if (!undecided) return answer
      yield* Effect.sleep(100)
    }
    return assert.fail(`settle ${paymentId} (key ${key}) still undecided after 50 attempts`)
  })

// The server's default fee is configured here (3.10 % + 0.20), not left to the code's default.
const serverDefault: FeeTerms = { fee_bps: 310, fee_fixed_minor: 20n }

layer(
  processLayer({ ACQUIRER_LATENCY_MS: "50", SETTLEMENT_FEE_BPS: "310", SETTLEMENT_FEE_FIXED_MINOR: "20" }),
  layerOptions
)("settlement against the real server process: repeats and bursts", (it) => {
  it.effect("settle twice in a row: the same key replays the exact bytes, a new key is 409 invalid_transition; one posting, the balance moved once", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Twice (process)")
      const id = yield* authorizedPayment(m, 1_050n, "USD")
      const key = newKey("settle")
      const first = yield* settle(m, id, key)
      assert.strictEqual(first.status, 200, describeAnswer(first))
      const again = yield* settle(m, id, key)
      assert.isTrue(replayed(again))
      assert.strictEqual(again.text, first.text)
      const other = yield* settle(m, id, newKey("settle"))
      assert.strictEqual(other.status, 409, describeAnswer(other))
      assert.strictEqual(codeOf(other), "invalid_transition")
      // 10.50 at 3.10 % + 0.20: 32.55 → 33 + 20 = 0.53, net 9.97
      yield* assertBooks(m, [{ paymentId: id, gross_minor: 1_050n, currency: "USD", terms: serverDefault }])
      assert.deepStrictEqual(yield* payableBalance(m), [{ currency: "USD", amount: 997 }])
    }))

  it.effect("a balance past 2^53 minor units is answered exactly, digit for digit (a 200, not a 500), beside the merchant's other currencies", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Past 2^53")
      const usd = yield* authorizedPayment(m, 1_050n, "USD")
      const vnd = yield* authorizedPayment(m, 99_999_999_999n, "VND")
      for (const id of [usd, vnd]) {
        const settled = yield* settle(m, id, newKey("settle"))
        assert.strictEqual(settled.status, 200, describeAnswer(settled))
      }
      // No API path gets a payable this far in a test (9·10^4 settles of the largest amount): as
      // the owner, the ledger's guards off for this one transaction, the stored balance is set.
      const past_2_53_minor = 2n ** 53n + 12_345n
      const sql = yield* SqlClient.SqlClient
      const payable = sql`(SELECT id FROM accounts WHERE code = ${merchantPayable(m.merchantId, "VND").code})`
      const [stored] = yield* decodeRows(Schema.Struct({ balance_minor: Schema.BigInt }))(sql`SELECT balance_minor FROM account_balances WHERE account_id = ${payable}`)
      const setPayable = (balance_minor: bigint) => sql.withTransaction(Effect.gen(function* () {
        yield* sql`SET LOCAL session_replication_role = replica`
        yield* sql`UPDATE account_balances SET balance_minor = ${balance_minor} WHERE account_id = ${payable}`
      }))
      yield* setPayable(past_2_53_minor)
      // Put back however the read ends: the other tests of this database check the books.
      const answer = yield* get(m, "/v1/balance").pipe(Effect.ensuring(Effect.orDie(setPayable(stored?.balance_minor ?? 0n))))
      assert.strictEqual(answer.status, 200, describeAnswer(answer))
      // The bytes, not JSON.parse (which would round): the exact integer, and USD beside it.
      assert.strictEqual(answer.text, `{"object":"balance","available":[{"currency":"USD","amount":997},{"currency":"VND","amount":${past_2_53_minor}}]}`)
      yield* assertBooksConsistent
    }))

  it.effect("50 concurrent settles with 50 different keys, on 3 payments at once (USD, JPY, KWD): one 200 SETTLED each, the rest 409; one posting each, captured once, every key replays its answer", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Burst")
      const jpy: FeeTerms = { fee_bps: 360, fee_fixed_minor: 0n }
      const kwd: FeeTerms = { fee_bps: 250, fee_fixed_minor: 100n }
      yield* setFees(m.merchantId, "JPY", jpy)
      yield* setFees(m.merchantId, "KWD", kwd)
      const cases = [
        { gross_minor: 1_050n, currency: "USD", terms: serverDefault },
        { gross_minor: 1_234n, currency: "JPY", terms: jpy },
        { gross_minor: 12_345n, currency: "KWD", terms: kwd }
      ]
      const payments = yield* Effect.forEach(cases, (c) => Effect.map(authorizedPayment(m, c.gross_minor, c.currency), (id) => ({ id, ...c })))
      const attempts = payments.flatMap((p) => Array.from({ length: 50 }, () => ({ paymentId: p.id, key: newKey("burst") })))
      const started = performance.now()
      const firstAnswers = yield* Effect.forEach(attempts, (a) => Effect.map(settle(m, a.paymentId, a.key), (answer) => ({ ...a, answer })), {
        concurrency: "unbounded"
      })
      const burst_ms = Math.round(performance.now() - started)
      // A 503 is "outcome unknown, nothing stored": what a client does is retry with the same key
      // (on 2 cores, 150 requests can keep the acquirer simulator — which shares the server's
      // connection pool — past its 2 s timeout). Only decided answers are judged below. No fault is
      // injected here: the database and the settlement posting have no reason to fail, so their
      // 503s (database_unavailable, settlement_unavailable) are failures of this test.
      const unknown = firstAnswers.filter((a) => a.answer.status === 503)
      for (const a of unknown) assert.include(["acquirer_timeout", "acquirer_unavailable", "payment_locked"], codeOf(a.answer), describeAnswer(a.answer))
      const answers = yield* Effect.forEach(firstAnswers, (a) =>
        a.answer.status !== 503 ? Effect.succeed(a) : Effect.map(settleUntilDecidedAfterUnknown(m, a.paymentId, a.key), (answer) => ({ ...a, answer })))

      for (const p of payments) {
        const mine = answers.filter((a) => a.paymentId === p.id)
        const won = mine.filter((a) => a.answer.status === 200)
        assert.strictEqual(won.length, 1, `exactly one 200 for ${p.id}: ${mine.map((a) => a.answer.status).join(",")}`)
        assert.strictEqual(jsonOf(won[0]?.answer ?? assert.fail("no winner"))["status"], "SETTLED")
        const refused = mine.filter((a) => a.answer.status !== 200)
        for (const r of refused) {
          assert.strictEqual(r.answer.status, 409, describeAnswer(r.answer))
          assert.include(["invalid_transition", "concurrent_modification"], codeOf(r.answer))
        }
        // The acquirer was asked by every run that got past the status check, and captured once.
        const [capture] = yield* acquirerOperation(`payment:${p.id}:capture`)
        assert.strictEqual(capture?.performed_count, 1)
        assert.deepStrictEqual(yield* acquirerCaptures(p.id), { operations: 1, performed: 1 })
      }
      // Every key's answer is stored: asked again, each replays its own bytes.
      const replays = yield* Effect.forEach(answers, (a) => Effect.map(settle(m, a.paymentId, a.key), (again) => ({ a, again })), {
        concurrency: 25
      })
      for (const { a, again } of replays) {
        assert.isTrue(replayed(again), describeAnswer(again))
        assert.strictEqual(again.status, a.answer.status)
        assert.strictEqual(again.text, a.answer.text)
      }
      yield* assertBooks(m, payments.map((p) => ({ paymentId: p.id, gross_minor: p.gross_minor, currency: p.currency, terms: p.terms })))
      yield* Effect.logInfo(`burst of ${attempts.length} settles answered in ${burst_ms} ms; ${unknown.length} answered 503 first and were retried`)
    }))
})

// The acquirer performs every capture but loses the first answer, and our side would wait a
// minute for it: the window between the capture and our commit stays open until we kill -9.
// The completer is off (a key counts as abandoned only after 10 minutes) until the test turns it
// on at a restart, so that who finishes which payment is decided by the test, not by timing.
layer(
  processLayer({
    ACQUIRER_FAULTS: "capture_answer_lost_first_call",
    ACQUIRER_TIMEOUT_MS: "60000",
    IDEMPOTENCY_LOCK_TIMEOUT_MS: "1500",
    COMPLETER_INTERVAL_MS: "200",
    COMPLETER_ABANDONED_AFTER_MS: "600000"
  }),
  layerOptions
)("settlement against the real server process: kill -9 between capture and commit", (it) => {
  it.effect("killed with two captures performed and unanswered: after restart the client's retry settles one, the completer the other; each SETTLED with one posting, captured once", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const sql = yield* SqlClient.SqlClient
      const m = yield* createMerchant("Killed")
      // The operator's way to set a merchant's fee: the CLI, on the server's database.
      const cliOutput = yield* runCli(server.database.url, ["fees", "set", m.merchantId, "USD", "150", "25"])
      assert.include(cliOutput, `"fee_bps":150`)
      const terms: FeeTerms = { fee_bps: 150, fee_fixed_minor: 25n }

      const retried = { id: yield* authorizedPayment(m, 20_000n, "USD"), key: newKey("settle-retried") }
      const completed = { id: yield* authorizedPayment(m, 7_777n, "USD"), key: newKey("settle-completed") }
      const inFlight = yield* Effect.forEach([retried, completed], (p) => Effect.forkChild(Effect.result(settle(m, p.id, p.key))))

      // The acquirer has performed both captures and lost both answers: the server says so (a
      // barrier on its log line, not a guess at timing), and the acquirer's table agrees.
      for (const p of [retried, completed]) {
        yield* server.process.awaitOutput(["acquirer simulator: answer lost", `"reference":"payment:${p.id}:capture"`], 20_000)
      }
      const captures = yield* decodeRows(Schema.Struct({ n: Schema.BigInt }))(sql`
        SELECT count(*) AS n FROM acquirer_sim.operations
        WHERE operation = 'capture' AND payment_id IN (${retried.id}, ${completed.id})`)
      assert.deepStrictEqual(captures, [{ n: 2n }], "both captures performed at the acquirer")
      const openWindow = (paymentId: string) =>
        Effect.gen(function* () {
          const [row] = yield* decodeRows(Schema.Struct({ status: Schema.String, recovery_point: Schema.NullOr(Schema.String), finished: Schema.NullOr(Schema.Boolean), postings: Schema.BigInt }))(sql`
            SELECT p.status, k.recovery_point, k.finished_at IS NOT NULL AS finished,
                   (SELECT count(*) FROM transactions t WHERE t.reference = 'payment:' || p.id || ':settlement') AS postings
            FROM payments p
            LEFT JOIN idempotency_keys k ON k.merchant_id = p.merchant_id AND k.request_path = '/v1/payments/' || p.id || '/settle'
            WHERE p.id = ${paymentId}`)
          assert.deepStrictEqual(row, { status: "AUTHORIZED", recovery_point: "capture_requested", finished: false, postings: 0n }, "between capture and commit")
        })
      yield* openWindow(retried.id)
      yield* openWindow(completed.id)

      yield* server.process.kill9
      for (const fiber of inFlight) {
        const seen = yield* Fiber.join(fiber)
        assert.strictEqual(seen._tag, "Failure", "the client got no answer from the killed server")
      }
      let restartStarted = performance.now()
      yield* server.process.restart()
      const restart_ms = [Math.round(performance.now() - restartStarted)]

      // The client retries with the same key (409 while the dead run's lease lasts).
      const retry = yield* settleUntilDecided(m, retried.id, retried.key, { attempts: 100, interval_ms: 100 })
      assert.strictEqual(retry.answer.status, 200, describeAnswer(retry.answer))
      assert.strictEqual(jsonOf(retry.answer)["status"], "SETTLED")
      assert.isFalse(replayed(retry.answer), `the retry resumed the work itself; in-use answers ${retry.inUseAnswers}\n${server.process.output().slice(-8000)}`)
      // Nobody has touched the other one: still exactly where the kill left it.
      yield* openWindow(completed.id)

      // Killed again (idle), and started with the completer on: it finishes the abandoned key.
      yield* server.process.kill9
      restartStarted = performance.now()
      yield* server.process.restart({ COMPLETER_ABANDONED_AFTER_MS: "1000" })
      restart_ms.push(Math.round(performance.now() - restartStarted))
      yield* eventually("the completer settles the abandoned payment", Effect.map(paymentStatus(m, completed.id), (s) => s === "SETTLED"), 20_000, 200)
      const late = yield* settle(m, completed.id, completed.key)
      assert.strictEqual(late.status, 200, describeAnswer(late))
      assert.isTrue(replayed(late), "the completer stored the response for the client's eventual retry")
      assert.strictEqual(jsonOf(late)["status"], "SETTLED")
      // With the ids an operator searches by (outside operator drill: it had none of them).
      const finishedLine = server.process.output().split("\n").find((line) => line.includes("completer finished an abandoned key")) ?? ""
      assert.include(finishedLine, `"payment_id":"${completed.id}"`, finishedLine)
      assert.include(finishedLine, `"merchant_id":"${m.merchantId}"`, finishedLine)
      assert.match(finishedLine, /"correlation_id":"[0-9a-f-]{36}"/u, finishedLine)

      for (const p of [retried, completed]) {
        assert.deepStrictEqual(yield* acquirerOperation(`payment:${p.id}:capture`), [{ performed_count: 1, request_count: 2 }])
        assert.deepStrictEqual(yield* acquirerCaptures(p.id), { operations: 1, performed: 1 })
      }
      yield* assertBooks(m, [
        { paymentId: retried.id, gross_minor: 20_000n, currency: "USD", terms },
        { paymentId: completed.id, gross_minor: 7_777n, currency: "USD", terms }
      ])
      yield* Effect.logInfo(`restarts took ${restart_ms.join(" and ")} ms; the retry met ${retry.inUseAnswers} 409 idempotency_key_in_use`)
    }))
})
