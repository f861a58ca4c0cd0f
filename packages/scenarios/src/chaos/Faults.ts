import { Effect } from "effect"
import IORedis from "ioredis"
import type { ThrowawayInstance } from "@pay/testkit/Throwaway"
import type { ClusterNode, ThrowawayKafkaCluster } from "@pay/testkit/ThrowawayKafkaCluster"
import type { ApiProcess } from "../ApiProcess.ts"
import type { FaultProxy } from "@pay/testkit/FaultProxy"
import type { Fault, FaultKind } from "./Schedule.ts"

export interface FaultTargets {
  readonly apis: ReadonlyArray<ApiProcess>
  /** Standalone outbox publishers (the APIs run with OUTBOX_PUBLISHER_ENABLED=false). */
  readonly publishers: ReadonlyArray<ApiProcess>
  /** Consumer processes (settlement + webhooks consumers; the APIs run with CONSUMERS_ENABLED=false). */
  readonly consumers: ReadonlyArray<ApiProcess>
  /** The webhook sender process (the APIs run with WEBHOOK_SENDER_ENABLED=false). */
  readonly webhooks: ReadonlyArray<ApiProcess>
  /** The run's own cluster; undefined when the run uses the machine's broker (never harmed). */
  readonly kafka: ThrowawayKafkaCluster | undefined
  readonly redis: ThrowawayInstance
  readonly postgresProxy: FaultProxy
}

const pick = <A>(items: ReadonlyArray<A>, target: number): A | undefined => items[target % Math.max(1, items.length)]

/** kill -9, hold, start again (ready when this returns). */
const killAndRestart = (process: ApiProcess | undefined, hold_ms: number, log: (line: string) => void) =>
  Effect.gen(function* () {
    if (process === undefined) return
    log(`kill -9 ${process.name} (pid ${process.pid()})`)
    yield* process.kill9
    yield* Effect.sleep(hold_ms)
    yield* restartBounded(process, log)
  })

/** Starts a dead process again: at most 3 tries (each bounded by its start timeout); the last failure is the fault's. */
export const restartBounded = (process: ApiProcess, log: (line: string) => void) =>
  Effect.gen(function* () {
    for (let attempt = 1; ; attempt++) {
      const result = yield* Effect.result(process.restart())
      if (result._tag === "Success") return log(`${process.name} restarted (pid ${process.pid()})`)
      if (attempt >= 3) return yield* result.failure
      log(`${process.name}: restart ${attempt} failed (${result.failure.message.split("\n")[0]}); again`)
    }
  })

/** One Kafka node at a time: kill -9 and restart (same data), or SIGSTOP and SIGCONT. */
const brokerFault = (node: ClusterNode | undefined, fault: Fault, log: (line: string) => void) =>
  Effect.gen(function* () {
    if (node === undefined) return
    if (fault.kind === "pause-broker") {
      log(`SIGSTOP Kafka node ${node.nodeId} (pid ${node.pid()}) for ${fault.hold_ms} ms`)
      yield* node.pause
      yield* Effect.sleep(fault.hold_ms).pipe(Effect.ensuring(Effect.orDie(node.resume)))
      return
    }
    log(`kill -9 Kafka node ${node.nodeId} (pid ${node.pid()}) for ${fault.hold_ms} ms`)
    yield* node.kill
    yield* Effect.sleep(fault.hold_ms)
    yield* node.restart
    log(`Kafka node ${node.nodeId} restarted (pid ${node.pid()})`)
  })

/** FLUSHALL on a throwaway Redis of the run's own (no other process uses it); Redis's reply. */
export const flushRedis = (url: string) =>
  Effect.tryPromise(async () => {
    const client = new IORedis.default(url, { lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 1 })
    client.on("error", () => undefined)
    try {
      await client.connect()
      return await client.flushall()
    } finally {
      client.disconnect(false)
    }
  })

/** The process a kill-* fault targets (undefined for the other kinds). */
const killTarget = (targets: FaultTargets, fault: Fault): ApiProcess | undefined => {
  switch (fault.kind) {
    case "kill-api":
      return pick(targets.apis, fault.target)
    case "kill-publisher":
      return pick(targets.publishers, fault.target)
    case "kill-consumer":
      return pick(targets.consumers, fault.target)
    case "kill-webhooks":
      return pick(targets.webhooks, fault.target)
    default:
      return undefined
  }
}

