import { decodeRows } from "@pay/infra"
import { Deferred, Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { countOf, countUntil } from "../Evidence.ts"
import { authorizedPayment, checkBooks, checkMovedOnce, retryUntilDecided } from "../Flows.ts"
import { field } from "../Http.ts"
import { type ReadBack, scanTopic } from "../Kafka.ts"
import { newKey, paymentBody, type Scenario } from "../Scenario.ts"

/** Faults inside one request: the bank's answer lost, a row held by an operator, a crash, a rollback. */

// acquirer_sim.operations: performed_count and request_count are int4 (numbers).
const BankRow = Schema.Struct({ operation: Schema.String, outcome: Schema.String, performed_count: Schema.Number, request_count: Schema.Number })
const BankCountsRow = Schema.Struct({ operation: Schema.String, performed_count: Schema.Number, request_count: Schema.Number })
const StatusRow = Schema.Struct({ status: Schema.String })

export const acquirerTimeoutUnknownOutcome: Scenario = {
  name: "acquirer-timeout-unknown-outcome",
  summary: "the bank performs the authorization and the capture but its answers are lost (pm_card_timeout): unknown outcome, then the same key finishes once",
  fast: true,
  run: (ctx) =>
    Effect.gen(function* () {
      const api = yield* ctx.startApi("api-1", { ACQUIRER_TIMEOUT_MS: "500" })
      const m = yield* ctx.merchant("timeout merchant")
      const sql = yield* SqlClient.SqlClient
      yield* ctx.say.step("create a payment with pm_card_timeout (the simulator performs the first call per reference, then loses its answer)")
      const created = yield* ctx.post(api, m, "/v1/payments", newKey("create"), paymentBody(7_500, "USD", "pm_card_timeout"))
      const id = field(created, "id")
      for (const operation of ["authorize", "settle"] as const) {
        const key = newKey(operation)
        yield* ctx.say.step(`${operation} it: the bank does the work, we never hear back (ACQUIRER_TIMEOUT_MS=500)`)
        const first = yield* ctx.post(api, m, `/v1/payments/${id}/${operation}`, key)
        yield* ctx.say.evidence(`POST /${operation}`, `${first.status} ${field(first, "code")}`)
        yield* ctx.say.expect(first.status === 503 && field(first, "code") === "acquirer_timeout", "503 acquirer_timeout: the outcome is unknown, nothing frozen", first.text)
        const bank = yield* decodeRows(BankRow)(sql`
          SELECT operation, outcome, performed_count, request_count FROM acquirer_sim.operations WHERE payment_id = ${id} ORDER BY performed_at`)
        const ours = yield* decodeRows(StatusRow)(sql`SELECT status FROM payments WHERE id = ${id}`)
        yield* ctx.say.evidence("the bank's books (acquirer_sim.operations)", bank)
        yield* ctx.say.evidence("our payment", ours[0]?.status)
        yield* ctx.say.step(`retry ${operation} with the SAME key`)
        const { answer, undecided } = yield* retryUntilDecided(ctx, api, m, `/v1/payments/${id}/${operation}`, key)
        yield* ctx.say.evidence("retry", `${answer.status} ${field(answer, "status")} (undecided on the way: ${undecided.length})`)
        yield* ctx.say.expect(answer.status === 200, `${operation} completed by the retry`, answer.text)
      }
      const bank = yield* decodeRows(BankCountsRow)(sql`
        SELECT operation, performed_count, request_count FROM acquirer_sim.operations WHERE payment_id = ${id} ORDER BY performed_at`)
      yield* ctx.say.evidence("the bank, at the end", bank)
      yield* ctx.say.expect(bank.length === 2 && bank.every((row) => row.performed_count === 1), "the bank performed one authorization and one capture (asked more than once, same reference)", bank)
      yield* checkMovedOnce(ctx, id)
      yield* checkBooks(ctx)
    })
}

export const lockHeldDuringSettle: Scenario = {
  name: "lock-held-during-settle",
  summary: "an operator's session holds the payment row (SELECT … FOR UPDATE) while a settle arrives: bounded wait, 503 payment_locked, then the same key settles once",
  fast: false,
  run: (ctx) =>
    Effect.gen(function* () {
      const api = yield* ctx.startApi("api-1")
      const m = yield* ctx.merchant("lock merchant")
      const sql = yield* SqlClient.SqlClient
      const id = yield* authorizedPayment(ctx, api, m, 3_300)
      yield* ctx.say.step("an operator opens a transaction and locks the payment row, then goes for coffee")
      const locked = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      yield* sql.withTransaction(Effect.gen(function* () {
        yield* sql`SELECT id FROM payments WHERE id = ${id} FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(release)
      })).pipe(Effect.forkScoped)
      yield* Deferred.await(locked)
      const key = newKey("settle")
      yield* ctx.say.step("settle the payment while the row is held")
      const blocked = yield* ctx.post(api, m, `/v1/payments/${id}/settle`, key)
      yield* ctx.say.evidence("POST /settle", `${blocked.status} ${field(blocked, "code")} after ${blocked.elapsed_ms} ms`)
      yield* ctx.say.expect(blocked.status === 503 && field(blocked, "code") === "payment_locked", "503 payment_locked after the bounded lock wait (not a hang, not a 500)", blocked.text)
      yield* checkMovedOnce(ctx, id)
      yield* ctx.say.step("the operator commits; the client retries with the same key")
      yield* Deferred.succeed(release, undefined)
      const { answer } = yield* retryUntilDecided(ctx, api, m, `/v1/payments/${id}/settle`, key)
      yield* ctx.say.evidence("retry", `${answer.status} ${field(answer, "status")}`)
      yield* ctx.say.expect(answer.status === 200 && field(answer, "status") === "SETTLED", "settled by the retry", answer.text)
      yield* checkMovedOnce(ctx, id)
      yield* checkBooks(ctx)
    })
}

export const serviceRestarts: Scenario = {
  name: "service-restarts",
  summary: "kill -9 of the API after the bank captured and before our commit, restart; clients retry with their keys: each payment settled once, captured once",
  fast: false,
  run: (ctx) =>
    Effect.gen(function* () {
      // The bank performs each first capture and its answer is lost (the simulator's fault): the
      // API waits on it (up to 10 s) with the capture done at the bank and nothing committed here.
      const env = { ACQUIRER_LATENCY_MS: "300", ACQUIRER_TIMEOUT_MS: "10000", ACQUIRER_FAULTS: "capture_answer_lost_first_call", IDEMPOTENCY_LOCK_TIMEOUT_MS: "3000" }
      const api = yield* ctx.startApi("api-1", env)
      const m = yield* ctx.merchant("restart merchant")
      const ids = yield* Effect.forEach([1, 2, 3], (i) => authorizedPayment(ctx, api, m, 1_000 * i))
      const keys = ids.map(() => newKey("settle"))
      yield* ctx.say.step("send 3 settles; once the bank has captured all three (their answers lost on the way back), kill -9 the API before it commits anything")
      const inFlight = yield* Effect.forEach(ids, (id, i) => Effect.result(ctx.post(api, m, `/v1/payments/${id}/settle`, keys[i] ?? "")), { concurrency: "unbounded" }).pipe(Effect.forkScoped)
      // A barrier, not a sleep: the bank's own records say the captures happened.
      const captured = yield* capturesAtTheBank(ids, 8_000)
      yield* ctx.say.evidence("captures performed at the bank before the kill", `${captured} of ${ids.length}`)
      yield* ctx.say.expect(captured === ids.length, "every settle reached the bank, which captured", captured)
      const pid = api.pid()
      yield* api.kill9
      yield* ctx.say.evidence("killed", `pid ${pid} with SIGKILL`)
      const lost = yield* Fiber.join(inFlight)
      yield* ctx.say.evidence("what the clients saw", lost.map((r) => (r._tag === "Success" ? `${r.success.status} ${field(r.success, "code")}` : "connection lost")))
      const db = yield* SqlClient.SqlClient
      const unsettled = yield* countOf(db`SELECT count(*) AS n FROM payments WHERE status = 'AUTHORIZED' AND id IN ${db.in(ids)}`)
      yield* ctx.say.expect(unsettled === ids.length, "nothing was committed here: the 3 payments are still AUTHORIZED, captured at the bank", unsettled)
      const held = yield* countOf(sql(`SELECT count(*) AS n FROM idempotency_keys WHERE lock_token IS NOT NULL`))
      yield* ctx.say.expect(held === ids.length, "the dead process's keys stay leased (until their lease expires: 3 s here)", held)
      yield* ctx.say.step("restart the API and retry each settle with its own key")
      yield* api.restart()
      yield* ctx.say.note(`API restarted: pid ${api.pid()}`)
      for (const [i, id] of ids.entries()) {
        const { answer, undecided } = yield* retryUntilDecided(ctx, api, m, `/v1/payments/${id}/settle`, keys[i] ?? "")
        yield* ctx.say.evidence(`settle ${id}`, `${answer.status} ${field(answer, "status")} (replayed=${answer.replayed}; on the way: ${undecided.join(", ") || "none"})`)
        yield* ctx.say.expect(answer.status === 200 && field(answer, "status") === "SETTLED", "settled", answer.text)
        const facts = yield* checkMovedOnce(ctx, id)
        yield* ctx.say.expect(facts?.capture_requests === 2 && facts.captures_performed === 1, "asked twice (the killed attempt and the retry, one reference), captured once", facts)
      }
      yield* checkBooks(ctx)
    })
}

/** Waits (bounded, 50 ms steps) until the bank recorded a capture for each payment; how many it did. */
const capturesAtTheBank = (ids: ReadonlyArray<string>, timeout_ms: number) =>
  Effect.gen(function* () {
    const db = yield* SqlClient.SqlClient
    return yield* countUntil(db`SELECT count(*) AS n FROM acquirer_sim.operations WHERE operation = 'capture' AND payment_id IN ${db.in(ids)}`,
      (captured) => captured >= ids.length, { timeout_ms, step_ms: 50 })
  })

/** A raw statement against the scenario's database (owner). */
const sql = (text: string) =>
  Effect.gen(function* () {
    const client = yield* SqlClient.SqlClient
    return yield* client.unsafe(text)
  })

export const dbRollbackAfterOutboxWrite: Scenario = {
  name: "db-rollback-after-outbox-write",
  summary: "the settle transaction fails after it wrote the posting and the outbox row: everything rolls back, no event reaches Kafka; the retry settles once",
  fast: true,
  run: (ctx) =>
    Effect.gen(function* () {
      const api = yield* ctx.startApi("api-1")
      const m = yield* ctx.merchant("rollback merchant")
      const id = yield* authorizedPayment(ctx, api, m, 6_400)
      yield* ctx.say.step("arm a fault in this scenario's database: the statement that stores the settle's response (the transaction's last write) fails")
      yield* sql(`CREATE FUNCTION scenario_fail_finish() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'scenario fault: the commit of % fails after the outbox write', NEW.request_path; END $$`)
      yield* sql(`CREATE TRIGGER scenario_fail_finish BEFORE UPDATE ON idempotency_keys FOR EACH ROW
        WHEN (NEW.response_status IS NOT NULL AND NEW.request_path LIKE '%/settle') EXECUTE FUNCTION scenario_fail_finish()`)
      const key = newKey("settle")
      const failed = yield* ctx.post(api, m, `/v1/payments/${id}/settle`, key)
      yield* ctx.say.evidence("POST /settle", `${failed.status} ${field(failed, "code")}`)
      yield* ctx.say.expect(failed.status >= 500, "the request failed (5xx): nothing was acknowledged", failed.text)
      const facts = yield* checkMovedOnce(ctx, id)
      yield* ctx.say.expect(facts?.status === "AUTHORIZED" && facts.outbox_events === "payment_created,payment_authorized", "still AUTHORIZED, no payment_settled outbox row, no posting", facts)
      yield* ctx.say.step("remove the fault, retry with the same key")
      yield* sql("DROP TRIGGER scenario_fail_finish ON idempotency_keys")
      const { answer } = yield* retryUntilDecided(ctx, api, m, `/v1/payments/${id}/settle`, key)
      yield* ctx.say.expect(answer.status === 200 && field(answer, "status") === "SETTLED", "settled by the retry", answer.text)
      yield* checkMovedOnce(ctx, id)
      yield* ctx.say.step("read the topic from offset 0 to its end: the payment's records are exactly its committed outbox rows")
      // The publisher sends the settled event shortly after the commit: wait (bounded) until every
      // committed row is marked published, then read the whole topic, not "at least 3 records".
      const db = yield* SqlClient.SqlClient
      const committed = yield* decodeRows(Schema.Struct({ id: Schema.String }))(db`SELECT id::text AS id FROM outbox_events WHERE aggregate_id = ${id} ORDER BY position`)
      yield* countUntil(db`SELECT count(*) AS n FROM outbox_events WHERE aggregate_id = ${id} AND published_at IS NULL`,
        (unpublished) => unpublished === 0, { timeout_ms: 30_000, step_ms: 100 })
      const mine: Array<ReadBack> = []
      yield* scanTopic(ctx.stack.kafkaBrokers, ctx.stack.eventsTopic, 30_000, (record) => {
        if (record.key === id) mine.push(record)
      })
      yield* ctx.say.evidence("Kafka records for the payment", mine.map((r) => `${r.partition}@${r.offset} ${r.type} ${r.eventId}`))
      yield* ctx.say.evidence("its committed outbox rows", committed.map((row) => row.id))
      const committedIds = new Set(committed.map((row) => row.id))
      const stray = mine.filter((record) => !committedIds.has(record.eventId))
      const missing = committed.filter((row) => !mine.some((record) => record.eventId === row.id))
      yield* ctx.say.expect(committed.length === 3 && stray.length === 0 && missing.length === 0,
        "three committed events (created, authorized, settled), each on Kafka, and no record the database does not have: none from the rolled-back attempt", { stray, missing })
      yield* checkBooks(ctx)
    })
}

export const faultScenarios = [acquirerTimeoutUnknownOutcome, lockHeldDuringSettle, serviceRestarts, dbRollbackAfterOutboxWrite]
