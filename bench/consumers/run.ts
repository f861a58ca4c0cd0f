/**
 * Consumers benchmark (a script, not a test): `node bench/consumers/run.ts` (or `pnpm bench:consumers`).
 *
 * Needs the local stack (Postgres, Kafka on 127.0.0.1). Everything it creates (a database
 * `pay_bench_c_<id>`, topics `bench.<id>.*`, groups) is removed at the end.
 *
 *   A. raw consumer: our KafkaConsumer in a group of its own reads the backlog of BENCH_EVENTS
 *      records (payment_created/authorized/settled, as the publisher writes them) with no effect,
 *      committing as the consumer does (every CONSUMER_KAFKA_COMMIT_INTERVAL_MS): the reference
 *      throughput. Also with a synchronous commit after every poll (the earlier, slower baseline,
 *      kept for comparison). After B, both again (A'): the ratio uses the mean of A and A'.
 *   B. the settlement consumer on the same backlog (one Postgres transaction per partition slice of
 *      a poll: processed_events, versions, projection, offset; Kafka commit per batch): events/s and the
 *      ratio to A (issue 14's target: ≥ 0.5).
 *   C. replay from offset 0 (`rebuildSettlement`: a new generation, then the swap): time and events/s;
 *      the rebuilt projection is checked equal to B's.
 *   E. a quiet stream's cost (bench/consumers/quiet.ts, BENCH_QUIET=0 skips it): one record per
 *      slice through the settlement consumer's one-statement path and its transaction's path,
 *      alternated: CPU of this process and of Postgres, and wall time, per record.
 *   D. a sustained API stream (bench/consumers/stream.ts) against a real server process (publisher
 *      inside) and the consumers in their own process (BENCH_CONSUMERS=process, default; "server":
 *      inside the server): settle (HTTP 200) → projection latency p50/p99 (issue 14's target: p99 ≤ 250 ms).
 * B and C also report `costs`: CPU per event of this process and of the bench database's
 * Postgres backends (from /proc), the machine's busy share, and events per committed transaction.
 * Results: bench/results/consumers-<time>.json.
 *
 * Environment: DATABASE_URL (any database on the server), KAFKA_BROKERS, REDIS_URL, BENCH_EVENTS
 * (100 000), BENCH_STREAM (1; 0 skips D), BENCH_CPU_PROFILE (a folder: phase B's CPU profile of this process is written
 * there as a .cpuprofile, sampled every 100 µs), CONSUMER_TRANSACTION_RECORDS_MAX, CONSUMER_BATCH_SIZE and
 * CONSUMER_KAFKA_COMMIT_INTERVAL_MS (the consumers' defaults; the raw consumer polls the same batch
 * size and commits on the same interval), BENCH_DURATION_S (20) and BENCH_CONCURRENCY (4) for D.
 */
