import type { KafkaError, KafkaRecord, KafkaSubscription } from "@pay/infra"
import { Effect, Fiber, type Scope } from "effect"
import type { SqlError } from "effect/sql/SqlError"

const slotOf = (record: KafkaRecord): string => `${record.topic}\u0000${record.partition}`

/** The batch split by topic and partition, each part in offset order (as polled). */
export const byPartition = (records: ReadonlyArray<KafkaRecord>): ReadonlyArray<ReadonlyArray<KafkaRecord>> => {
  const parts = new Map<string, Array<KafkaRecord>>()
  for (const record of records) {
    const slot = slotOf(record)
    const part = parts.get(slot)
    if (part === undefined) parts.set(slot, [record])
    else part.push(record)
  }
  return [...parts.values()]
}

/**
 * The Kafka commits of a subscription, behind the database (which is the position:
 * docs/consumers.md). `note` remembers the highest record per partition whose transaction
 * committed; `tick` commits those offsets when `interval_ms` has passed since the last commit (0:
 * every time), in the background, at most one commit in flight (the previous one is joined first,
 * so a failed commit ends the subscription); `flush` commits what is left and waits for it.
 */
export const makeKafkaCommits = (subscription: KafkaSubscription, interval_ms: number) =>
  Effect.sync(() => {
    const handled = new Map<string, KafkaRecord>()
    let inFlight: Fiber.Fiber<void, KafkaError> | undefined
    let lastCommit_ms = Date.now()
    const join = Effect.suspend(() => {
      const fiber = inFlight
      inFlight = undefined
      return fiber === undefined ? Effect.void : Fiber.join(fiber)
    })
    const start: Effect.Effect<void, KafkaError, Scope.Scope> = Effect.gen(function* () {
      yield* join
      if (handled.size === 0) return
      const records = [...handled.values()]
      handled.clear()
      lastCommit_ms = Date.now()
      inFlight = yield* Effect.forkScoped(subscription.commit(records))
    })
    const note = (records: ReadonlyArray<KafkaRecord>): void => {
      for (const record of records) {
        const slot = slotOf(record)
        const current = handled.get(slot)
        if (current === undefined || current.offset < record.offset) handled.set(slot, record)
      }
    }
    const tick = Effect.suspend(() => (Date.now() - lastCommit_ms >= interval_ms ? start : Effect.void))
    const flush = Effect.andThen(start, join)
    return { note, tick, flush } as const
  })

type PartitionWork = (records: ReadonlyArray<KafkaRecord>) => Effect.Effect<void, SqlError | KafkaError>

interface Dispatched {
  readonly fiber: Fiber.Fiber<void, SqlError | KafkaError>
  count: number
}

/** A partition's records waiting for their lane (its previous work not finished): still growing until it starts. */
interface Pending {
  readonly records: Array<KafkaRecord>
  started: boolean
  entry: Dispatched | undefined
}

/**
 * The partitions' work pipelined with polling. Each partition is a lane: its records are handled
 * in order (a batch starts after the partition's previous one ended), different partitions
 * concurrently, while the loop polls on. Records polled while their lane is busy join the work
 * already waiting in that lane, up to `coalesce_max` records (a backlog makes bigger slices, so
 * fewer transactions, BEGIN/COMMIT round trips and WAL flushes per record; an idle stream keeps
 * one poll's records per slice, so no record waits for others). `done` is told of a partition's
 * records once their transactions committed. `settle(limit)` joins the finished work in dispatch
 * order (a failure ends the subscription) and waits while more than `limit` records are
 * dispatched and not finished: memory and the work redone after a crash stay bounded. Every fiber
 * belongs to the subscription's scope: SIGTERM interrupts them, a slice's transaction in flight
 * finishes (uninterruptible).
 */
export const makePartitionLanes = (
  handlePartition: PartitionWork,
  done: (records: ReadonlyArray<KafkaRecord>) => void,
  coalesce_max: number
) =>
  Effect.sync(() => {
    const lanes = new Map<string, Fiber.Fiber<void, SqlError | KafkaError>>()
    const waiting = new Map<string, Pending>()
    const queue: Array<Dispatched> = []
    let outstanding = 0
    const dispatch = (records: ReadonlyArray<KafkaRecord>): Effect.Effect<void, never, Scope.Scope> =>
      Effect.gen(function* () {
        for (const part of byPartition(records)) {
          const first = part[0]
          if (first === undefined) continue
          const slot = slotOf(first)
          const pending = waiting.get(slot)
          // Appended only when the part starts past the waiting slice's last offset: after a rebalance
          // the client fetches again from the committed offset, lower, and a slice holding both was
          // out of offset order, refused whole by the claim and re-run one record per transaction
          // (outside operator review: 1,284 records of a backlog). Such a part waits as its own slice
          // (its records below the stored offset are skipped as behind).
          const last = pending?.records.at(-1)
          if (pending?.entry !== undefined && !pending.started && last !== undefined && first.offset > last.offset &&
            pending.records.length + part.length <= coalesce_max) {
            pending.records.push(...part)
            pending.entry.count += part.length
            outstanding += part.length
            continue
          }
          const previous = lanes.get(slot)
          const next: Pending = { records: [...part], started: false, entry: undefined }
          waiting.set(slot, next)
          const fiber = yield* Effect.forkScoped(Effect.gen(function* () {
            if (previous !== undefined) yield* Fiber.join(previous)
            next.started = true
            if (waiting.get(slot) === next) waiting.delete(slot)
            yield* handlePartition(next.records)
            done(next.records)
          }))
          lanes.set(slot, fiber)
          next.entry = { fiber, count: part.length }
          queue.push(next.entry)
          outstanding += part.length
        }
      })
    /** Returns how many records were joined (handled and committed). */
    const settle = (limit: number): Effect.Effect<number, SqlError | KafkaError> =>
      Effect.gen(function* () {
        let joined = 0
        while (true) {
          const head = queue[0]
          if (head === undefined || (outstanding <= limit && head.fiber.pollUnsafe() === undefined)) return joined
          yield* Fiber.join(head.fiber)
          queue.shift()
          outstanding -= head.count
          joined += head.count
        }
      })
    return { dispatch, settle } as const
  })
