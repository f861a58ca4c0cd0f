import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { HttpRouter } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import { createServer } from "node:http"
import { boundedInt } from "../BoundedConfig.ts"

/**
 * `METRICS_PORT`: where `/metrics` is served. `0` (the default): on the API's own port, next to
 * the merchants' routes (convenient locally). Any other port: on a listener of its own, on
 * loopback, and NOT on the API port — merchants (or anyone who reaches the API) cannot read the
 * platform's figures; Prometheus scrapes the metrics port from inside the host or pod network.
 * The separate outbox publisher process serves its metrics only this way.
 */
export const MetricsPort = boundedInt("METRICS_PORT", { min: 0, max: 65_535 }, 0)

/** Effect's Prometheus exposition of every metric of this process, as a route. */
export const metricsRoute = PrometheusMetrics.layerHttp({ path: "/metrics" })

/** `/metrics` alone, on its own loopback listener at `port`. */
export const metricsServerLayer = (port: number): Layer.Layer<never> =>
  HttpRouter.serve(metricsRoute, { disableLogger: true }).pipe(
    Layer.provide(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" })),
    Layer.orDie
  )

/** The metrics listener when `METRICS_PORT` is set; nothing otherwise. */
export const MetricsServerLive = Layer.unwrap(
  Effect.map(MetricsPort, (port) => (port === 0 ? Layer.empty : metricsServerLayer(port)))
)