import { Cause, Duration, Effect, Fiber, Layer, Logger, References, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomBytes } from "node:crypto"
import { mkdirSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import { cpus, loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import {
  defaultKafkaAdminTimeouts,
  defaultKafkaConsumerOptions,
  defaultKafkaProducerLimits,
  KafkaAdmin,
  KafkaConsumer,
  KafkaProducer,
  type KafkaRecord,
  MigrationsLive,
  postgresLayer,
  type ProducerMessage
} from "../../packages/infra/src/index.ts"
import { newOutboxEventId, OutboxTopics, paymentsEventsTopic, toEventRecord } from "../../packages/outbox/src/index.ts"
import {
  behindTarget,
  defaultConsumerOptions,
  makeSettlementProjection,
  rebuildSettlement,
  runConsumer
} from "../../packages/consumers/src/index.ts"
import { cleanupKafkaPrefix } from "../../packages/testkit/src/cleanupKafka.ts"
import { cleanupRedisPrefix } from "../../packages/testkit/src/cleanupRedis.ts"
import { machineTicks, processTicks, userHz } from "../support/procCpu.ts"
import { quietSlices } from "./quiet.ts"
import { apiStreamLatency } from "./stream.ts"

const envInt = (name: string, fallback: number, min: number, max: number): number => {
  const raw = process.env[name]
  const value = raw === undefined ? fallback : Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer in ${min}..${max}, got ${raw}`)
  return value
}

const events_n = envInt("BENCH_EVENTS", 100_000, 300, 1_000_000)
const batch_max = envInt("CONSUMER_BATCH_SIZE", defaultConsumerOptions.batch_max, 1, 1_000)
const transactionRecords_max = envInt("CONSUMER_TRANSACTION_RECORDS_MAX", defaultConsumerOptions.transactionRecords_max, 1, 1_000)
const streamPhase = envInt("BENCH_STREAM", 1, 0, 1) === 1
const quietPhase = envInt("BENCH_QUIET", 1, 0, 1) === 1
const kafkaCommitInterval_ms = envInt("CONSUMER_KAFKA_COMMIT_INTERVAL_MS", defaultConsumerOptions.kafkaCommitInterval_ms, 0, 60_000)
const duration_s = envInt("BENCH_DURATION_S", 20, 1, 600)
const concurrency = envInt("BENCH_CONCURRENCY", 4, 1, 256)
const consumersPlacement = process.env["BENCH_CONSUMERS"] ?? "process"
if (consumersPlacement !== "process" && consumersPlacement !== "server") throw new Error(`BENCH_CONSUMERS must be process or server, got ${consumersPlacement}`)
const cpuProfileDirectory = process.env["BENCH_CPU_PROFILE"]
const redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379/0"
const baseDatabaseUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/payments"
const brokers = process.env["KAFKA_BROKERS"] ?? "127.0.0.1:9092"
const runId = randomBytes(4).toString("hex")
const databaseName = `pay_bench_c_${runId}`
const prefix = `bench.${runId}.`
const topic = paymentsEventsTopic(prefix)
const timeout = Duration.minutes(30)

const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}
const log = (message: string) => Effect.sync(() => console.error(`[bench] ${message}`))
const round = (value: number, digits = 1) => Number(value.toFixed(digits))

const adminDatabase = postgresLayer({ url: Redacted.make(withDatabase(baseDatabaseUrl, "postgres")), maxConnections: 1, applicationName: "pay-bench-admin" })
const createBenchDatabase = Effect.acquireRelease(
  Effect.gen(function* () {
    yield* (yield* SqlClient.SqlClient).unsafe(`CREATE DATABASE ${databaseName}`)
  }).pipe(Effect.provide(adminDatabase)),
  () => Effect.gen(function* () {
    yield* (yield* SqlClient.SqlClient).unsafe(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`)
  }).pipe(Effect.provide(adminDatabase), Effect.orDie)
)

/** The id alphabet (Crockford-like base32: no i, l, o, u), 24 characters. */
const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
const idBody = (n: number): string => {
  let body = ""
  for (let rest = n; body.length < 24; rest = Math.floor(rest / 32)) body = (alphabet[rest % 32] ?? "0") + body
  return body
}

/** payment_created → authorized → settled for events_n / 3 payments over 20 merchants, 2 currencies. */
const backlog = (): Array<ProducerMessage> => {
  const messages: Array<ProducerMessage> = []
  const merchants = Array.from({ length: 20 }, (_, index) => `mer_${String(index).padStart(24, "0")}`)
  let instant_ms = Date.parse("2026-12-01T00:00:00.000Z")
  for (let n = 0; messages.length + 3 <= events_n; n++) {
    const amount_minor = 100 + (n % 9_000)
    const fee_minor = Math.floor(amount_minor / 40)
    const common = { payment_id: `pay_${idBody(n)}`, merchant_id: merchants[n % 20], amount_minor, currency: n % 2 === 0 ? "EUR" : "USD" }
    const payloads = [
      { type: "payment_created", ...common, version: 1, status: "CREATED" },
      { type: "payment_authorized", ...common, version: 2, previous_status: "CREATED", status: "AUTHORIZED" },
      { type: "payment_settled", ...common, version: 3, previous_status: "AUTHORIZED", status: "SETTLED", fee_minor, net_minor: amount_minor - fee_minor }
    ]
    for (const payload of payloads) {
      const record = toEventRecord({
        id: newOutboxEventId(), position: 0n, aggregate_type: "payment", aggregate_id: common.payment_id, event_type: payload.type,
        event_version: 1, payload: { ...payload, occurred_at: new Date((instant_ms += 1)).toISOString() }, headers: { correlation_id: "bench" },
        created_at: new Date(instant_ms), attempt_count: 0
      })
      messages.push({ topic, key: record.key, value: record.value, headers: record.headers })
    }
  }
  return messages
}

