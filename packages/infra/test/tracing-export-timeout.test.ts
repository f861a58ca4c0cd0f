// A collector that accepts connections and never answers: each export request ends at
// OTEL_EXPORTER_OTLP_TIMEOUT (the client aborts it), instead of hanging for the fetch's own minutes
// with its batch of spans in memory while the next batches pile up behind it (outside code review:
// Effect's exporter sets no bound of its own). A real socket server, Effect's real exporter.
import { assert, describe, it } from "@effect/vitest"
import { tracingLayerWith } from "@pay/infra"
import { Effect } from "effect"
import { createServer, type Socket } from "node:net"

/** Accepts, reads and never answers; records how long each connection lived. */
const silentCollector = Effect.acquireRelease(
  Effect.callback<{ readonly port: number; readonly lifetimes_ms: Array<number>; readonly opened: () => number; readonly close: () => void }>((resume) => {
    const lifetimes_ms: Array<number> = []
    const sockets = new Set<Socket>()
    let opened = 0
    const server = createServer((socket) => {
      opened++
      sockets.add(socket)
      const since = Date.now()
      socket.on("data", () => undefined)
      socket.on("error", () => undefined)
      socket.on("close", () => {
        sockets.delete(socket)
        lifetimes_ms.push(Date.now() - since)
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({
        port,
        lifetimes_ms,
        opened: () => opened,
        close: () => {
          for (const socket of sockets) socket.destroy()
          server.close()
        }
      }))
    })
  }),
  (collector) => Effect.sync(collector.close)
)

describe("the OTLP exporter's bound", () => {
  it.live("a collector that never answers: the export request is aborted at OTEL_EXPORTER_OTLP_TIMEOUT", () =>
    Effect.scoped(Effect.gen(function* () {
      const collector = yield* silentCollector
      yield* Effect.gen(function* () {
        for (let span = 0; span < 20; span++) yield* Effect.void.pipe(Effect.withSpan(`export-me-${span}`))
        // The batch (10 spans) goes at once; a request cut at 300 ms closes its connection.
        for (let waited = 0; waited < 40 && collector.lifetimes_ms.length === 0; waited++) yield* Effect.sleep("100 millis")
      }).pipe(Effect.provide(tracingLayerWith({
        endpoint: `http://127.0.0.1:${collector.port}`,
        serviceName: "export-timeout-test",
        exportInterval_ms: 100,
        exportBatchSize_max: 10,
        shutdownTimeout_ms: 100,
        exportTimeout_ms: 300,
        sampledTraces_permille: 1_000
      })))
      assert.isAbove(collector.opened(), 0, "the exporter never connected")
      assert.isAbove(collector.lifetimes_ms.length, 0, "the export request was still open after 4 s")
      assert.isBelow(collector.lifetimes_ms[0] ?? Infinity, 2_000)
    })), 30_000)
})
