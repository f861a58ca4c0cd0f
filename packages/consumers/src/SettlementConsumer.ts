import type { KafkaAdmin } from "@pay/infra"
import { failureText, KafkaConsumer, type KafkaError } from "@pay/infra"
import { Cause, Clock, Duration, Effect, Exit, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { backoff_ms, type ConsumerOptions } from "./ConsumerConfig.ts"
import type { ConsumerFaults, ConsumerStatus } from "./ConsumerModel.ts"
import { behindTarget, initialStatus, runConsumer } from "./ConsumerRunner.ts"
import { makeConsumerStore } from "./ConsumerStore.ts"
import { makeSettlementProjection, settlementConsumerName } from "./SettlementProjection.ts"

export interface SettlementConsumerSettings {
  /** `<prefix>payments.events`. */
  readonly topic: string
  /** The deployment's topic prefix: group ids are `<prefix><consumer name>`. */
  readonly prefix: string
  readonly dlqTopic: string | null
  readonly options: ConsumerOptions
  readonly faults?: ConsumerFaults
}

export class ReplayTimedOut extends Schema.TaggedError<ReplayTimedOut>()("ReplayTimedOut", {
  generation: Schema.Int,
  timeout_ms: Schema.Int
}) {}

/**
 * The live settlement consumer: maintains the generation `settlement_projection_live` names,
 * and follows a swap (a replay made another generation live) by ending its subscription and
 * starting one as the new generation's consumer, from that consumer's stored offsets.
 */
export const runSettlementLive = (settings: SettlementConsumerSettings, status?: Ref.Ref<ConsumerStatus>) =>
  Effect.gen(function* () {
    const projection = makeSettlementProjection(yield* SqlClient.SqlClient)
    const state = status ?? (yield* Ref.make(initialStatus("settlement")))
    let failures = 0
    while (true) {
      const live = yield* Effect.result(projection.live)
      if (live._tag === "Failure") {
        failures++
        const delay_ms = backoff_ms(failures, 100, settings.options.restartBackoffMax_ms)
        yield* Effect.logWarning("settlement consumer cannot read the live generation").pipe(
          Effect.annotateLogs({ error: failureText(live.failure), retry_in_ms: delay_ms })
        )
        yield* Effect.sleep(Duration.millis(delay_ms))
        continue
      }
      failures = 0
      const generation = live.success.generation
      yield* Ref.update(state, (current) => ({ ...current, name: settlementConsumerName(generation) }))
      yield* runConsumer({
        ...settings,
        handler: projection.handler(generation),
        groupId: `${settings.prefix}${settlementConsumerName(generation)}`,
        keepGoing: projection.live.pipe(Effect.map((now) => now.generation === generation))
      }, state)
      yield* Effect.logInfo("settlement projection swapped; following the new generation").pipe(Effect.annotateLogs({ previous: generation }))
    }
  })

export interface RebuildResult {
  readonly previous: number
  readonly generation: number
  readonly swapped: boolean
  readonly target: ReadonlyArray<bigint>
}

/** How often a rebuild says how far it has read (INFO `settlement rebuild progress`, on the CLI's stderr). */
export const REBUILD_PROGRESS_INTERVAL_MS = 5_000

/**
 * One `settlement rebuild progress` line at most every REBUILD_PROGRESS_INTERVAL_MS: the records
 * the new generation has read (its stored offsets) against the log end offsets taken at its start.
 * A replay of a large topic said nothing for minutes (outside consumer operations review).
 */
export const progressLogger = <E>(generation: number, target: ReadonlyArray<bigint>, recordsRead: Effect.Effect<bigint, E>) =>
  Effect.gen(function* () {
    const loggedAt = yield* Ref.make(yield* Clock.currentTimeMillis)
    const target_records = target.reduce((sum, end) => sum + end, 0n)
    return Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      if (now - (yield* Ref.get(loggedAt)) < REBUILD_PROGRESS_INTERVAL_MS) return
      yield* Ref.set(loggedAt, now)
      const records_read = yield* recordsRead
      yield* Effect.logInfo("settlement rebuild progress").pipe(
        Effect.annotateLogs({ generation, records_read: String(records_read), target_records: String(target_records) })
      )
    })
  })

