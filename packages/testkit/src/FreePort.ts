import { readFileSync } from "node:fs"
import { createServer } from "node:net"

/**
 * A loopback port for a process a test (or a drill) starts and that binds it a moment later.
 *
 * `listen(0)` hands out a port from the kernel's ephemeral range, the same range every outgoing
 * connection (our pools to Postgres, Redis and Kafka, a few hundred a run) takes its local port
 * from: in the half second before the child binds, a connection could take the port, and the
 * child then failed to start with EADDRINUSE (seen once: a scenario's METRICS_PORT). A throwaway
 * instance revived on its old port after a kill had the same window. Ports below that range are
 * never handed out by the kernel, so the pick is made there (from 20000, or the 4,096 ports below the
 * range when it starts lower): at random, probed by listening on it,
 * in a share of the range of its own per Vitest worker (`VITEST_POOL_ID`), and never the same port
 * twice in one process (two picks in a row, the server's port and its metrics port, cannot meet).
 */

/** The kernel's ephemeral range starts here unless it says otherwise (Linux default 32768). */
const ephemeralStartDefault = 32_768
/** Vitest workers this splits the range for (vitest.config.ts runs 2; more only share slices). */
const workerSlices = 4
/** Random probes before giving up: a slice of ~3,000 ports with a few dozen in use. */
const probes_max = 64
/** Ports this process handed out and never hands out again (bounded: the oldest are forgotten). */
const remembered_max = 2_000

const ephemeralStart = (() => {
  try {
    const first = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0])
    return Number.isInteger(first) && first > 2_048 ? first : ephemeralStartDefault
  } catch {
    return ephemeralStartDefault
  }
})()

/** From 20000, or lower when the kernel's range starts below it (never inside that range). */
const lowestPort = Math.max(1_024, Math.min(20_000, ephemeralStart - 4_096))

/** This process's share of [lowestPort, ephemeralStart): by Vitest worker, the whole range elsewhere. */
const slice = (() => {
  const worker = Number(process.env["VITEST_POOL_ID"])
  if (!Number.isInteger(worker) || worker < 1) return { from: lowestPort, to: ephemeralStart }
  const width = Math.floor((ephemeralStart - lowestPort) / workerSlices)
  const from = lowestPort + ((worker - 1) % workerSlices) * width
  return { from, to: from + width }
})()

const handedOut = new Set<number>()

const remember = (port: number) => {
  handedOut.add(port)
  if (handedOut.size > remembered_max) {
    const oldest = handedOut.values().next()
    if (oldest.done !== true) handedOut.delete(oldest.value)
  }
}

/** True when nothing listens on `port` on 127.0.0.1 right now (we could bind it and let it go). */
const bindable = (port: number) =>
  new Promise<boolean>((resolve) => {
    const probe = createServer()
    probe.once("error", () => resolve(false))
    probe.listen({ port, host: "127.0.0.1", exclusive: true }, () => probe.close(() => resolve(true)))
  })

/** A free loopback port below the kernel's ephemeral range; rejects after {@link probes_max} taken ones. */
export const pickFreePort = async (): Promise<number> => {
  for (let probe = 0; probe < probes_max; probe++) {
    const port = slice.from + Math.floor(Math.random() * (slice.to - slice.from))
    if (handedOut.has(port)) continue
    if (await bindable(port)) {
      remember(port)
      return port
    }
  }
  throw new Error(`no free port in ${slice.from}-${slice.to - 1} after ${probes_max} tries`)
}
