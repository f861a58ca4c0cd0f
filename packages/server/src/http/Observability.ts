import { correlationHttpHeader, correlationIdFrom, CurrentRequestFields, withCorrelationId } from "@pay/infra"
import { Config, Context, Effect, Exit, Layer, Metric } from "effect"
import { type FindMyWay, Headers, HttpEffect, HttpMiddleware, HttpRouter, HttpServerError, HttpServerRequest, HttpServerResponse } from "effect/http"
import { resolveClientAddress, TrustedProxiesConfig } from "./ClientAddress.ts"

/**
 * What every HTTP request gets, whatever its route or outcome (errors, 401s, 404s included):
 * - a correlation id (the client's `X-Request-Id` when acceptable, else a new one), answered in
 *   the `X-Request-Id` response header and written on every log line of the request;
 * - a server span (Effect's HTTP server makes it; named here `<METHOD> <route>`), continuing the
 *   client's `traceparent`;
 * - the RED metrics: `http_server_requests_total` and `http_server_request_duration_seconds` by
 *   method, route template and status;
 * - an access log line at the level `HTTP_ACCESS_LOG` says (a setting, not a fixed cost).
 */

/** `all`: every request at INFO; `errors`: 5xx at ERROR, the rest at DEBUG; `off`: none (5xx are logged by the handlers). */
export const accessLogModes = ["all", "errors", "off"] as const
export type AccessLogMode = (typeof accessLogModes)[number]
export const AccessLogSetting = Config.Literals(accessLogModes, "HTTP_ACCESS_LOG").pipe(Config.withDefault("all" as const))

export const httpRequests = Metric.counter("http_server_requests_total", {
  description: "HTTP requests answered, by method, route template and status",
  incremental: true
})

/** Seconds (Prometheus' base unit); bucket edges around the API's objectives (p99 create < 250 ms). */
export const httpRequestDuration = Metric.histogram("http_server_request_duration_seconds", {
  description: "Time from the request's arrival to its response, in seconds, by method, route template and status",
  boundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
})

/**
 * The route template a request matched (`/v1/payments/:id/settle`): bounded cardinality, unlike
 * the URL. The router puts its `RouteContext` in the request fiber's context when it matches, and
 * the request's frame restores the context only after the middleware; a request no route matched
 * (404) is `unmatched`.
 */
const matchedRoute = (context: Context.Context<never>): string =>
  Context.getOption(context, HttpRouter.RouteContext).pipe((route) => (route._tag === "Some" ? route.value.route.path : "unmatched"))

/** Bound on the (method, route, status) series whose tagged metrics are kept (far above the API's). */
const taggedSeries_max = 1_000

/**
 * The request counter and duration histogram tagged for one (method, route, status), made once:
 * a metric tagged per request computes its series key (attributes sorted and serialized) on every
 * update, twice per request. Bounded: past the bound, tagged per request as before.
 */
const taggedSeries = new Map<string, { readonly requests: Metric.Metric<number, unknown>; readonly duration: Metric.Metric<number, unknown> }>()
const seriesOf = (attributes: { readonly method: string; readonly route: string; readonly status: string }) => {
  const key = `${attributes.method} ${attributes.status} ${attributes.route}`
  const known = taggedSeries.get(key)
  if (known !== undefined) return known
  const made = { requests: Metric.withAttributes(httpRequests, attributes), duration: Metric.withAttributes(httpRequestDuration, attributes) }
  if (taggedSeries.size < taggedSeries_max) taggedSeries.set(key, made)
  return made
}

const accessLog = (mode: AccessLogMode, status: number, attributes: Record<string, unknown>) => {
  if (mode === "off") return Effect.void
  const line = status >= 500 ? Effect.logError("http request") : mode === "all" ? Effect.logInfo("http request") : Effect.logDebug("http request")
  return Effect.annotateLogs(line, attributes)
}

const record = (
  mode: AccessLogMode,
  request: HttpServerRequest.HttpServerRequest,
  exit: Exit.Exit<HttpServerResponse.HttpServerResponse, unknown>,
  duration_s: number,
  fields: Readonly<Record<string, string>>
) =>
  Effect.gen(function* () {
    const context = yield* Effect.context<never>()
    // A failure here (no route: 404; a defect: 500) is answered by the server with the response
    // the cause carries; the same function tells which.
    const status = Exit.isSuccess(exit) ? exit.value.status : HttpServerError.causeResponseStripped(exit.cause)[0].status
    const attributes = { method: request.method, route: matchedRoute(context), status: String(status) }
    const series = seriesOf(attributes)
    yield* Metric.update(series.requests, 1)
    yield* Metric.update(series.duration, duration_s)
    yield* accessLog(mode, status, { ...attributes, ...fields, duration_ms: Math.round(duration_s * 1e6) / 1e3 })
  })

/** The middleware for `HttpRouter.serve` (wraps the whole chain, so it sees every answer). */
export const observeRequests = (mode: AccessLogMode) =>
  HttpMiddleware.make((app) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const correlationId = correlationIdFrom(request.headers[correlationHttpHeader])
      return yield* Effect.gen(function* () {
        // A pre-response handler runs on whatever response is sent, a problem or a defect's 500 too.
        yield* HttpEffect.appendPreResponseHandler((_request, response) =>
          Effect.succeed(HttpServerResponse.setHeader(response, correlationHttpHeader, correlationId))
        )
        yield* Effect.annotateCurrentSpan("correlation_id", correlationId)
        const started_ns = process.hrtime.bigint()
        const fields: Record<string, string> = {}
        // Recorded inside the same region as the app, where the router's RouteContext still is.
        // The request goes on carrying the id it was given (or the one generated here) in its
        // header: whatever reads `x-request-id` further in sees the same id as the logs.
        const identified = request.modify({ headers: Headers.set(request.headers, correlationHttpHeader, correlationId) })
        const exit = yield* Effect.exit(app).pipe(
          Effect.tap((exit) => record(mode, request, exit, Number(process.hrtime.bigint() - started_ns) / 1e9, fields)),
          Effect.provideService(CurrentRequestFields, fields),
          Effect.provideService(HttpServerRequest.HttpServerRequest, identified)
        )
        return yield* exit
      }).pipe(withCorrelationId(correlationId))
    })
  )

/**
 * `HttpRouter.serve` with the observation above instead of Effect's fixed INFO line per request,
 * and inside it the client's address resolved (ClientAddress.ts: `request.remoteAddress` is the
 * client's behind trusted proxies); other `serve` options (e.g. `routerConfig`) pass through.
 */
export const serveObserved = <A, E, R>(
  routes: Layer.Layer<A, E, R>,
  options: { readonly routerConfig?: Partial<FindMyWay.RouterConfig> | undefined } = {}
) =>
  Layer.unwrap(
    Effect.gen(function* () {
      const mode = yield* AccessLogSetting
      const proxies = yield* TrustedProxiesConfig
      const clientAddress = resolveClientAddress(proxies)
      // Outside the observation: a middleware between it and the router would restore the fiber's
      // context before `record` reads the matched route from it.
      return HttpRouter.serve(routes, { ...options, disableLogger: true, middleware: (app) => clientAddress(observeRequests(mode)(app)) })
    })
  )