/**
 * The raw consumer: our KafkaConsumer in a group of its own, no effect. `commitEvery_ms` null:
 * a synchronous commit after every poll (the baseline of the earlier runs: a round trip per
 * batch_max records that the consumer, committing every kafkaCommitInterval_ms in the
 * background, does not pay, so it flattered the ratio); a number: the consumer's own policy
 * (the handled offsets every that many ms, and at the end).
 */
const rawConsumer = (count: number, commitEvery_ms: number | null, group: string) =>
  Effect.scoped(Effect.gen(function* () {
    const subscription = yield* (yield* KafkaConsumer).subscribe({ groupId: `${prefix}${group}`, topics: [topic] })
    let seen = 0
    let lastCommit_ms = Date.now()
    // The highest record per partition since the last commit (as the consumer's makeKafkaCommits keeps).
    const uncommitted = new Map<number, KafkaRecord>()
    while (seen < count) {
      const records = yield* subscription.poll({ maxRecords: batch_max, timeout_ms: 500 })
      if (records.length === 0) continue
      seen += records.length
      if (commitEvery_ms === null) {
        yield* subscription.commit(records)
        continue
      }
      for (const record of records) uncommitted.set(record.partition, record)
      if (Date.now() - lastCommit_ms >= commitEvery_ms) {
        yield* subscription.commit([...uncommitted.values()])
        uncommitted.clear()
        lastCommit_ms = Date.now()
      }
    }
    if (uncommitted.size > 0) yield* subscription.commit([...uncommitted.values()])
    return seen
  }))

/** Two generations' projection rows are the same (bigints compared as text). */
const sameRows = (a: ReadonlyArray<unknown>, b: ReadonlyArray<unknown>): boolean => {
  const text = (rows: ReadonlyArray<unknown>) => JSON.stringify(rows, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))
  return text(a) === text(b)
}

const XactRow = Schema.Struct({ pid: Schema.NullOr(Schema.Number), commits: Schema.NumberFromString })

/**
 * Where a phase's CPU went: this process (process.cpuUsage), the bench database's Postgres
 * backends (their /proc CPU: the server runs on this machine, on loopback), the whole machine,
 * and the database's committed transactions (pg_stat_database, whose counters lag by up to
 * stats_fetch interval: read after pg_stat_clear_snapshot). A backend that exits during the phase
 * takes its CPU with it (the pool keeps them 30 s idle: a phase's own stay).
 */