/** Applies one fault and heals it after its hold time; a fault that could not be applied is logged, not fatal. */
const apply = (targets: FaultTargets, fault: Fault, log: (line: string) => void) =>
  Effect.gen(function* () {
    const api = pick(targets.apis, fault.target)
    switch (fault.kind) {
      case "kill-api":
      case "kill-publisher":
      case "kill-consumer":
      case "kill-webhooks":
        return yield* killAndRestart(killTarget(targets, fault), fault.hold_ms, log)
      case "kill-broker":
      case "pause-broker":
        return yield* brokerFault(targets.kafka === undefined ? undefined : pick(targets.kafka.nodes, fault.target), fault, log)
      case "pause-api":
        if (api === undefined) return
        log(`SIGSTOP ${api.name} for ${fault.hold_ms} ms`)
        yield* api.pause
        yield* Effect.sleep(fault.hold_ms).pipe(Effect.ensuring(api.resume))
        return
      case "cut-postgres":
        log(`reset ${yield* targets.postgresProxy.cutAll} Postgres connections`)
        return
      case "slow-postgres": {
        const latency_ms = 50 + (fault.target * 37) % 200
        log(`+${latency_ms} ms latency on every Postgres connection for ${fault.hold_ms * 2} ms`)
        yield* targets.postgresProxy.setLatency(latency_ms)
        yield* Effect.sleep(fault.hold_ms * 2).pipe(Effect.ensuring(targets.postgresProxy.setLatency(0)))
        return
      }
      case "flush-redis":
        log("FLUSHALL the throwaway Redis")
        yield* flushRedis(targets.redis.url)
        return
      case "kill-redis":
        log(`kill -9 Redis (pid ${targets.redis.pid()}) for ${fault.hold_ms} ms`)
        yield* targets.redis.kill
        yield* Effect.sleep(fault.hold_ms)
        yield* targets.redis.restart
        return
      case "pause-redis":
        log(`SIGSTOP Redis (pid ${targets.redis.pid()}) for ${fault.hold_ms} ms`)
        yield* targets.redis.pause
        yield* Effect.sleep(fault.hold_ms).pipe(Effect.ensuring(targets.redis.resume))
        return
    }
  })

/** What became of the schedule: applied per kind, failed, never started (and why), and what a failed fault may have left down. */
export interface FaultOutcome {
  readonly applied: Readonly<Record<string, number>>
  readonly failed: number
  /** Never started because the load stopped at its payments target (`--payments N`). */
  readonly skippedTarget: number
  /** Never started because slow heals pushed them past the end of the load. */
  readonly skippedLate: number
  /** Processes a failed kill-* fault may have left down (its restart failed): down for a reason the schedule knows. */
  readonly leftDown: ReadonlyArray<string>
}

/** Runs the schedule against `started_ms` (performance.now()): applied per kind, failures and faults never started. */
export const runFaults = (
  targets: FaultTargets,
  schedule: ReadonlyArray<Fault>,
  started_ms: number,
  loadEnd_ms: number,
  log: (line: string) => void,
  loadStopped: () => boolean = () => false
) =>
  Effect.gen(function* () {
    const applied = new Map<FaultKind, number>()
    const leftDown: Array<string> = []
    let failed = 0
    // How late the schedule runs: a heal that took longer than its fault's hold (a broker restart
    // can take 20 s on a loaded machine) moves every later fault by as much, so each still comes
    // its seeded gap (3-7 s by default) after the previous one healed, never bunched behind it.
    let shift_ms = 0
    for (const [index, fault] of schedule.entries()) {
      // Waits in steps of at most 1 s: a load that stopped early (`--payments N`) ends the schedule.
      const due_ms = () => started_ms + fault.at_ms + shift_ms - performance.now()
      let wait_ms = due_ms()
      while (wait_ms > 0 && !loadStopped()) {
        yield* Effect.sleep(Math.min(wait_ms, 1_000))
        wait_ms = due_ms()
      }
      // Slow heals (a broker restart can take a minute on a loaded machine) push the schedule
      // late: a fault due after the load has ended is skipped, not applied to an idle system.
      const left = schedule.length - index
      if (loadStopped()) return outcome(applied, failed, left, 0, leftDown)
      if (performance.now() > started_ms + loadEnd_ms) return outcome(applied, failed, 0, left, leftDown)
      const result = yield* Effect.result(apply(targets, fault, (line) => log(`[fault +${Math.round(performance.now() - started_ms)} ms] ${line}`)))
      if (result._tag === "Failure") {
        failed += 1
        const target = killTarget(targets, fault)
        if (target !== undefined) leftDown.push(target.name)
        log(`[fault] ${fault.kind} failed: ${String(result.failure)}`)
      } else applied.set(fault.kind, (applied.get(fault.kind) ?? 0) + 1)
      shift_ms = Math.max(shift_ms, performance.now() - started_ms - (fault.at_ms + fault.hold_ms))
    }
    return outcome(applied, failed, 0, 0, leftDown)
  })

const outcome = (applied: ReadonlyMap<FaultKind, number>, failed: number, skippedTarget: number, skippedLate: number, leftDown: ReadonlyArray<string>): FaultOutcome => ({
  applied: Object.fromEntries(applied), failed, skippedTarget, skippedLate, leftDown
})
