import { mkdirSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { domainEventTypes } from "@pay/domain/RefundEvents"
import { Effect, Fiber } from "effect"
import { SqlClient } from "effect/sql"
import type { ApiProcess } from "../ApiProcess.ts"
import { countOf, createMerchant } from "../Evidence.ts"
import { acquireStack, ownerSqlLayer } from "../Stack.ts"
import { type Check, faultCoverage, processLiveness, runChecker } from "./Checker.ts"
import { type ClientWorld, enoughPayments, runClient, untilDecided } from "./Clients.ts"
import { consumerChecks, replayCheck, webhookChecks, webhooksConsumerName } from "./ConsumerChecks.ts"
import { restartBounded, runFaults } from "./Faults.ts"
import { type Decided, decidedOf, makeHistory } from "./History.ts"
import { startReceiver } from "./Receiver.ts"
import { faultKinds, faultKindsWithoutCluster, faultSchedule, seededRandom } from "./Schedule.ts"
import { type KafkaMode, registerEndpoints, startTopology } from "./Topology.ts"

export interface ChaosOptions {
  readonly seed: number
  readonly duration_s: number
  readonly clients: number
  /** Bound on waiting for the outbox, the consumers and the webhook deliveries after the load. */
  readonly drain_s: number
  /** `cluster` (default): a 3-node Kafka of the run's own, with broker faults; `machine`: the machine's broker. */
  readonly kafka?: KafkaMode
  /** Share of created payments abandoned by their client (0..0.9; default 0): see ClientWorld.abandonShare. */
  readonly abandon_share?: number
  /** Least time between one fault's healing and the next fault (default 3 s; each gap adds 0..4 s). */
  readonly fault_gap_s?: number
  /** Stop the load once this many payments were created (the duration still bounds it). */
  readonly payments_target?: number
  /** Where the history and the report go (default bench/results/; the suite's short run uses a temporary folder). */
  readonly resultsDirectory?: string
}

const defaultResultsDirectory = fileURLToPath(new URL("../../../../bench/results/", import.meta.url))

/**
 * Waits (bounded) until the outbox is published, both consumers (the live settlement generation's
 * and the webhooks consumer) processed every payment event, and no webhook delivery is pending.
 */
const drain = (timeout_ms: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const deadline = Date.now() + timeout_ms
    const left = () => countOf(sql`
      SELECT (SELECT count(*) FROM outbox_events WHERE published_at IS NULL)
           + (SELECT count(*) FROM outbox_events e, (SELECT consumer FROM settlement_projection_live UNION ALL SELECT ${webhooksConsumerName}) c
              WHERE e.event_type IN ${sql.in([...domainEventTypes])} AND NOT EXISTS (
               SELECT 1 FROM processed_events p WHERE p.event_id = e.id AND p.consumer = c.consumer))
           + (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS n`)
    let n = yield* left()
    while (n > 0 && Date.now() < deadline) {
      yield* Effect.sleep(500)
      n = yield* left()
    }
    return n
  })

/**
 * The processes found dead when the fault schedule ended (named before anything restarts them: a
 * crash outside the schedule must not pass as healed), each started again (bounded) for the drain.
 */
const reviveDead = (processes: ReadonlyArray<ApiProcess>, log: (line: string) => void) =>
  Effect.gen(function* () {
    const deadAfterLoad = processes.filter((instance) => !instance.running())
    const notRestarted: Array<string> = []
    for (const instance of deadAfterLoad) {
      log(`${instance.name} found dead after the load (pid ${instance.pid()}); starting it again`)
      const restarted = yield* Effect.result(restartBounded(instance, log))
      if (restarted._tag === "Failure") notRestarted.push(`${instance.name}: ${restarted.failure.message.split("\n")[0]}`)
    }
    return { deadAfterLoad: deadAfterLoad.map((instance) => instance.name), notRestarted }
  })

const load = (world: ClientWorld, options: ChaosOptions, deadline_ms: number) =>
  Effect.forEach(Array.from({ length: options.clients }, (_, i) => i), (client) => runClient(world, client, options.seed, deadline_ms), { concurrency: "unbounded" })