const costSampler = (sql: SqlClient.SqlClient, database: string) => {
  const read = Effect.gen(function* () {
    yield* sql`SELECT pg_stat_clear_snapshot()`
    const rows = yield* Schema.decodeUnknownEffect(Schema.Array(XactRow))(yield* sql`
      SELECT a.pid, d.xact_commit::text AS commits FROM pg_stat_database d LEFT JOIN pg_stat_activity a ON a.datname = d.datname
      WHERE d.datname = ${database}`)
    const pids = rows.flatMap((row) => (row.pid === null ? [] : [row.pid]))
    const backends = new Map(pids.map((pid) => [pid, processTicks([pid])]))
    return { node: process.cpuUsage(), backends, machine: machineTicks(), commits: rows[0]?.commits ?? 0, at_ms: performance.now() }
  })
  return {
    start: read,
    /** The phase's costs per event handled. */
    end: (before: Effect.Success<typeof read>, events: number) =>
      Effect.map(read, (after) => {
        let postgresTicks = 0
        for (const [pid, ticks] of after.backends) postgresTicks += ticks - (before.backends.get(pid) ?? 0)
        const postgres_s = postgresTicks / userHz
        const node_s = (after.node.user - before.node.user + after.node.system - before.node.system) / 1e6
        const machine_s = (after.machine.busy - before.machine.busy) / userHz
        const wall_s = (after.at_ms - before.at_ms) / 1_000
        const per_event_us = (seconds: number) => round((seconds * 1e6) / events, 1)
        return {
          node_cpu_per_event_us: per_event_us(node_s),
          postgres_cpu_per_event_us: per_event_us(postgres_s),
          machine_cpu_per_event_us: per_event_us(machine_s),
          machine_busy_share: round(machine_s / (wall_s * cpus().length), 2),
          transactions: after.commits - before.commits,
          events_per_transaction: round(events / Math.max(1, after.commits - before.commits), 1)
        }
      })
  }
}

/** Phase B under the inspector's sampling profiler when BENCH_CPU_PROFILE names a folder. */
const profiled = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  if (cpuProfileDirectory === undefined) return effect
  const session = new Session()
  return Effect.acquireUseRelease(
    Effect.promise(async () => {
      session.connect()
      await session.post("Profiler.enable")
      await session.post("Profiler.setSamplingInterval", { interval: 100 })
      await session.post("Profiler.start")
    }),
    () => effect,
    () => Effect.promise(async () => {
      const { profile } = await session.post("Profiler.stop")
      mkdirSync(cpuProfileDirectory, { recursive: true })
      writeFileSync(`${cpuProfileDirectory}/${name}-${runId}.cpuprofile`, JSON.stringify(profile))
      session.disconnect()
    })
  )
}

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const started = performance.now()
    const value = yield* effect.pipe(Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.die(new Error("phase timed out")) }))
    return { value, elapsed_ms: performance.now() - started }
  })

