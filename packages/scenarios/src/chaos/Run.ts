import { mkdirSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { throwaway } from "@pay/testkit/Throwaway"
import { Effect, Fiber } from "effect"
import { SqlClient } from "effect/sql"
import { apiEnvironment, startApi } from "../ApiProcess.ts"
import { countOf, createMerchant } from "../Evidence.ts"
import { startFaultProxy } from "../FaultProxy.ts"
import { acquireStack, ownerSqlLayer, type ScenarioStack } from "../Stack.ts"
import { type Check, runChecker } from "./Checker.ts"
import { type ClientWorld, runClient, untilDecided } from "./Clients.ts"
import { runFaults } from "./Faults.ts"
import { type Decided, makeHistory } from "./History.ts"
import { faultSchedule, seededRandom } from "./Schedule.ts"

export interface ChaosOptions {
  readonly seed: number
  readonly duration_s: number
  readonly clients: number
}

const resultsDirectory = fileURLToPath(new URL("../../../../bench/results/", import.meta.url))

/** Two API instances on the scenario's database, reaching Postgres through the fault proxy and Redis on a throwaway instance. */
const topology = (stack: ScenarioStack) =>
  Effect.gen(function* () {
    const redis = yield* throwaway("redis")
    const target = new URL(stack.appUrl)
    const postgresProxy = yield* startFaultProxy(target.hostname, Number(target.port || "5432"))
    const viaProxy = new URL(stack.appUrl)
    viaProxy.port = String(postgresProxy.port)
    const env = apiEnvironment(stack, {
      DATABASE_URL: viaProxy.toString(), REDIS_URL: redis.url, IDEMPOTENCY_LOCK_TIMEOUT_MS: "3000", ACQUIRER_TIMEOUT_MS: "1000",
      OUTBOX_PUBLISHER_ENABLED: "false"
    })
    const apis = [yield* startApi("api-a", env), yield* startApi("api-b", env)]
    // Two publishers of their own (sharing the outbox by claiming rows), also behind the proxy.
    const publisherEnv = apiEnvironment(stack, { DATABASE_URL: viaProxy.toString() })
    const publishers = [yield* startApi("publisher-a", publisherEnv, "publisher"), yield* startApi("publisher-b", publisherEnv, "publisher")]
    return { redis, postgresProxy, apis, publishers }
  })

/** Waits (bounded) for the outbox to drain and the live settlement consumer to catch up. */
const drain = (timeout_ms: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const deadline = Date.now() + timeout_ms
    const left = () => countOf(sql`
      SELECT (SELECT count(*) FROM outbox_events WHERE published_at IS NULL)
           + (SELECT count(*) FROM outbox_events e WHERE e.event_type = 'payment_settled' AND NOT EXISTS (
               SELECT 1 FROM processed_events p WHERE p.event_id = e.id AND p.consumer = (SELECT consumer FROM settlement_projection_live))) AS n`)
    let n = yield* left()
    while (n > 0 && Date.now() < deadline) {
      yield* Effect.sleep(500)
      n = yield* left()
    }
    return n
  })

const load = (world: ClientWorld, options: ChaosOptions, deadline_ms: number) =>
  Effect.forEach(Array.from({ length: options.clients }, (_, i) => i), (client) => runClient(world, client, options.seed, deadline_ms), { concurrency: "unbounded" })

/** The chaos run: load + seeded faults, then heal, drain, check. The report (also written as JSON). */
export const runChaos = (options: ChaosOptions, log: (line: string) => void) =>
  Effect.gen(function* () {
    const stack = yield* acquireStack
    return yield* Effect.gen(function* () {
      const { redis, postgresProxy, apis, publishers } = yield* topology(stack)
      const merchants = [yield* createMerchant("chaos merchant a"), yield* createMerchant("chaos merchant b")]
      const stamp = new Date().toISOString().replace(/[:.]/g, "-")
      mkdirSync(resultsDirectory, { recursive: true })
      const historyPath = `${resultsDirectory}chaos-${stamp}.history.jsonl`
      const started_ms = performance.now()
      const history = makeHistory(historyPath, started_ms)
      const world: ClientWorld = { apis, merchants, history }
      const schedule = faultSchedule(options.seed, options.duration_s * 1_000)
      log(`chaos: seed ${options.seed}, ${options.duration_s} s, ${options.clients} clients, ${schedule.length} faults scheduled; database ${stack.database}; history ${historyPath}`)
      const faults = yield* runFaults({ apis, publishers, redis, postgresProxy }, schedule, started_ms, log).pipe(Effect.forkScoped)
      const clients = yield* load(world, options, started_ms + options.duration_s * 1_000)
      const faultsApplied = yield* Fiber.join(faults)
      for (const instance of [...apis, ...publishers]) if (!instance.running()) yield* instance.restart()
      log(`load done in ${Math.round((performance.now() - started_ms) / 1000)} s; finishing ${clients.reduce((n, c) => n + c.pending.length, 0)} undecided operations with their keys`)
      const decided: Array<Decided> = clients.flatMap((c) => [...c.decided])
      const random = seededRandom(options.seed)
      let unresolved = 0
      for (const operation of clients.flatMap((c) => c.pending)) {
        const answer = yield* untilDecided(world, operation, random, 60)
        if (answer === undefined) unresolved += 1
        else decided.push({ op: operation.op, key: operation.key, merchant: operation.merchant, payment_id: operation.payment_id || (/"id":"(pay_\w+)"/.exec(answer.text)?.[1] ?? ""), status: answer.status, body: answer.text, answers: [answer.text], duplicated: false })
      }
      const backlog = yield* drain(120_000)
      const checks: Array<Check> = [...(yield* runChecker(stack, decided))]
      checks.push({ name: "every unknown operation decided by retrying its key; outbox and consumers drained", checked: decided.length, violations: [...(unresolved > 0 ? [`${unresolved} operations never decided`] : []), ...(backlog > 0 ? [`${backlog} events not drained`] : [])] })
      const internal = history.events.filter((e) => e.status === 500)
      checks.push({ name: "no answer was 500 internal_error (every fault is a dependency failure: 503, retry)", checked: history.events.length, violations: internal.slice(0, 20).map((e) => `${e.op} ${e.key} on instance ${e.instance}: ${e.body?.slice(0, 160) ?? ""}`) })
      const operations = clients.reduce((n, c) => n + c.operations, 0)
      const duplicated = clients.reduce((n, c) => n + c.duplicated, 0)
      const outcomes = tallyOutcomes(history.events.map((e) => e.phase))
      const report = {
        seed: options.seed, duration_s: options.duration_s, clients: options.clients, database: stack.database,
        operations, duplicated_share: operations === 0 ? 0 : duplicated / operations,
        attempts_by_outcome: outcomes, decided_by_status: tallyOutcomes(decided.map((d) => `${d.op} ${d.status}`)),
        faults_scheduled: schedule.length, faults_applied: faultsApplied, schedule,
        checks, passed: checks.every((c) => c.violations.length === 0), history: historyPath
      }
      writeFileSync(`${resultsDirectory}chaos-${stamp}.json`, `${JSON.stringify(report, null, 2)}\n`)
      log(`report: ${resultsDirectory}chaos-${stamp}.json`)
      return report
    }).pipe(Effect.provide(ownerSqlLayer(stack)))
  }).pipe(Effect.scoped)

const tallyOutcomes = (items: ReadonlyArray<string>) => {
  const counts: Record<string, number> = {}
  for (const item of items) counts[item] = (counts[item] ?? 0) + 1
  return counts
}