/** The chaos run: load + seeded faults, then heal, drain, check. The report (also written as JSON). */
export const runChaos = (options: ChaosOptions, log: (line: string) => void) =>
  Effect.gen(function* () {
    const base = yield* acquireStack
    return yield* Effect.gen(function* () {
      const kafkaMode = options.kafka ?? "cluster"
      const topology = yield* startTopology(base, kafkaMode)
      const { stack, apis } = topology
      const processes = [...topology.apis, ...topology.publishers, ...topology.consumers, ...topology.webhooks]
      const merchants = [yield* createMerchant("chaos merchant a"), yield* createMerchant("chaos merchant b")]
      const receiver = yield* startReceiver(options.seed)
      const firstApi = apis[0]
      if (firstApi !== undefined) yield* registerEndpoints(firstApi, merchants, receiver, log)
      const stamp = new Date().toISOString().replace(/[:.]/g, "-")
      const resultsDirectory = options.resultsDirectory ?? defaultResultsDirectory
      mkdirSync(resultsDirectory, { recursive: true })
      const historyPath = `${resultsDirectory}chaos-${stamp}.history.jsonl`
      const started_ms = performance.now()
      const history = makeHistory(historyPath, started_ms)
      yield* Effect.addFinalizer(() => Effect.sync(() => history.close()))
      const world: ClientWorld = { apis, merchants, history, abandonShare: options.abandon_share ?? 0, created: { count: 0 }, paymentsTarget: options.payments_target }
      const schedule = faultSchedule(options.seed, options.duration_s * 1_000, kafkaMode === "cluster" ? faultKinds : faultKindsWithoutCluster, (options.fault_gap_s ?? 3) * 1_000)
      log(`chaos: seed ${options.seed}, ${options.duration_s} s, ${options.clients} clients, Kafka ${kafkaMode === "cluster" ? `cluster ${stack.kafkaBrokers}` : "the machine's broker"}, ${schedule.length} faults scheduled; database ${stack.database}; history ${historyPath}`)
      const faults = yield* runFaults(topology, schedule, started_ms, options.duration_s * 1_000, log, () => enoughPayments(world)).pipe(Effect.forkScoped)
      const clients = yield* load(world, options, started_ms + options.duration_s * 1_000)
      const load_s = (performance.now() - started_ms) / 1_000
      const faultOutcome = yield* Fiber.join(faults)
      const revived = yield* reviveDead(processes, log)
      log(`load done in ${Math.round((performance.now() - started_ms) / 1000)} s; finishing ${clients.reduce((n, c) => n + c.pending.length, 0)} undecided operations with their keys`)
      const decided: Array<Decided> = clients.flatMap((c) => [...c.decided])
      const random = seededRandom(options.seed)
      let unresolved = 0
      // Concurrently (at most 16 keys at once), each key up to 60 attempts.
      yield* Effect.forEach(clients.flatMap((c) => c.pending), (operation) =>
        untilDecided(world, operation, random, 60).pipe(Effect.map((answer) => {
          if (answer === undefined) unresolved += 1
          else decided.push(decidedOf({ op: operation.op, key: operation.key, merchant: operation.merchant, payment_id: operation.payment_id || (/"id":"(pay_\w+)"/.exec(answer.text)?.[1] ?? ""), status: answer.status, duplicated: false }, [answer.text]))
        })), { concurrency: 16, discard: true })
      history.close()
      const backlog = yield* drain(options.drain_s * 1_000)
      const checks: Array<Check> = [
        ...(yield* runChecker(stack, decided)),
        ...(yield* consumerChecks),
        ...(yield* webhookChecks(receiver)),
        yield* replayCheck(stack)
      ]
      checks.push(processLiveness({ total: processes.length, ...revived, leftDownByFaults: faultOutcome.leftDown, deadAtEnd: processes.filter((p) => !p.running()).map((p) => p.name) }))
      checks.push(faultCoverage({ scheduled: schedule.length, applied: Object.values(faultOutcome.applied).reduce((n, k) => n + k, 0), failed: faultOutcome.failed, skippedTarget: faultOutcome.skippedTarget, skippedLate: faultOutcome.skippedLate, load_s: Math.round(load_s), duration_s: options.duration_s, paymentsTarget: options.payments_target }))
      checks.push({ name: "every unknown operation decided by retrying its key; outbox and consumers drained", checked: decided.length, violations: [...(unresolved > 0 ? [`${unresolved} operations never decided`] : []), ...(backlog > 0 ? [`${backlog} events not drained`] : [])] })
      const internal = history.internal()
      checks.push({ name: "no answer was 500 internal_error (every fault is a dependency failure: 503, retry)", checked: history.answers(), violations: internal.count === 0 ? [] : [`${internal.count} answers 500`, ...internal.examples] })
      const operations = clients.reduce((n, c) => n + c.operations, 0)
      const duplicated = clients.reduce((n, c) => n + c.duplicated, 0)
      const outcomes = history.byPhase()
      const sql = yield* SqlClient.SqlClient
      const payments = yield* countOf(sql`SELECT count(*) AS n FROM payments`)
      // Measured, not the setting: created payments never authorized (nor declined) over created.
      const leftCreated = yield* countOf(sql`SELECT count(*) AS n FROM payments WHERE status = 'CREATED'`)
      const report = {
        seed: options.seed, duration_s: options.duration_s, clients: options.clients, abandon_share: payments === 0 ? 0 : leftCreated / payments, abandon_share_setting: world.abandonShare, fault_gap_s: options.fault_gap_s ?? 3, database: stack.database,
        payments, load_s: Math.round(load_s), payments_target: options.payments_target ?? null, payments_per_s: Math.round((payments / load_s) * 10) / 10, operations, history_events: history.events(), duplicated_share: operations === 0 ? 0 : duplicated / operations,
        attempts_by_outcome: outcomes, decided_by_status: tallyOutcomes(decided.map((d) => `${d.op} ${d.status}`)),
        faults_scheduled: schedule.length, faults_applied: faultOutcome.applied, faults_failed: faultOutcome.failed,
        faults_not_started: { after_payments_target: faultOutcome.skippedTarget, due_after_load: faultOutcome.skippedLate }, schedule,
        kafka: topology.kafka === undefined
          ? { mode: kafkaMode, brokers: 1, replication_factor: 1, min_insync_replicas: 1 }
          : { mode: kafkaMode, brokers: topology.kafka.nodes.length, replication_factor: topology.kafka.replicationFactor, min_insync_replicas: topology.kafka.minInsyncReplicas },
        webhooks: { applied: receiver.applied.size, redeliveries: receiver.redeliveries(), answered_503: receiver.unavailableAnswers() },
        checks, passed: checks.every((c) => c.violations.length === 0), history: historyPath
      }
      writeFileSync(`${resultsDirectory}chaos-${stamp}.json`, `${JSON.stringify(report, null, 2)}\n`)
      log(`report: ${resultsDirectory}chaos-${stamp}.json`)
      return report
    }).pipe(Effect.provide(ownerSqlLayer(base)))
  }).pipe(Effect.scoped)

const tallyOutcomes = (items: ReadonlyArray<string>) => {
  const counts: Record<string, number> = {}
  for (const item of items) counts[item] = (counts[item] ?? 0) + 1
  return counts
}