const program = Effect.gen(function* () {
  yield* createBenchDatabase
  const options = { ...defaultConsumerOptions, batch_max, transactionRecords_max, kafkaCommitInterval_ms, pollTimeout_ms: 200 }
  const database = MigrationsLive.pipe(Layer.provideMerge(postgresLayer({ url: Redacted.make(withDatabase(baseDatabaseUrl, databaseName)), maxConnections: 4 })))
  const kafka = Layer.mergeAll(
    KafkaAdmin.layerWith({ brokers, clientId: "pay-bench-admin", ...defaultKafkaAdminTimeouts }),
    KafkaProducer.layerWith({ brokers, clientId: "pay-bench-producer", ...defaultKafkaProducerLimits }),
    KafkaConsumer.layerWith({ brokers, clientId: "pay-bench-consumer", ...defaultKafkaConsumerOptions })
  )
  return yield* Effect.gen(function* () {
    yield* OutboxTopics.ensure(prefix)
    const messages = backlog()
    yield* log(`producing ${messages.length} events to ${topic}`)
    const producer = yield* KafkaProducer
    for (let start = 0; start < messages.length; start += 1_000) yield* producer.send(messages.slice(start, start + 1_000))

    const load: Record<string, ReadonlyArray<number>> = { start: loadavg().map((value) => round(value, 2)) }
    const mark = (phase: string) => Effect.sync(() => {
      load[phase] = loadavg().map((value) => round(value, 2))
    })
    yield* log(`A. raw consumer (load ${loadavg().map((value) => value.toFixed(2)).join(" ")})`)
    const raw = yield* timed(rawConsumer(messages.length, null, "raw"))
    yield* mark("after_raw")
    const rawFair = yield* timed(profiled("raw", rawConsumer(messages.length, kafkaCommitInterval_ms, "raw-fair")))
    yield* mark("after_raw_same_commits")
    yield* log("B. settlement consumer")
    const sql = yield* SqlClient.SqlClient
    const target = yield* (yield* KafkaConsumer).endOffsets(topic)
    const projection = makeSettlementProjection(sql)
    const costs = costSampler(sql, databaseName)
    const beforeLive = yield* costs.start
    const live = yield* timed(profiled("consumer", runConsumer({
      handler: projection.handler(1), topic, groupId: `${prefix}settlement.g1`, dlqTopic: null, options,
      keepGoing: behindTarget(sql, "settlement.g1", topic, target),
      // The end check is the harness's, not the consumer's: a query of the stored offsets, at most
      // every 100 ms while records flow (as the rebuild of phase C asks it), not before every poll.
      keepGoingInterval_ms: 100
    })))
    const liveCosts = yield* costs.end(beforeLive, messages.length)
    yield* mark("after_consumer")
    // B again, warm: the same consumer code a second time, in a group and generation of its own, on
    // the same backlog. The raw reader's measured runs follow a first read (A, A'), so its code is
    // compiled when measured; B above is the consumer's first run in this process (cold start).
    yield* log("B'. settlement consumer again (warm)")
    const warmGeneration = yield* projection.nextGeneration
    const beforeWarm = yield* costs.start
    const warmHandler = projection.handler(warmGeneration)
    const warm = yield* timed(runConsumer({
      handler: warmHandler, topic, groupId: `${prefix}settlement.warm`, dlqTopic: null, options,
      keepGoing: behindTarget(sql, warmHandler.name, topic, target),
      keepGoingInterval_ms: 100
    }))
    const warmCosts = yield* costs.end(beforeWarm, messages.length)
    const warmEqual = sameRows(yield* projection.rows(1), yield* projection.rows(warmGeneration))
    yield* mark("after_consumer_warm")
    // The raw consumer again, right after: the machine's load moves, the ratio uses both runs.
    yield* log("A'. raw consumer again")
    const rawAfter = yield* timed(rawConsumer(messages.length, null, "raw-after"))
    const rawFairAfter = yield* timed(rawConsumer(messages.length, kafkaCommitInterval_ms, "raw-fair-after"))
    yield* mark("after_raw_again")
    yield* log("C. replay from offset 0")
    const beforeReplay = yield* costs.start
    const replay = yield* timed(rebuildSettlement({ topic, prefix, dlqTopic: null, options, timeout_ms: 30 * 60_000 }))
    const replayCosts = yield* costs.end(beforeReplay, messages.length)
    const equal = sameRows(yield* projection.rows(1), yield* projection.rows((yield* projection.live).generation))
    yield* mark("after_replay")
    yield* log(quietPhase ? "E. a quiet stream: one record per slice, one statement vs a transaction" : "E. skipped (BENCH_QUIET=0)")
    const quiet = !quietPhase ? null : yield* quietSlices({
      messages, records_per_round: Math.min(600, Math.floor(messages.length / 4)), rounds: 2, topic: `${topic}.quiet`, options, costs
    })
    yield* mark("after_quiet")
    yield* log(streamPhase ? `D. sustained API stream (${duration_s} s, ${concurrency} clients), consumers in the ${consumersPlacement}` : "D. skipped (BENCH_STREAM=0)")
    const stream = !streamPhase ? null : yield* apiStreamLatency({
      databaseUrl: withDatabase(baseDatabaseUrl, databaseName), brokers, prefix, redisUrl, redisPrefix: `bench:${runId}:`, duration_s, concurrency,
      consumers: consumersPlacement
    }).pipe(Effect.ensuring(Effect.promise(() => Effect.runPromise(cleanupRedisPrefix(redisUrl, `bench:${runId}:`)).catch(() => undefined))))
    yield* mark("after_stream")
    const rate = (elapsed_ms: number) => round(messages.length / (elapsed_ms / 1_000))
    const result = {
      benchmark: "consumers",
      at: new Date().toISOString(),
      // os.loadavg() (1, 5, 15 min) at the start and after each phase: the machine is shared.
      machine: { cpus: cpus().length, loadavg: load },
      settings: {
        events: messages.length, batch_max, partitions: target.length, transactionRecords_max: options.transactionRecords_max,
        kafkaCommitInterval_ms: options.kafkaCommitInterval_ms, stream_consumers: consumersPlacement
      },
      // Baseline (issue 14's "raw consumer"): the same client, batch size and Kafka commit policy
      // as the consumer (every kafkaCommitInterval_ms), no effect; run before and after B.
      raw_consumer_same_commits: { elapsed_ms: round(rawFair.elapsed_ms), events_per_s: rate(rawFair.elapsed_ms) },
      raw_consumer_same_commits_after: { elapsed_ms: round(rawFairAfter.elapsed_ms), events_per_s: rate(rawFairAfter.elapsed_ms) },
      // The earlier baseline: a synchronous commit after every poll (slower than the consumer's policy).
      raw_consumer_commit_per_poll: { elapsed_ms: round(raw.elapsed_ms), events_per_s: rate(raw.elapsed_ms) },
      raw_consumer_commit_per_poll_after: { elapsed_ms: round(rawAfter.elapsed_ms), events_per_s: rate(rawAfter.elapsed_ms) },
      settlement_consumer: { elapsed_ms: round(live.elapsed_ms), events_per_s: rate(live.elapsed_ms), costs: liveCosts },
      settlement_consumer_warm: {
        elapsed_ms: round(warm.elapsed_ms), events_per_s: rate(warm.elapsed_ms), equals_first: warmEqual, costs: warmCosts
      },
      // Against the mean of the runs before and after the consumer's: the load moves. The first
      // (cold) run of the consumer, then its second (warm) run, as the raw reader's measured runs are.
      ratio_consumer_to_raw: round((rawFair.elapsed_ms + rawFairAfter.elapsed_ms) / 2 / live.elapsed_ms, 3),
      ratio_consumer_warm_to_raw: round((rawFair.elapsed_ms + rawFairAfter.elapsed_ms) / 2 / warm.elapsed_ms, 3),
      ratio_consumer_to_raw_commit_per_poll: round((raw.elapsed_ms + rawAfter.elapsed_ms) / 2 / live.elapsed_ms, 3),
      replay_from_offset_0: { elapsed_ms: round(replay.elapsed_ms), events_per_s: rate(replay.elapsed_ms), swapped: replay.value.swapped, equals_live: equal, costs: replayCosts },
      quiet_slices: quiet,
      api_stream: stream
    }
    const text = JSON.stringify(result, null, 2)
    console.log(text)
    const directory = fileURLToPath(new URL("../results/", import.meta.url))
    mkdirSync(directory, { recursive: true })
    writeFileSync(`${directory}consumers-${result.at.replaceAll(":", "-").replaceAll(".", "-")}.json`, text + "\n")
    return result
  }).pipe(Effect.provide(Layer.mergeAll(database, kafka)))
}).pipe(
  Effect.scoped,
  Effect.ensuring(Effect.promise(() => Effect.runPromise(cleanupKafkaPrefix(brokers, prefix)).catch(() => undefined))),
  Effect.provide(Logger.layer([Logger.consoleJson])),
  Effect.provideService(References.MinimumLogLevel, "Warn")
)

// SIGINT/SIGTERM interrupt the program, so its finalizers remove the database and the topics.
const fiber = Effect.runFork(program)
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => Effect.runFork(Fiber.interrupt(fiber)))
fiber.addObserver((exit) => {
  if (exit._tag === "Failure") console.error(Cause.pretty(exit.cause))
  process.exit(exit._tag === "Success" ? 0 : 1)
})
