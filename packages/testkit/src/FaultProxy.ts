import { createConnection, createServer, type Server, type Socket } from "node:net"
import { Effect, Schema } from "effect"

export class FaultProxyError extends Schema.TaggedError<FaultProxyError>()("FaultProxyError", { message: Schema.String }) {}

/**
 * `pass`: bytes flow; `refuse`: new connections are closed at once; `blackhole`: a network
 * partition: new connections are accepted and never answered, and the open ones stop delivering
 * (their bytes are held, both ways, and delivered in order once the mode is `pass` again, as TCP
 * retransmission would after the partition heals). A side that closes during the partition is
 * not seen by the other until the heal either (its FIN is held after its bytes): the database
 * keeps the session, its transaction and its locks, as it does in a real partition.
 */
export type ProxyMode = "pass" | "refuse" | "blackhole"

/**
 * A loopback TCP proxy in front of one dependency (used by the scenarios, the chaos run and the infra tests) (Postgres, Redis, a Kafka listener): clients
 * connect to `port`, the proxy connects to the target. Faults are applied to the sockets only this
 * proxy owns; the dependency itself is never touched.
 */
export interface FaultProxy {
  readonly port: number
  readonly connectionsOpen: () => number
  readonly connectionsCut: () => number
  /** Destroys every open connection (both sides, a TCP reset for the client): a network cut mid-transaction. */
  readonly cutAll: Effect.Effect<number>
  readonly setMode: (mode: ProxyMode) => Effect.Effect<void>
  /**
   * Adds this much latency (0..maxLatency_ms) to every chunk, both ways, on open and new
   * connections: a slow network. Order is kept (a chunk never leaves before the one before it).
   */
  readonly setLatency: (latency_ms: number) => Effect.Effect<void>
}

/** The most latency a proxy adds: bounded so that a slowed connection still moves within client timeouts. */
export const maxLatency_ms = 5_000

interface Pair {
  readonly client: Socket
  readonly upstream: Socket | undefined
  readonly releases: ReadonlyArray<() => void>
  /** A side closed during the partition: the other side is closed after the heal delivers what was held. */
  closeOnHeal: boolean
}

/**
 * Copies `from` to `to`, each chunk held `latency()` ms, or until `release` while `partitioned()`.
 * A chunk's release time is never before the previous chunk's (order kept when the latency drops).
 * What is held at once is bounded by what the peer sends within one latency window (≤ 5 s of
 * loopback traffic of one connection) or during a partition (a client waiting for an answer
 * sends little: the scenario's partitions last seconds).
 */
const forward = (from: Socket, to: Socket, latency: () => number, partitioned: () => boolean) => {
  const held: Array<{ release_ms: number; readonly chunk: Buffer }> = []
  let timer: ReturnType<typeof setTimeout> | undefined
  const pump = () => {
    timer = undefined
    while (held.length > 0 && (held[0]?.release_ms ?? 0) <= Date.now()) {
      const next = held.shift()
      if (next !== undefined && !to.destroyed) to.write(next.chunk)
    }
    const first = held[0]
    if (first !== undefined && Number.isFinite(first.release_ms)) timer = setTimeout(pump, Math.max(0, first.release_ms - Date.now()))
  }
  from.on("data", (chunk: Buffer) => {
    const delay_ms = partitioned() ? Number.POSITIVE_INFINITY : latency()
    // Straight through only when nothing is held (a held chunk must leave first).
    if (delay_ms === 0 && held.length === 0) return void to.write(chunk)
    const last = held[held.length - 1]
    held.push({ release_ms: Math.max(Date.now() + delay_ms, last?.release_ms ?? 0), chunk })
    if (timer === undefined && Number.isFinite(held[0]?.release_ms)) timer = setTimeout(pump, Math.max(0, (held[0]?.release_ms ?? 0) - Date.now()))
  })
  from.once("close", () => {
    if (timer !== undefined) clearTimeout(timer)
  })
  /** The partition healed: what it held leaves now, in order. */
  const release = () => {
    const now = Date.now()
    for (const chunk of held) if (!Number.isFinite(chunk.release_ms)) chunk.release_ms = now
    if (timer !== undefined) clearTimeout(timer)
    pump()
  }
  return release
}

const listen = (server: Server) =>
  Effect.callback<number, FaultProxyError>((resume) => {
    server.once("error", (error) => resume(Effect.fail(new FaultProxyError({ message: error.message }))))
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resume(typeof address === "object" && address !== null ? Effect.succeed(address.port) : Effect.fail(new FaultProxyError({ message: "no port" })))
    })
  })

/** Starts a proxy to `targetHost:targetPort` (scoped: every socket destroyed and the listener closed at the end). */
export const startFaultProxy = (targetHost: string, targetPort: number) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const pairs = new Set<Pair>()
      let mode: ProxyMode = "pass"
      let latency_ms = 0
      let cut = 0
      const server = createServer((client) => {
        client.on("error", () => undefined)
        if (mode === "refuse") return void client.destroy()
        if (mode === "blackhole") {
          const pair: Pair = { client, upstream: undefined, releases: [], closeOnHeal: false }
          pairs.add(pair)
          client.once("close", () => pairs.delete(pair))
          return
        }
        const upstream = createConnection({ host: targetHost, port: targetPort })
        upstream.on("error", () => undefined)
        const partitioned = () => mode === "blackhole"
        const pair: Pair = {
          client,
          upstream,
          releases: [forward(client, upstream, () => latency_ms, partitioned), forward(upstream, client, () => latency_ms, partitioned)],
          closeOnHeal: false
        }
        pairs.add(pair)
        const close = () => {
          if (partitioned()) return void (pair.closeOnHeal = true)
          pairs.delete(pair)
          client.destroy()
          upstream.destroy()
        }
        client.once("close", close)
        upstream.once("close", close)
      })
      const port = yield* listen(server)
      const proxy: FaultProxy = {
        port,
        connectionsOpen: () => pairs.size,
        connectionsCut: () => cut,
        cutAll: Effect.sync(() => {
          const open = [...pairs]
          for (const pair of open) {
            pair.client.resetAndDestroy()
            pair.upstream?.destroy()
          }
          pairs.clear()
          cut += open.length
          return open.length
        }),
        setMode: (next) => Effect.sync(() => {
          mode = next
          if (next === "blackhole") return
          for (const pair of [...pairs]) {
            for (const release of pair.releases) release()
            if (!pair.closeOnHeal) continue
            // After what was held: `end` sends the FIN once the writes above are flushed.
            pairs.delete(pair)
            pair.client.end()
            pair.upstream?.end()
          }
        }),
        setLatency: (next) => Effect.sync(() => {
          latency_ms = Math.max(0, Math.min(maxLatency_ms, Math.round(next)))
        })
      }
      return { proxy, server, pairs }
    }),
    ({ server, pairs }) =>
      Effect.callback<void>((resume) => {
        for (const pair of pairs) {
          pair.client.destroy()
          pair.upstream?.destroy()
        }
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ proxy }) => proxy))

/** A fault proxy in front of the Postgres that `databaseUrl` names, and the same URL through the proxy. */
export const startPostgresProxy = (databaseUrl: string) =>
  Effect.gen(function* () {
    const target = new URL(databaseUrl)
    const proxy = yield* startFaultProxy(target.hostname, Number(target.port || "5432"))
    const viaProxy = new URL(databaseUrl)
    viaProxy.port = String(proxy.port)
    return { proxy, url: viaProxy.toString() }
  })
