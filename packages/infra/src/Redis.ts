import { Context, Effect, Layer, Schema } from "effect"
import IORedis from "ioredis"
import { RedisKeyPrefix, RedisUrl } from "./Config.ts"

/** Redis did not answer, or answered with an error. Callers fall back to Postgres, never guess. */
export class RedisError extends Schema.TaggedError<RedisError>()("RedisError", {
  operation: Schema.String,
  message: Schema.String,
  /**
   * No answer within `commandTimeout_ms` (ioredis' "Command timed out"): a Redis that hangs, not
   * one that refuses. The client's timeout fires before any caller's own, so callers that count
   * timeouts apart read it here (outside operator review: every hang was counted as an error).
   */
  timedOut: Schema.Boolean
}) {}

/** ioredis' words for a command that got no answer within `commandTimeout`. */
const commandTimedOut = (cause: unknown): boolean => cause instanceof Error && cause.message === "Command timed out"

export interface RedisOptions {
  readonly url: string
  /** Prepended to every key this client touches; isolates deployments and test runs. */
  readonly keyPrefix: string
  readonly connectTimeout_ms: number
  /** A command that gets no answer within this fails with RedisError instead of hanging. */
  readonly commandTimeout_ms: number
}

export const defaultRedisTimeouts = { connectTimeout_ms: 1_000, commandTimeout_ms: 250 } as const

/**
 * Redis in front of Postgres: a cache and a lock, never the authority. Every call is bounded in
 * time, the offline queue is off (a down Redis fails fast instead of buffering commands), and
 * reconnects back off up to 2 s, forever, in the background.
 */
export class Redis extends Context.Service<Redis, {
  /** `SET key value NX PX ttl`: true when this call created the key. */
  readonly setIfAbsent: (key: string, value: string, ttl_ms: number) => Effect.Effect<boolean, RedisError>
  readonly set: (key: string, value: string, ttl_ms: number) => Effect.Effect<void, RedisError>
  readonly get: (key: string) => Effect.Effect<string | null, RedisError>
  readonly del: (key: string) => Effect.Effect<number, RedisError>
  readonly ping: Effect.Effect<void, RedisError>
  readonly keyPrefix: string
}>()("infra/Redis") {
  static readonly make = (options: RedisOptions) =>
    Effect.gen(function* () {
      const client = yield* Effect.acquireRelease(
        Effect.sync(
          () =>
            new IORedis.default(options.url, {
              keyPrefix: options.keyPrefix,
              connectTimeout: options.connectTimeout_ms,
              commandTimeout: options.commandTimeout_ms,
              enableOfflineQueue: false,
              maxRetriesPerRequest: 1,
              lazyConnect: false,
              retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000)
            })
        ),
        (redis) => Effect.sync(() => redis.disconnect(false))
      )
      // ioredis reports connection errors as events; the commands themselves fail with RedisError,
      // which is where they are handled.
      client.on("error", () => undefined)
      // Wait (bounded) for the first connection so the first commands do not fail spuriously. A
      // Redis that is down at start-up is not fatal: the platform works without its fast path,
      // and the client keeps reconnecting in the background.
      yield* Effect.callback<void>((resume) => {
        if (client.status === "ready") return resume(Effect.void)
        const onReady = () => resume(Effect.void)
        client.once("ready", onReady)
        return Effect.sync(() => client.off("ready", onReady))
      }).pipe(
        Effect.timeout(options.connectTimeout_ms),
        Effect.catchTag("TimeoutError", () =>
          Effect.logWarning("redis not ready at start-up; continuing without the fast path until it is")
        )
      )

      const call = <A>(operation: string, run: () => Promise<A>) =>
        Effect.tryPromise({
          try: run,
          catch: (cause) =>
            new RedisError({ operation, message: cause instanceof Error ? cause.message : String(cause), timedOut: commandTimedOut(cause) })
        }).pipe(Effect.withSpan(`redis.${operation}`))

      return Redis.of({
        keyPrefix: options.keyPrefix,
        setIfAbsent: (key, value, ttl_ms) =>
          call("set_nx", () => client.set(key, value, "PX", ttl_ms, "NX")).pipe(Effect.map((r) => r === "OK")),
        set: (key, value, ttl_ms) => call("set", () => client.set(key, value, "PX", ttl_ms)).pipe(Effect.asVoid),
        get: (key) => call("get", () => client.get(key)),
        del: (key) => call("del", () => client.del(key)),
        ping: call("ping", () => client.ping()).pipe(Effect.asVoid)
      })
    })

  static readonly layerWith = (options: RedisOptions) => Layer.effect(Redis, Redis.make(options))

  /** Configured from `REDIS_URL` and `REDIS_KEY_PREFIX`. */
  static readonly layer = Layer.unwrap(
    Effect.gen(function* () {
      const url = yield* RedisUrl
      const keyPrefix = yield* RedisKeyPrefix
      return Redis.layerWith({ url, keyPrefix, ...defaultRedisTimeouts })
    })
  )
}