/**
 * Replay from offset 0: builds the next generation as a fresh consumer (new name, new group:
 * no stored offsets, so it reads every partition from the start) up to the log end offsets taken
 * when it starts, then swaps it in, atomically, if the live generation is still the one it
 * started from. The live projection keeps serving (and being updated) until the swap; the live
 * consumer then follows the new generation from where the rebuild stopped.
 *
 * Interrupted (SIGINT/SIGTERM to the CLI) or timed out before the swap: the transactions in flight
 * finish, nothing is swapped, and the half-built generation stays as it is, never live (its rows,
 * stored offsets, processed_events, parked rows and Kafka group); the next replay takes the next
 * number. Said in a log line, and in docs/consumers.md § Replay.
 */
export const rebuildSettlement = (
  settings: SettlementConsumerSettings & { readonly timeout_ms: number }
): Effect.Effect<RebuildResult, KafkaError | SqlError | ReplayTimedOut, SqlClient.SqlClient | KafkaConsumer | KafkaAdmin> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const projection = makeSettlementProjection(sql)
    const kafka = yield* KafkaConsumer
    const current = yield* projection.live
    const generation = yield* projection.nextGeneration
    const handler = projection.handler(generation)
    const target = yield* kafka.endOffsets(settings.topic)
    yield* Effect.logInfo("settlement rebuild starts").pipe(
      Effect.annotateLogs({ generation, previous: current.generation, target: target.map(String).join(",") })
    )
    // Past the target, the rebuild goes on until it has caught up with the live generation (which
    // kept applying events meanwhile) and swaps in the same statement that checks it: "live" then
    // says which generation serves (ours: swapped; another: a concurrent rebuild won).
    const finished = yield* Ref.make<number | undefined>(undefined)
    const recordsRead = makeConsumerStore(sql).offsets(handler.name).pipe(
      Effect.map((stored) => stored.filter((row) => row.topic === settings.topic).reduce((sum, row) => sum + row.next_offset, 0n))
    )
    const logProgress = yield* progressLogger(generation, target, recordsRead)
    const caughtUpAndSwapped = Effect.gen(function* () {
      yield* logProgress
      if (yield* behindTarget(sql, handler.name, settings.topic, target)) return true
      const outcome = yield* projection.swapWhenCaughtUp(current.generation, generation, settings.topic)
      if (outcome.live_generation === current.generation && outcome.behind) return true
      yield* Ref.set(finished, outcome.live_generation)
      return false
    })
    yield* runConsumer({
      ...settings,
      // Records parked live were sent to the DLQ topic then; a rebuild parks in the table only.
      dlqTopic: null,
      handler,
      groupId: `${settings.prefix}${handler.name}`,
      keepGoing: caughtUpAndSwapped,
      // Going a little past the target is harmless: the stored offsets say where the live one resumes.
      keepGoingInterval_ms: 100
    }).pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(settings.timeout_ms),
        orElse: () => Effect.fail(new ReplayTimedOut({ generation, timeout_ms: settings.timeout_ms }))
      }),
      // Stopped (interrupted, timed out, failed) before the swap: said, with the generation left half-built.
      Effect.onExit((exit) =>
        Exit.isSuccess(exit) ? Effect.void : Effect.flatMap(Ref.get(finished), (live) =>
          live === generation ? Effect.void : Effect.logWarning("settlement rebuild stopped before the swap: the new generation is half-built and not live").pipe(
            Effect.annotateLogs({ generation, live: live ?? current.generation, interrupted: Cause.hasInterruptsOnly(exit.cause) })
          )))
    )
    const swapped = (yield* Ref.get(finished)) === generation
    return { previous: current.generation, generation, swapped, target }
  })
