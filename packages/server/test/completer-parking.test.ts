// Issue 11: with the acquirer down, the completer called it every 5 s forever for every abandoned
// key, logging ERROR each time. Now: a bounded number of attempts per key with growing, jittered
// waits, then the key is PARKED (a state operators see: columns, gauge, the CLI's list), and an
// operator's retry (the same service the CLI calls) lets the completer finish it, exactly once.
// The app runs in-process with a fast completer and an acquirer whose captures fail on demand.
import { assert, layer } from "@effect/vitest"
import { Acquirer, AcquirerSimulator, AcquirerUnavailable } from "@pay/acquirer"
import { idempotencyParkedKeys, ParkedKeys } from "@pay/idempotency"
import { decodeRows } from "@pay/infra"
import {
  acquirerOperation,
  assertBooksConsistent,
  assertNotSettled,
  assertSettledOnce,
  defaultTerms
} from "@pay/settlement/test-support"
import { Effect, Layer, Metric, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { authorizedPayment, codeOf, describeAnswer, newKey, settle, type TestMerchant } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const attemptsMax = 3
const backoffBase_ms = 200

/** Captures fail (before reaching the simulator) while `down`; every capture call is timed. */
const acquirerState = { down: false, captureCalls: [] as Array<number> }

const switchableAcquirer = Layer.effect(
  Acquirer,
  Effect.gen(function* () {
    const real = yield* Acquirer
    return Acquirer.of({
      authorize: real.authorize,
      void: real.void,
      refund: real.refund,
      capture: (request) =>
        Effect.suspend(() => {
          acquirerState.captureCalls.push(performance.now())
          return acquirerState.down
            ? Effect.fail(new AcquirerUnavailable({ operation: "capture", reference: request.reference, detail: "test: the acquirer is down" }))
            : real.capture(request)
        })
    })
  })
).pipe(Layer.provide(AcquirerSimulator.layer))

const inProcessApp = inProcessAppLayer({
  acquirer: switchableAcquirer,
  env: {
    COMPLETER_INTERVAL_MS: "100",
    COMPLETER_ABANDONED_AFTER_MS: "100",
    COMPLETER_ATTEMPTS_MAX: String(attemptsMax),
    COMPLETER_BACKOFF_BASE_MS: String(backoffBase_ms),
    COMPLETER_BACKOFF_MAX_MS: "1000"
  }
})

/** The app, plus the operators' service on its database (what `pnpm cli idempotency …` calls). */
const app = ParkedKeys.layer.pipe(Layer.provideMerge(inProcessApp))

const KeyRow = Schema.Struct({
  id: Schema.String,
  completer_attempts: Schema.Number,
  parked: Schema.Boolean,
  finished: Schema.Boolean,
  completer_last_error: Schema.NullOr(Schema.String)
})

const keyRow = (m: TestMerchant, key: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(KeyRow)(sql`
      SELECT id, completer_attempts, parked_at IS NOT NULL AS parked, finished_at IS NOT NULL AS finished, completer_last_error
      FROM idempotency_keys WHERE merchant_id = ${m.merchantId} AND idempotency_key = ${key}`)
    return row ?? assert.fail(`no key ${key}`)
  })

/** The constraint PostgreSQL named in its refusal (the driver keeps it on the reason's cause). */
const constraintOf = (error: SqlError): string => {
  const cause: unknown = error.reason.cause
  return typeof cause === "object" && cause !== null && "constraint" in cause && typeof cause.constraint === "string" ? cause.constraint : ""
}

/** Polls `check` every 100 ms until it holds, at most `attempts` times (generous: a loaded machine). */
const eventually = <A>(label: string, read: Effect.Effect<A, unknown, SqlClient.SqlClient>, check: (a: A) => boolean, attempts = 300) =>
  Effect.gen(function* () {
    let last: A | undefined
    for (let i = 0; i < attempts; i++) {
      last = yield* read
      if (check(last)) return last
      yield* Effect.sleep(100)
    }
    return assert.fail(`${label}: not reached after ${attempts} polls; last ${JSON.stringify(last)}`)
  })

