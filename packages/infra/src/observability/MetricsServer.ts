import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Config, Effect, Layer, Option } from "effect"
import { HttpRouter, HttpServerError } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import { createServer } from "node:http"
import { boundedInt } from "../BoundedConfig.ts"

/**
 * `METRICS_PORT` (default 9464, the usual Prometheus exporter port): `/metrics` is served on a
 * listener of its own, on loopback, and never on the API port: merchants (or anyone who reaches
 * the API) cannot read the platform's figures; Prometheus scrapes it from inside the host or pod
 * network. `0` picks a free port (test servers, several on one machine; the port is logged).
 * The processes that run apart from a server (outbox publisher, consumers, webhook sender) serve
 * their own with `MetricsServerWhenConfigured`.
 */
export const MetricsPort = boundedInt("METRICS_PORT", { min: 0, max: 65_535 }, 9_464)

/** Effect's Prometheus exposition of every metric of this process, as a route. */
export const metricsRoute = PrometheusMetrics.layerHttp({ path: "/metrics" })

const errnoCode = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : undefined

/**
 * Why the listener could not listen, and the way out: the usual cause is a secondary process
 * started with the server's environment, METRICS_PORT included (the listen failure itself is a
 * `ServeError` with an empty message).
 */
const listenFailure = (port: number, error: HttpServerError.ServeError): Error => {
  const code = errnoCode(error.cause)
  const why = code === "EADDRINUSE"
    ? "the port is taken (by the server's metrics listener when this process was started with the server's environment, or by another process)"
    : `${code ?? "listen failed"}: ${error.cause instanceof Error ? error.cause.message : String(error.cause)}`
  const failure = new Error(`METRICS_PORT=${port}: cannot serve /metrics on 127.0.0.1:${port}: ${why}. Set METRICS_PORT to a free port of this process's own, or unset it (a secondary process then serves no /metrics)`)
  failure.name = "MetricsListenFailed"
  return failure
}

/** `/metrics` alone, on its own loopback listener at `port`. */
export const metricsServerLayer = (port: number): Layer.Layer<never> =>
  // The listen log ("Listening on …") says where it is, which matters when the port was 0.
  HttpRouter.serve(metricsRoute, { disableLogger: true }).pipe(
    Layer.provide(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" })),
    Layer.catchCause((cause) => {
      const error = Cause.squash(cause)
      return Layer.effectDiscard(Effect.die(error instanceof HttpServerError.ServeError ? listenFailure(port, error) : error))
    })
  )

/** The metrics listener on `METRICS_PORT`. */
export const MetricsServerLive = Layer.unwrap(Effect.map(MetricsPort, metricsServerLayer))

/**
 * For secondary processes (the outbox publisher, the consumers, the webhook sender) that usually run beside a server on one host:
 * a listener only when `METRICS_PORT` is set explicitly, so that they never take the server's 9464.
 */
export const MetricsServerWhenConfigured = Layer.unwrap(
  Effect.map(Config.option(Config.String("METRICS_PORT")), (set) => (Option.isSome(set) ? MetricsServerLive : Layer.empty))
)
