import { startThrowawayKafka } from "@pay/testkit/ThrowawayKafka"
import { throwaway } from "@pay/testkit/Throwaway"
import { decodeRows } from "@pay/infra"
import { Effect, Fiber, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { countOf, countUntil, type ScenarioMerchant } from "../Evidence.ts"
import { authorizedPayment, checkBooks, checkMovedOnce, retryUntilDecided, tally } from "../Flows.ts"
import { flushRedis } from "../chaos/Faults.ts"
import { type FaultProxy, startPostgresProxy } from "@pay/testkit/FaultProxy"
import { type Answer, brief, call, field } from "../Http.ts"
import { readTopic } from "../Kafka.ts"
import { newKey, paymentBody, type Scenario, type ScenarioContext } from "../Scenario.ts"
import type { ApiProcess } from "../ApiProcess.ts"

/** A dependency goes away under load: Redis, Postgres connections, the Kafka broker. Only throwaway instances and our own proxy are harmed. */

/** The names `/health/ready` lists under `list` in its answer ([] when none, or no such list). */
const namesListed = (list: "unavailable" | "degraded") => {
  const pattern = new RegExp(`"${list}":\\[([^\\]]*)\\]`, "u")
  return (text: string): ReadonlyArray<string> =>
    (pattern.exec(text)?.[1] ?? "").split(",").map((name) => name.replace(/"/g, "").trim()).filter((name) => name !== "")
}

/** The dependencies `/health/ready` names in its `unavailable` list (a 503: required and down). */
export const unavailableIn = namesListed("unavailable")

/** The dependencies a 200 `/health/ready` names in its `degraded` list: down, and the instance serves without them. */
export const degradedIn = namesListed("degraded")

/** Polls `GET /health/ready` (bounded, 250 ms steps) until `done` holds; the last answer either way. */
const pollReadiness = (api: ApiProcess, timeout_ms: number, done: (answer: Answer) => boolean) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout_ms
    let ready = yield* call(api.baseUrl, "GET", "/health/ready")
    while (!done(ready) && Date.now() < deadline) {
      yield* Effect.sleep(250)
      ready = yield* call(api.baseUrl, "GET", "/health/ready")
    }
    return ready
  })

/** `/health/ready` must answer 503 and name `dependency` in `unavailable` (polled up to `timeout_ms`: the API notices within its probe timeout). */
const expectNotReady = (ctx: ScenarioContext, api: ApiProcess, dependency: string, timeout_ms: number) =>
  Effect.gen(function* () {
    const ready = yield* pollReadiness(api, timeout_ms, (answer) => answer.status === 503 && unavailableIn(answer.text).includes(dependency))
    yield* ctx.say.evidence(`GET /health/ready (polled up to ${timeout_ms / 1_000} s)`, `${ready.status} ${ready.text.slice(0, 300)}`)
    yield* ctx.say.expect(ready.status === 503 && unavailableIn(ready.text).includes(dependency), `/health/ready is 503 and names ${dependency} as unavailable`, ready.text.slice(0, 400))
  })

/**
 * `/health/ready` must stay 200 and name `dependency` as degraded (polled up to `timeout_ms`): Redis
 * and Kafka are shared by every instance and the API serves without them, so they never take an
 * instance out of a balancer's rotation (a blip of either would take them all at once).
 */
const expectDegraded = (ctx: ScenarioContext, api: ApiProcess, dependency: string, timeout_ms: number) =>
  Effect.gen(function* () {
    const ready = yield* pollReadiness(api, timeout_ms, (answer) => answer.status === 200 && degradedIn(answer.text).includes(dependency))
    yield* ctx.say.evidence(`GET /health/ready (polled up to ${timeout_ms / 1_000} s)`, `${ready.status} ${ready.text.slice(0, 300)}`)
    yield* ctx.say.expect(ready.status === 200 && degradedIn(ready.text).includes(dependency),
      `/health/ready stays 200 (the instance serves) and names ${dependency} as degraded`, ready.text.slice(0, 400))
  })

/** `/health/ready` must answer 200 with nothing degraded again (polled up to `timeout_ms`). */
const expectReady = (ctx: ScenarioContext, api: ApiProcess, what: string, timeout_ms: number) =>
  Effect.gen(function* () {
    const isReady = (answer: Answer) => answer.status === 200 && degradedIn(answer.text).length === 0
    const ready = yield* pollReadiness(api, timeout_ms, isReady)
    yield* ctx.say.evidence(`GET /health/ready (polled up to ${timeout_ms / 1_000} s)`, `${ready.status} ${ready.text.slice(0, 200)}`)
    yield* ctx.say.expect(isReady(ready), what, ready.text.slice(0, 400))
  })

export const redisDown: Scenario = {
  name: "redis-down",
  summary: "a throwaway Redis behind the API is killed (kill -9 by pid) and comes back empty: payments go on, replays stay byte-identical",
  fast: true,
  run: (ctx) =>
    Effect.gen(function* () {
      yield* ctx.say.step("start a throwaway Redis and the API on it")
      const redis = yield* throwaway("redis")
      yield* ctx.say.note(`throwaway Redis ${redis.url}, pid ${redis.pid()}`)
      const api = yield* ctx.startApi("api-1", { REDIS_URL: redis.url })
      const m = yield* ctx.merchant("redis merchant")
      const key = newKey("create")
      const first = yield* ctx.post(api, m, "/v1/payments", key, paymentBody(1_234))
      const warm = yield* ctx.post(api, m, "/v1/payments", key, paymentBody(1_234))
      yield* ctx.say.expect(warm.replayed && warm.text === first.text, "replay with Redis up is byte-identical")
      yield* ctx.say.step(`kill -9 Redis (pid ${redis.pid()})`)
      yield* redis.kill
      yield* expectDegraded(ctx, api, "redis", 10_000)
      const cold = yield* ctx.post(api, m, "/v1/payments", key, paymentBody(1_234))
      yield* ctx.say.evidence("replay with Redis dead", `${cold.status} replayed=${cold.replayed} in ${cold.elapsed_ms} ms`)
      yield* ctx.say.expect(cold.replayed && cold.text === first.text, "the replay comes from Postgres, byte-identical")
      const id = yield* authorizedPayment(ctx, api, m, 8_800)
      const settleKey = newKey("settle")
      const settled = yield* ctx.post(api, m, `/v1/payments/${id}/settle`, settleKey)
      yield* ctx.say.expect(settled.status === 200, "a payment is created, authorized and settled with Redis dead", settled.text)
      yield* ctx.say.step("bring Redis back (same port, no persistence: it comes back empty), wait until the API reaches it, then FLUSHALL")
      yield* redis.restart
      yield* ctx.say.note(`Redis pid ${redis.pid()}`)
      // The replay below must meet a Redis that answers and holds nothing (the empty-cache path),
      // not the dead-Redis path a second time: readiness first, then the flush, then the replay.
      yield* expectReady(ctx, api, "the API reconnects to Redis and reports ready again", 10_000)
      yield* ctx.say.evidence("FLUSHALL on the throwaway Redis", yield* flushRedis(redis.url))
      const again = yield* ctx.post(api, m, `/v1/payments/${id}/settle`, settleKey)
      yield* ctx.say.expect(again.replayed && again.text === settled.text, "with Redis up and flushed, the settle replays byte-identical (from Postgres)", again.text)
      const other = yield* ctx.post(api, m, `/v1/payments/${id}/settle`, newKey("settle-again"))
      yield* ctx.say.expect(other.status === 409 && field(other, "code") === "invalid_transition", "a settle under a new key is 409 invalid_transition", other.text)
      yield* checkMovedOnce(ctx, id)
      yield* checkBooks(ctx)
    })
}

const cutRounds = 12

export const postgresConnectionsDropped: Scenario = {
  name: "postgres-connections-dropped",
  summary: "the API reaches Postgres through a fault proxy that resets every connection, again and again, while settles run: no half-written settlement",
  fast: true,
  run: (ctx) =>
    Effect.gen(function* () {
      const { proxy, url: viaProxy } = yield* startPostgresProxy(ctx.stack.appUrl)
      yield* ctx.say.step(`start the API with DATABASE_URL through the fault proxy on port ${proxy.port}`)
      // A key whose release died with its connection unlocks when its lease expires: 3 s, not the default.
      const api = yield* ctx.startApi("api-1", { DATABASE_URL: viaProxy, ACQUIRER_LATENCY_MS: "50", IDEMPOTENCY_LOCK_TIMEOUT_MS: "3000" })
      const m = yield* ctx.merchant("cut merchant")
      const ids = yield* Effect.forEach([1, 2, 3, 4, 5, 6], (i) => authorizedPayment(ctx, api, m, 500 * i))
      const keys = ids.map(() => newKey("settle"))
      yield* ctx.say.step(`settle ${ids.length} payments at once while the proxy resets every open connection every 100 ms (${cutRounds} rounds)`)
      const cutter = yield* Effect.forEach(Array.from({ length: cutRounds }), () => Effect.sleep(100).pipe(Effect.andThen(proxy.cutAll))).pipe(Effect.forkScoped)
      const answers = yield* Effect.forEach(ids, (id, i) => Effect.result(ctx.post(api, m, `/v1/payments/${id}/settle`, keys[i] ?? "")), { concurrency: "unbounded" })
      yield* Fiber.join(cutter)
      yield* ctx.say.evidence("connections reset", proxy.connectionsCut())
      yield* ctx.say.evidence("first answers", tally(answers.map((r) => (r._tag === "Success" ? `${r.success.status} ${field(r.success, "code") || field(r.success, "status")}` : "no answer"))))
      const defects = api.output().split("\n").filter((line) => line.includes("defect"))
      if (defects.length > 0) yield* ctx.say.evidence(`API log: ${defects.length} line(s) "request failed with a defect", the first`, defects[0]?.slice(0, 1_200))
      for (const id of ids) yield* checkMovedOnce(ctx, id)
      yield* ctx.say.step("the network heals; each client retries with its own key")
      for (const [i, id] of ids.entries()) {
        const { answer } = yield* retryUntilDecided(ctx, api, m, `/v1/payments/${id}/settle`, keys[i] ?? "")
        yield* ctx.say.expect(answer.status === 200 && field(answer, "status") === "SETTLED", `${id} settled`, answer.text)
        yield* checkMovedOnce(ctx, id)
      }
      yield* checkBooks(ctx)
      // docs/what-can-go-wrong.md: "Postgres down: requests fail fast with 503". A lost connection is
      // a dependency failure (retry with the same key), never a 500 internal_error (a bug).
      const internal = answers.filter((r) => r._tag === "Success" && r.success.status === 500).length
      yield* ctx.say.expect(internal === 0, "no answer was 500 internal_error (a dropped connection is a 503 database_unavailable)", `${internal} of ${answers.length} answers were 500 internal_error`)
    })
}

/**
 * What a request meets while Postgres is out of reach, and the bound docs/what-can-go-wrong.md
 * promises for its 503. `down`: the proxy refuses new connections and resets the open ones (a
 * stopped database): every request fails at once, within the pool's connect timeout (5 s,
 * packages/infra/src/Postgres.ts). `partitioned`: the proxy answers nothing and resets nothing (a
 * network partition: open connections go silent, new ones hang): a statement in flight waits for
 * the answer timeout (`DATABASE_ANSWER_TIMEOUT_MS`, checked every 250 ms), a request that then
 * needs a new connection waits again, bounded by the answer or the connect timeout (measured
 * with 3 s: 3.2 s for a create, 6.2-6.5 s for a request whose API key is looked up), and a second
 * of slack for the watch's tick and the scheduling of a loaded machine. The scenario sets the answer timeout to 3 s (the
 * default, 10 s, sits above the payment row lock's 5 s; nothing here waits for a lock) so that it
 * takes ~30 s, not ~50.
 */
interface Outage {
  readonly name: "down" | "partitioned"
  readonly bound_ms: number
  readonly bound: string
}
const postgresConnectTimeout_ms = 5_000
const postgresAnswerTimeout_ms = 3_000
const watchSlack_ms = 1_000
const down: Outage = { name: "down", bound_ms: postgresConnectTimeout_ms, bound: `the connect timeout (${postgresConnectTimeout_ms} ms)` }
const partitioned: Outage = {
  name: "partitioned",
  bound_ms: postgresAnswerTimeout_ms + postgresConnectTimeout_ms + watchSlack_ms,
  bound: `the answer timeout plus the connect timeout (${postgresAnswerTimeout_ms} + ${postgresConnectTimeout_ms} ms, + ${watchSlack_ms} ms of slack)`
}
/** Readiness notices within one probe (1 s) plus one cached round (`READINESS_CACHE_MS`, 1 s); polled up to this. */
const readinessNotices_ms = 5_000
/** The pool reconnects on the next request or probe once the proxy passes again; polled up to this. */
const readinessRecovers_ms = 10_000
const createAmount_minor = 4_321

/** One request while Postgres is out of reach: a 503 `database_unavailable` with `Retry-After`, within the outage's bound, never a 500. */
const expectUnavailable = (ctx: ScenarioContext, outage: Outage, what: string, answer: Answer) =>
  Effect.gen(function* () {
    const retryAfter = answer.headers.get("retry-after")
    yield* ctx.say.evidence(what, `${brief(answer)} Retry-After=${retryAfter ?? "(none)"} in ${answer.elapsed_ms} ms: "${field(answer, "detail")}"`)
    yield* ctx.say.expect(answer.status !== 500, `${what}: not a 500`, answer.text)
    yield* ctx.say.expect(answer.status === 503 && field(answer, "code") === "database_unavailable" && retryAfter !== null,
      `${what}: 503 database_unavailable with Retry-After`, answer.text)
    yield* ctx.say.expect(answer.elapsed_ms <= outage.bound_ms, `${what}: answered within ${outage.bound}`, `${answer.elapsed_ms} ms`)
  })

interface OutageKeys {
  readonly create: string
  readonly settle: string
}

/** Waits this long for an answer during an outage: past every bound, so a request that hangs is seen as such. */
const outageCall_ms = 30_000

/** Postgres out of reach at the proxy (`outage`); what the API answers meanwhile. */
const duringOutage = (ctx: ScenarioContext, api: ApiProcess, proxy: FaultProxy, m: ScenarioMerchant, toSettle: string, keys: OutageKeys, outage: Outage) =>
  Effect.gen(function* () {
    // A read first puts the merchant's API key in the API's key cache (≤ 1 s): the create and the
    // settle right after it then get past authentication and meet the outage in their own work
    // (idempotency, payment, settlement). Past the cache's second they are refused while their key
    // is checked, also a 503 database_unavailable; the `detail` printed says which.
    const warm = yield* ctx.get(api, m, `/v1/payments/${toSettle}`)
    yield* ctx.say.expect(warm.status === 200, "the payment reads back just before the outage", warm.text)
    if (outage.name === "down") {
      yield* ctx.say.step("take Postgres down at the proxy: refuse every new connection, reset every open one (the machine's Postgres is untouched)")
      yield* proxy.setMode("refuse")
      yield* ctx.say.evidence("open connections reset", yield* proxy.cutAll)
    } else {
      yield* ctx.say.step("partition the API from Postgres at the proxy: open connections go silent, new ones hang (nothing is reset; the machine's Postgres is untouched)")
      yield* proxy.setMode("blackhole")
    }
    const created = yield* ctx.post(api, m, "/v1/payments", keys.create, paymentBody(createAmount_minor), outageCall_ms)
    yield* expectUnavailable(ctx, outage, "POST /v1/payments", created)
    const settled = yield* ctx.post(api, m, `/v1/payments/${toSettle}/settle`, keys.settle, undefined, outageCall_ms)
    yield* expectUnavailable(ctx, outage, `POST /v1/payments/${toSettle}/settle`, settled)
    const read = yield* call(api.baseUrl, "GET", `/v1/payments/${toSettle}`, { apiKey: m.apiKey, timeout_ms: outageCall_ms })
    yield* ctx.say.evidence(`GET /v1/payments/${toSettle}`, `${brief(read)} in ${read.elapsed_ms} ms`)
    yield* ctx.say.expect(read.status === 503 && field(read, "code") === "database_unavailable", "a read is 503 database_unavailable too (nothing to read it from)", read.text)
    yield* ctx.say.expect(read.elapsed_ms <= outage.bound_ms, `the read: answered within ${outage.bound}`, `${read.elapsed_ms} ms`)
    const started = Date.now()
    yield* expectNotReady(ctx, api, "postgres", readinessNotices_ms)
    yield* ctx.say.evidence("readiness named postgres after", `${Date.now() - started} ms`)
    const live = yield* call(api.baseUrl, "GET", "/health/live")
    yield* ctx.say.evidence("GET /health/live", `${live.status} in ${live.elapsed_ms} ms`)
    yield* ctx.say.expect(live.status === 200, "/health/live stays 200 (the process is alive; restarting it would not bring Postgres back)", live.text)
  })

/** Postgres back at the proxy: readiness first, then the same requests with the same keys, each completing once. */
const afterOutage = (ctx: ScenarioContext, api: ApiProcess, proxy: FaultProxy, m: ScenarioMerchant, toSettle: string, keys: OutageKeys) =>
  Effect.gen(function* () {
    yield* ctx.say.step("bring Postgres back at the proxy (a partition heals: what it held is delivered); the clients retry with the same Idempotency-Keys")
    yield* proxy.setMode("pass")
    const started = Date.now()
    yield* expectReady(ctx, api, "the API reaches Postgres again and reports ready", readinessRecovers_ms)
    yield* ctx.say.evidence("ready again after", `${Date.now() - started} ms`)
    const created = yield* retryUntilDecided(ctx, api, m, "/v1/payments", keys.create, paymentBody(createAmount_minor))
    yield* ctx.say.evidence("create, same key", `${brief(created.answer)} (undecided on the way: ${tally(created.undecided)})`)
    yield* ctx.say.expect(created.answer.status === 201, "the create completes (201)", created.answer.text)
    const replay = yield* ctx.post(api, m, "/v1/payments", keys.create, paymentBody(createAmount_minor))
    yield* ctx.say.expect(replay.replayed && replay.text === created.answer.text, "the create's key replays the same answer", replay.text)
    const sql = yield* SqlClient.SqlClient
    const payments = yield* countOf(sql`SELECT count(*) AS n FROM payments WHERE merchant_id = ${m.merchantId} AND amount_minor = ${createAmount_minor}`)
    yield* ctx.say.evidence(`payments of ${createAmount_minor} for the merchant`, payments)
    yield* ctx.say.expect(payments === 1, "exactly one payment for the create's key", payments)
    const settled = yield* retryUntilDecided(ctx, api, m, `/v1/payments/${toSettle}/settle`, keys.settle)
    yield* ctx.say.evidence("settle, same key", `${brief(settled.answer)} (undecided on the way: ${tally(settled.undecided)})`)
    yield* ctx.say.expect(settled.answer.status === 200 && field(settled.answer, "status") === "SETTLED", `${toSettle} settled`, settled.answer.text)
    const again = yield* ctx.post(api, m, `/v1/payments/${toSettle}/settle`, keys.settle)
    yield* ctx.say.expect(again.replayed && again.text === settled.answer.text, "the settle's key replays the same answer", again.text)
    yield* checkMovedOnce(ctx, toSettle)
  })

/** Postgres out of reach and back: the API answers 503 within the outage's bound, nothing is half-written, the same keys finish once. */
const outageScenario = (outage: Outage, name: string, summary: string, env: Readonly<Record<string, string>>): Scenario => ({
  name,
  summary,
  fast: true,
  run: (ctx) =>
    Effect.gen(function* () {
      const { proxy, url: viaProxy } = yield* startPostgresProxy(ctx.stack.appUrl)
      yield* ctx.say.step(`start the API with DATABASE_URL through the fault proxy on port ${proxy.port}; take payments while Postgres answers`)
      const api = yield* ctx.startApi("api-1", { DATABASE_URL: viaProxy, IDEMPOTENCY_LOCK_TIMEOUT_MS: "3000", ...env })
      const m = yield* ctx.merchant(`${name} merchant`)
      const before = yield* authorizedPayment(ctx, api, m, 1_500)
      const settledBefore = yield* ctx.post(api, m, `/v1/payments/${before}/settle`, newKey("settle"))
      yield* ctx.say.expect(settledBefore.status === 200, `${before} settled while Postgres answers`, settledBefore.text)
      const toSettle = yield* authorizedPayment(ctx, api, m, 2_500)
      const keys: OutageKeys = { create: newKey("create"), settle: newKey("settle") }
      yield* duringOutage(ctx, api, proxy, m, toSettle, keys, outage)
      yield* checkMovedOnce(ctx, toSettle)
      yield* afterOutage(ctx, api, proxy, m, toSettle, keys)
      yield* checkMovedOnce(ctx, before)
      yield* checkBooks(ctx)
    })
})

export const postgresDown = outageScenario(down, "postgres-down",
  "Postgres goes fully down at the fault proxy (open connections reset, new ones refused) and comes back: 503 database_unavailable fast, readiness names postgres, the same keys finish once", {})

export const postgresPartitioned = outageScenario(partitioned, "postgres-partitioned",
  "a network partition between the API and Postgres (open connections go silent, new ones hang, nothing is reset) and its heal: 503 database_unavailable within the answer and connect timeouts, never a hung request; the same keys finish once",
  { DATABASE_ANSWER_TIMEOUT_MS: String(postgresAnswerTimeout_ms) })

/** Waits (bounded) until the outbox has no unpublished row; the count left. */
const drainOutbox = (timeout_ms: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* countUntil(sql`SELECT count(*) AS n FROM outbox_events WHERE published_at IS NULL`, (left) => left === 0, { timeout_ms, step_ms: 500 })
  })