layer(app, { excludeTestServices: true, timeout: "120 seconds" })("the completer backs off, parks, and an operator retries (issue 11)", (it) => {
  it.effect("acquirer down: 3 attempts with growing waits, then parked (gauge, list); no more calls; retried by an operator with the acquirer back: settled once, captured once", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Completer parking")
      const id = yield* authorizedPayment(m, 5_000n, "USD")
      const key = newKey("settle")
      acquirerState.down = true
      acquirerState.captureCalls.length = 0

      const failed = yield* settle(m, id, key)
      assert.strictEqual(failed.status, 503, describeAnswer(failed))
      assert.strictEqual(codeOf(failed), "acquirer_unavailable")

      const parkedRow = yield* eventually("the key is parked", keyRow(m, key), (row) => row.parked)
      assert.strictEqual(parkedRow.completer_attempts, attemptsMax)
      assert.isFalse(parkedRow.finished)
      assert.include(parkedRow.completer_last_error ?? "", "acquirer is unavailable")
      // An expected failure is one line, no stack trace: the runbook reads a stack as a defect to escalate.
      assert.match(parkedRow.completer_last_error ?? "", /^AcquirerUnavailable: /u)
      assert.notInclude(parkedRow.completer_last_error ?? "", "\n    at ")
      // The client's call, then exactly `attemptsMax` completer attempts.
      assert.strictEqual(acquirerState.captureCalls.length, 1 + attemptsMax, `capture calls: ${acquirerState.captureCalls.length}`)
      // Backoff: after the k-th failure the next attempt waits at least half of base · 2^(k-1)
      // (equal jitter); a loaded machine only makes the gaps longer.
      const [, first = 0, second = 0, third = 0] = acquirerState.captureCalls
      assert.isAtLeast(second - first, backoffBase_ms / 2 - 5, "wait after attempt 1")
      assert.isAtLeast(third - second, backoffBase_ms - 5, "wait after attempt 2")

      // Parked means left alone: a dozen more completer rounds call nobody.
      yield* Effect.sleep(1_500)
      assert.strictEqual(acquirerState.captureCalls.length, 1 + attemptsMax, "no call after parking")
      yield* assertNotSettled(id)

      // What an operator sees: the list (CLI `idempotency parked`) and the gauge.
      const parked = yield* ParkedKeys
      const listed = yield* parked.list(100)
      const mine = listed.find((k) => k.id === parkedRow.id)
      assert.isDefined(mine)
      assert.deepStrictEqual([mine?.recovery_point, mine?.recovery_data["payment_id"], mine?.completer_attempts], ["capture_requested", id, attemptsMax])
      const gauge = yield* eventually("the gauge counts it", Metric.value(idempotencyParkedKeys), (state) => state.value >= 1)
      assert.isAtLeast(gauge.value, 1)

      // The acquirer is back; the operator retries the key; the completer finishes it once.
      acquirerState.down = false
      yield* parked.retry(parkedRow.id)
      const finished = yield* eventually("the completer finished the key", keyRow(m, key), (row) => row.finished)
      assert.isFalse(finished.parked)
      yield* assertSettledOnce({ paymentId: id, gross_minor: 5_000n, currency: "USD", terms: defaultTerms })
      yield* assertBooksConsistent
      assert.deepStrictEqual(yield* acquirerOperation(`payment:${id}:capture`), [{ performed_count: 1, request_count: 1 }])
      // The client's retry now replays the completer's stored answer.
      const replay = yield* settle(m, id, key)
      assert.strictEqual(replay.status, 200, describeAnswer(replay))
      assert.strictEqual(replay.headers.get("idempotent-replayed"), "true")
      // Retrying a key that is not parked (any more) is refused.
      const refused = yield* Effect.flip(parked.retry(parkedRow.id))
      assert.strictEqual(refused._tag, "ParkedKeyNotFound")
    }))

  it.effect("a key whose stored operation does not decode is parked at once (one failed attempt), not logged at ERROR every round", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const m = yield* createMerchant("Undecodable")
      const key = newKey("foreign")
      // What a key written by another version (or a hand-made fix) could hold: an operation this
      // server does not know, released at a recovery point past 'started', idle for a while.
      yield* sql`INSERT INTO idempotency_keys
          (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, operation,
           recovery_point, last_run_at)
        VALUES (gen_random_uuid(), ${m.merchantId}, ${key}, 'POST', '/v1/payments/pay_x/refund', ${"b".repeat(64)},
                '{"_tag": "refund", "payment_id": 1}'::jsonb, 'refund_requested', now() - interval '1 minute')`
      const parkedRow = yield* eventually("parked at once", keyRow(m, key), (row) => row.parked)
      assert.strictEqual(parkedRow.completer_attempts, 1)
      assert.include(parkedRow.completer_last_error ?? "", "is not one")
    }))

  it.effect("the database refuses a parked finished key and a parked key with no attempt (raw SQL)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const m = yield* createMerchant("Raw parking")
      const id = yield* authorizedPayment(m, 800n, "USD")
      const key = newKey("settle")
      const settled = yield* settle(m, id, key)
      assert.strictEqual(settled.status, 200, describeAnswer(settled))
      const finishedParked = yield* Effect.flip(sql`UPDATE idempotency_keys SET parked_at = now(), completer_attempts = 1
        WHERE merchant_id = ${m.merchantId} AND idempotency_key = ${key}`)
      assert.strictEqual(finishedParked._tag, "SqlError")
      const unattempted = yield* Effect.flip(sql`INSERT INTO idempotency_keys
          (id, merchant_id, idempotency_key, request_method, request_path, request_fingerprint, recovery_point, parked_at)
        VALUES (gen_random_uuid(), ${m.merchantId}, ${newKey("raw")}, 'POST', '/v1/payments', ${"a".repeat(64)}, 'payment_created', now())`)
      assert.strictEqual(unattempted._tag, "SqlError")
      assert.strictEqual(constraintOf(unattempted), "idempotency_keys_parked_attempted")
    }))
})
