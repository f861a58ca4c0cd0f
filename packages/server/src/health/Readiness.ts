import type { DependencyCheck } from "@pay/api"
import { Context, Duration, Effect, Layer, Metric, Schedule } from "effect"
import { SqlClient } from "effect/sql"
import { boundedInt, failureText, KafkaAdmin, KafkaError, KafkaTopicPrefix, Redis, RedisUrl } from "@pay/infra"
import { paymentsEventsPartitions, paymentsEventsTopic } from "@pay/outbox"
import { isSqlError } from "effect/sql/SqlError"
import type { ConfigError } from "effect/Config"

/** One dependency's check: succeeds when it answers, fails with the reason when it does not. */
export interface Probe {
  readonly name: string
  /** Down, it makes the instance unready (503); not required, it is only reported (`degraded`). */
  readonly required: boolean
  readonly check: Effect.Effect<void, unknown>
}

/** Each probe gets this long; readiness never hangs on a dependency that does not answer. */
export const probeTimeout_ms = 1_000

/**
 * `READINESS_CACHE_MS`: one round of probes answers every `/health/ready` for this long (and
 * concurrent requests share the round in flight), so a load balancer, or anyone on the network,
 * polling it cannot turn it into load on Postgres, Redis and Kafka. 0 probes on every request.
 */
export const ReadinessCache_ms = boundedInt("READINESS_CACHE_MS", { min: 0, max: 10_000 }, 1_000)

/**
 * `READINESS_WATCH_INTERVAL_MS`: the server runs a round of probes this often by itself, so a
 * dependency going down or coming back is logged (and `readiness_dependency_up` moves) when it
 * happens, not when someone next asks `/health/ready` (outside on-call drill: with no balancer
 * polling, the WARN came minutes late or never). 0: only when asked.
 */
export const ReadinessWatchInterval_ms = boundedInt("READINESS_WATCH_INTERVAL_MS", { min: 0, max: 600_000 }, 5_000)

/** 1 when the dependency answered the last round of probes, 0 when it did not. */
export const readinessDependencyUp = Metric.gauge("readiness_dependency_up", {
  description: "1 when the dependency answered this instance's last readiness probe, 0 when it did not (by dependency; a round every READINESS_WATCH_INTERVAL_MS)"
})

/**
 * The dependencies `/health/ready` checks. A Layer, so tests and fault injection can swap a
 * probe, and the server's wiring decides which real clients back them.
 */
export class Readiness extends Context.Service<Readiness, {
  readonly check: Effect.Effect<ReadonlyArray<DependencyCheck>>
}>()("server/Readiness") {
  static readonly fromProbes = (probes: ReadonlyArray<Probe>) => {
    // Which dependencies the last round found down, and why: their WARN once per reason, then the
    // INFO when back.
    const down = new Map<string, string>()
    return Readiness.of({
      check: Effect.forEach(probes, (probe) => runProbe(probe, down), { concurrency: "unbounded" })
    })
  }

  static readonly postgresProbe = Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const probe: Probe = { name: "postgres", required: true, check: sql`SELECT 1`.pipe(Effect.asVoid) }
    return probe
  })

  static readonly redisProbe = Effect.gen(function* () {
    const redis = yield* Redis
    // Named by where it is (never its password): the client's own words ("Stream isn't writeable
    // and enableOfflineQueue options is false") named neither the address nor the state (outside
    // operator review).
    const target = yield* Effect.orElseSucceed(Effect.map(RedisUrl, redisTarget), () => "REDIS_URL")
    // A cache and a lock in front of Postgres: the API answers without it (slower).
    const probe: Probe = {
      name: "redis",
      required: false,
      check: redis.ping.pipe(Effect.mapError((error) => new Error(`Redis at ${target} did not answer a PING: ${error.message}`)))
    }
    return probe
  })

  static readonly kafkaProbe = Effect.gen(function* () {
    const admin = yield* KafkaAdmin
    const topic = paymentsEventsTopic(yield* KafkaTopicPrefix)
    // Events wait in the outbox while it is down; payments commit. A broker that answers but whose
    // `payments.events` the publisher cannot use publishes nothing either: down too, whether the
    // topic is missing (outside on-call drill: "up" with it deleted), has fewer partitions than the
    // publisher requires (re-test: recreated with 1) or a partition without a leader.
    const probe: Probe = { name: "kafka", required: false, check: Effect.andThen(admin.ping, admin.pingTopic(topic, paymentsEventsPartitions)) }
    return probe
  })

  static readonly layerWith = <R>(probes: ReadonlyArray<Effect.Effect<Probe, ConfigError, R>>) =>
    Layer.effect(
      Readiness,
      Effect.gen(function* () {
        const uncached = Readiness.fromProbes(yield* Effect.all(probes))
        const watch_ms = yield* ReadinessWatchInterval_ms
        if (watch_ms > 0) {
          // Each round logs the transitions itself (runProbe); its answer is not needed here.
          yield* Effect.forkScoped(Effect.repeat(Effect.delay(uncached.check, Duration.millis(watch_ms)), Schedule.forever))
        }
        const cache_ms = yield* ReadinessCache_ms
        if (cache_ms === 0) return uncached
        return Readiness.of({ check: yield* Effect.cachedWithTTL(uncached.check, Duration.millis(cache_ms)) })
      })
    )
}