const OutboxRow = Schema.Struct({ id: Schema.String, aggregate_id: Schema.String })

export const kafkaDown: Scenario = {
  name: "kafka-down",
  summary: "the scenario's own Kafka broker is killed (kill -9 by pid) while payments commit, then restarted: the outbox holds the events and drains them in order",
  fast: false,
  run: (ctx) =>
    Effect.gen(function* () {
      yield* ctx.say.step("start a throwaway Kafka broker (never the machine's broker on 9092) and the API on it")
      const broker = yield* startThrowawayKafka()
      yield* ctx.say.note(`throwaway broker ${broker.brokers}, pid ${broker.pid}`)
      const api = yield* ctx.startApi("api-1", { KAFKA_BROKERS: broker.brokers })
      const m = yield* ctx.merchant("kafka merchant")
      const before = yield* authorizedPayment(ctx, api, m, 1_111)
      yield* ctx.say.expect((yield* drainOutbox(60_000)) === 0, "with the broker up, the outbox drains")
      yield* ctx.say.step(`kill -9 the broker (pid ${broker.pid}) and keep taking payments`)
      yield* broker.kill
      const ids = [before]
      for (const amount of [2_222, 3_333, 4_444]) {
        const id = yield* authorizedPayment(ctx, api, m, amount)
        const settled = yield* ctx.post(api, m, `/v1/payments/${id}/settle`, newKey("settle"))
        yield* ctx.say.expect(settled.status === 200, `${id} settled with Kafka down`, settled.text)
        ids.push(id)
      }
      const sql = yield* SqlClient.SqlClient
      const waiting = yield* countOf(sql`SELECT count(*) AS n FROM outbox_events WHERE published_at IS NULL`)
      yield* ctx.say.evidence("outbox rows waiting for Kafka", waiting)
      yield* ctx.say.expect(waiting >= 9, "the events wait in the outbox (committed with their changes)", waiting)
      yield* expectDegraded(ctx, api, "kafka", 20_000)
      yield* ctx.say.step("restart the broker")
      yield* broker.restart
      const left = yield* drainOutbox(120_000)
      yield* ctx.say.evidence("unpublished after the restart", left)
      yield* ctx.say.expect(left === 0, "the outbox drained")
      const rows = yield* decodeRows(OutboxRow)(sql`SELECT id::text AS id, aggregate_id FROM outbox_events ORDER BY position`)
      const records = yield* readTopic(broker.brokers, ctx.stack.eventsTopic, rows.length, 30_000)
      yield* ctx.say.evidence("Kafka records read back", `${records.length} for ${rows.length} outbox rows`)
      const seen = new Set(records.map((r) => r.eventId))
      yield* ctx.say.expect(rows.every((row) => seen.has(row.id)), "every outbox row has at least one Kafka record with its id")
      for (const id of ids) {
        const order = rows.filter((row) => row.aggregate_id === id).map((row) => row.id)
        const published = records.filter((r) => r.key === id).map((r) => r.eventId).filter((eventId, i, all) => all.indexOf(eventId) === i)
        yield* ctx.say.expect(JSON.stringify(order) === JSON.stringify(published), `${id}: events on Kafka in the outbox's order`, { order, published })
        yield* checkMovedOnce(ctx, id)
      }
      yield* checkBooks(ctx)
    })
}

export const dependencyScenarios = [redisDown, postgresConnectionsDropped, postgresDown, postgresPartitioned, kafkaDown]
