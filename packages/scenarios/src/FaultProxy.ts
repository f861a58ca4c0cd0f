import { createConnection, createServer, type Server, type Socket } from "node:net"
import { Effect, Schema } from "effect"

export class FaultProxyError extends Schema.TaggedError<FaultProxyError>()("FaultProxyError", { message: Schema.String }) {}

/** `pass`: bytes flow; `refuse`: new connections are closed at once; `blackhole`: accepted, never answered. */
export type ProxyMode = "pass" | "refuse" | "blackhole"

/**
 * A loopback TCP proxy in front of one dependency (Postgres, Redis, a Kafka listener): clients
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
}

interface Pair {
  readonly client: Socket
  readonly upstream: Socket | undefined
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
      let cut = 0
      const server = createServer((client) => {
        client.on("error", () => undefined)
        if (mode === "refuse") return void client.destroy()
        if (mode === "blackhole") {
          const pair: Pair = { client, upstream: undefined }
          pairs.add(pair)
          client.once("close", () => pairs.delete(pair))
          return
        }
        const upstream = createConnection({ host: targetHost, port: targetPort })
        upstream.on("error", () => undefined)
        const pair: Pair = { client, upstream }
        pairs.add(pair)
        const close = () => {
          pairs.delete(pair)
          client.destroy()
          upstream.destroy()
        }
        client.once("close", close)
        upstream.once("close", close)
        client.pipe(upstream)
        upstream.pipe(client)
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
