import { Effect } from "effect"
import IORedis from "ioredis"
import type { ThrowawayInstance } from "@pay/testkit/Throwaway"
import type { ApiProcess } from "../ApiProcess.ts"
import type { FaultProxy } from "../FaultProxy.ts"
import type { Fault, FaultKind } from "./Schedule.ts"

export interface FaultTargets {
  readonly apis: ReadonlyArray<ApiProcess>
  /** Standalone outbox publishers (the APIs run with OUTBOX_PUBLISHER_ENABLED=false). */
  readonly publishers: ReadonlyArray<ApiProcess>
  readonly redis: ThrowawayInstance
  readonly postgresProxy: FaultProxy
}

/** FLUSHALL on the throwaway Redis (ours: no other process uses it). */
const flushRedis = (url: string) =>
  Effect.tryPromise(async () => {
    const client = new IORedis.default(url, { lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 1 })
    client.on("error", () => undefined)
    try {
      await client.connect()
      await client.flushall()
    } finally {
      client.disconnect(false)
    }
  })

/** Applies one fault and heals it after its hold time; a fault that could not be applied is logged, not fatal. */
const apply = (targets: FaultTargets, fault: Fault, log: (line: string) => void) =>
  Effect.gen(function* () {
    const api = targets.apis[fault.target]
    switch (fault.kind) {
      case "kill-api":
        if (api === undefined) return
        log(`kill -9 ${api.name} (pid ${api.pid()})`)
        yield* api.kill9
        yield* Effect.sleep(fault.hold_ms)
        yield* api.restart()
        log(`${api.name} restarted (pid ${api.pid()})`)
        return
      case "kill-publisher": {
        const publisher = targets.publishers[fault.target]
        if (publisher === undefined) return
        log(`kill -9 ${publisher.name} (pid ${publisher.pid()})`)
        yield* publisher.kill9
        yield* Effect.sleep(fault.hold_ms)
        yield* publisher.restart()
        log(`${publisher.name} restarted (pid ${publisher.pid()})`)
        return
      }
      case "pause-api":
        if (api === undefined) return
        log(`SIGSTOP ${api.name} for ${fault.hold_ms} ms`)
        yield* api.pause
        yield* Effect.sleep(fault.hold_ms)
        yield* api.resume
        return
      case "cut-postgres":
        log(`reset ${yield* targets.postgresProxy.cutAll} Postgres connections`)
        return
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
    }
  })

/** Runs the schedule against `started_ms` (performance.now()); the count of faults applied per kind. */
export const runFaults = (targets: FaultTargets, schedule: ReadonlyArray<Fault>, started_ms: number, log: (line: string) => void) =>
  Effect.gen(function* () {
    const applied = new Map<FaultKind, number>()
    for (const fault of schedule) {
      const wait_ms = started_ms + fault.at_ms - performance.now()
      if (wait_ms > 0) yield* Effect.sleep(wait_ms)
      const result = yield* Effect.result(apply(targets, fault, (line) => log(`[fault +${Math.round(performance.now() - started_ms)} ms] ${line}`)))
      if (result._tag === "Failure") log(`[fault] ${fault.kind} failed: ${String(result.failure)}`)
      else applied.set(fault.kind, (applied.get(fault.kind) ?? 0) + 1)
    }
    return Object.fromEntries(applied)
  })
