/**
 * Phase E of the consumers benchmark: a quiet stream's cost, one record per slice (what a
 * consumer sees at tens of events per second: each poll brings a record or two per partition),
 * through the settlement consumer's two slice paths side by side, alternated in rounds:
 *   - "statement": the claim and the projection's upserts as ONE statement, committed on its own
 *     (`applySlice`, PartitionBatch.ts): one round trip;
 *   - "transaction": BEGIN, the claim, `applyBatch`, COMMIT: four round trips.
 * Records are handed to the partition handler directly (no Kafka: its cost is the same on both
 * paths), each path its own generation and records. Per record: this process's CPU, the bench
 * database's Postgres backends' CPU, and the wall time.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import type { KafkaRecord, ProducerMessage } from "../../packages/infra/src/index.ts"
import { type ConsumerHandler, type ConsumerOptions, makeRecordProcessor, makeSettlementProjection } from "../../packages/consumers/src/index.ts"
import { makePartitionHandler } from "../../packages/consumers/src/PartitionBatch.ts"

interface Costs {
  readonly node_cpu_per_event_us: number
  readonly postgres_cpu_per_event_us: number
}

interface Sampler<S> {
  readonly start: Effect.Effect<S, unknown>
  readonly end: (before: S, events: number) => Effect.Effect<Costs, unknown>
}

const round = (value: number, digits = 1) => Number(value.toFixed(digits))

export const quietSlices = <S>(settings: {
  readonly messages: ReadonlyArray<ProducerMessage>
  readonly records_per_round: number
  readonly rounds: number
  readonly topic: string
  readonly options: ConsumerOptions
  readonly costs: Sampler<S>
}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const projection = makeSettlementProjection(sql)
    const statement = projection.handler(100)
    // The same handler without the one-statement form: the transaction's path.
    const { applySlice: _applySlice, ...transaction } = projection.handler(101)
    const handlerOf = (handler: ConsumerHandler) =>
      Effect.gen(function* () {
        const processor = { handler, dlqTopic: null, options: settings.options }
        return yield* makePartitionHandler(processor, yield* makeRecordProcessor(processor))
      })
    const paths = { statement: yield* handlerOf(statement), transaction: yield* handlerOf(transaction) }
    const offsets = { statement: 0n, transaction: 0n }
    let next = 0
    const rounds: Array<{ readonly path: "statement" | "transaction"; readonly wall_per_event_us: number } & Costs> = []
    for (let round_n = 0; round_n < settings.rounds; round_n++) {
      for (const path of ["statement", "transaction"] as const) {
        const records: Array<KafkaRecord> = settings.messages.slice(next, next + settings.records_per_round).map((message) => {
          const value = typeof message.value === "string" ? message.value : new TextDecoder().decode(message.value)
          const offset = offsets[path]++
          return {
            topic: settings.topic, partition: 0, offset, key: message.key, value, value_bytes: new TextEncoder().encode(value),
            headers: message.headers, timestamp_ms: Date.now()
          }
        })
        next += records.length
        const before = yield* settings.costs.start
        const started_ms = performance.now()
        for (const record of records) yield* paths[path]([record])
        const wall_ms = performance.now() - started_ms
        const costs = yield* settings.costs.end(before, records.length)
        // CPU from /proc only: pg_stat_database's commit counter lags by its stats interval, too
        // coarse for a round of a second or two.
        rounds.push({
          path, node_cpu_per_event_us: costs.node_cpu_per_event_us, postgres_cpu_per_event_us: costs.postgres_cpu_per_event_us,
          wall_per_event_us: round((wall_ms * 1_000) / records.length)
        })
      }
    }
    const mean = (path: "statement" | "transaction", pick: (costs: Costs & { readonly wall_per_event_us: number }) => number) => {
      const of = rounds.filter((entry) => entry.path === path)
      return round(of.reduce((sum, entry) => sum + pick(entry), 0) / of.length)
    }
    const summary = (path: "statement" | "transaction") => ({
      node_cpu_per_event_us: mean(path, (entry) => entry.node_cpu_per_event_us),
      postgres_cpu_per_event_us: mean(path, (entry) => entry.postgres_cpu_per_event_us),
      wall_per_event_us: mean(path, (entry) => entry.wall_per_event_us)
    })
    const one = summary("statement")
    const four = summary("transaction")
    return {
      records_per_round: settings.records_per_round,
      rounds,
      statement: one,
      transaction: four,
      // Below 1: the one-statement path costs less.
      statement_to_transaction: {
        node_cpu: round(one.node_cpu_per_event_us / four.node_cpu_per_event_us, 2),
        postgres_cpu: round(one.postgres_cpu_per_event_us / four.postgres_cpu_per_event_us, 2),
        wall: round(one.wall_per_event_us / four.wall_per_event_us, 2)
      }
    }
  })
