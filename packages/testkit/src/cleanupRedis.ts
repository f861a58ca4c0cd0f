import { Effect } from "effect"
import IORedis from "ioredis"

/** Deletes every key under the run's prefix (SCAN + DEL in bounded batches of 500). */
export const cleanupRedisPrefix = (url: string, prefix: string) =>
  Effect.tryPromise(async () => {
    const client = new IORedis.default(url, { lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 1 })
    client.on("error", () => undefined)
    try {
      await client.connect()
      let cursor = "0"
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500)
        if (keys.length > 0) await client.del(...keys)
        cursor = next
      } while (cursor !== "0")
    } finally {
      client.disconnect(false)
    }
  })