/**
 * One probe's answer. `/health/ready` is public (a balancer polls it, unauthenticated): its `error`
 * says what kind of failure it is, never where (no address, role, database name or driver text:
 * outside diff review). The reason with those, for the operator, is the server's log: a WARN
 * `readiness: <name> is down` when a dependency goes down, an INFO when it is back.
 */
const runProbe = (probe: Probe, down: Map<string, string>) =>
  Effect.gen(function* () {
    const started = Date.now()
    const outcome = yield* Effect.result(probe.check.pipe(Effect.timeout(Duration.millis(probeTimeout_ms))))
    const latency_ms = Date.now() - started
    yield* Metric.update(Metric.withAttributes(readinessDependencyUp, { dependency: probe.name }), outcome._tag === "Success" ? 1 : 0)
    const wasDown = down.has(probe.name)
    if (outcome._tag === "Success") {
      if (wasDown) {
        down.delete(probe.name)
        yield* Effect.logInfo(`readiness: ${probe.name} is back`)
      }
      const check: DependencyCheck = { name: probe.name, status: "up", required: probe.required, latency_ms }
      return check
    }
    // Logged again when the reason changes (a deleted topic recreated with too few partitions).
    const reason = reasonOf(outcome.failure)
    if (down.get(probe.name) !== reason) {
      down.set(probe.name, reason)
      yield* Effect.logWarning(`readiness: ${probe.name} is down`, { dependency: probe.name, reason })
    }
    const check: DependencyCheck = { name: probe.name, status: "down", required: probe.required, latency_ms, error: publicReasonOf(outcome.failure) }
    return check
  })

/** `host:port` of a Redis URL, without its credentials. */
const redisTarget = (url: string): string => {
  if (!URL.canParse(url)) return "REDIS_URL"
  const parsed = new URL(url)
  return `${parsed.hostname}:${parsed.port === "" ? "6379" : parsed.port}`
}

/** The public kind of a probe's failure: a timeout, or the error's class, nothing that names a host. */
const publicReasonOf = (failure: unknown): string => {
  if (failure instanceof KafkaError && failure.operation === "pingTopic") {
    return "answers, but its events topic is missing, has fewer partitions than the publisher requires, or has a partition without a leader (the topic is in the server's log)"
  }
  if (typeof failure === "object" && failure !== null && "_tag" in failure) {
    if (failure._tag === "TimeoutError") return `no answer within ${probeTimeout_ms} ms`
    if (isSqlError(failure)) return `does not answer (${failure.reason._tag}; the reason is in the server's log)`
    if (typeof failure._tag === "string") return `does not answer (${failure._tag}; the reason is in the server's log)`
  }
  return "does not answer (the reason is in the server's log)"
}

/** The whole reason, for the log: a database failure with the driver's words ("connect ECONNREFUSED 10.0.0.5:5432"). */
const reasonOf = (failure: unknown): string => {
  if (isSqlError(failure)) return failureText(failure)
  if (typeof failure === "object" && failure !== null) {
    if ("_tag" in failure && failure._tag === "TimeoutError") return `no answer within ${probeTimeout_ms} ms`
    if ("message" in failure && typeof failure.message === "string" && failure.message !== "") return failure.message
    if ("_tag" in failure && typeof failure._tag === "string") return failure._tag
  }
  return String(failure)
}
