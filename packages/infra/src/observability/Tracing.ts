import { Config, Duration, Effect, Layer, Option, Tracer } from "effect"
import { FetchHttpClient, HttpClient, HttpClientError } from "effect/http"
import { OtlpExporter, OtlpSerialization, OtlpTracer } from "effect/observability"
import { boundedInt, boundedString } from "../BoundedConfig.ts"
import { withoutApiKeys } from "./Correlation.ts"

/**
 * Spans leave the process over OTLP/HTTP (JSON) only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
 * (e.g. `http://127.0.0.1:4318`; spans go to `<endpoint>/v1/traces`). Off by default: without
 * an exporter Effect's spans still give trace ids to the logs and the outbox rows, and cost no
 * network. Effect's own exporter (`effect/observability`), not the OpenTelemetry SDK: see
 * docs/adr (observability) for why.
 */
export const tracingBounds = {
  endpoint: { length_max: 500, pattern: /^https?:\/\/[^\s]+$/, expected: "an http(s) URL" },
  serviceName: { length_max: 100, pattern: /^[A-Za-z0-9._-]+$/, expected: "letters, digits, '.', '_' or '-'" },
  exportInterval_ms: { min: 100, max: 60_000 },
  exportBatchSize_max: { min: 1, max: 10_000 },
  shutdownTimeout_ms: { min: 100, max: 30_000 },
  exportTimeout_ms: { min: 100, max: 60_000 },
  /** Per mille of root traces kept (1000: all). */
  sampledTraces_permille: { min: 0, max: 1_000 }
} as const

export interface TracingOptions {
  /** The OTLP/HTTP base URL; `undefined`: no export. */
  readonly endpoint: string | undefined
  readonly serviceName: string
  readonly exportInterval_ms: number
  readonly exportBatchSize_max: number
  readonly shutdownTimeout_ms: number
  /**
   * Each export request's bound (its answer included). Effect's exporter has none: a collector that
   * accepts connections and never answers held every batch's request (and its spans) for the
   * fetch's own minutes, and a batch is sent every `exportBatchSize_max` spans, so they piled up
   * (outside code review). Timed out, the exporter drops the batch and pauses for 60 s, as when the
   * collector refuses.
   */
  readonly exportTimeout_ms: number
  /**
   * Of the traces this process starts (no sampled parent from the caller), this many per 1000 are
   * exported; a trace the caller sampled (its `traceparent` flag) is always kept, one it did not
   * never. Children follow their root, so a kept trace is whole.
   */
  readonly sampledTraces_permille: number
}

export const TracingSettings = (serviceNameFallback: string) =>
  Config.all({
    endpoint: Config.option(boundedString("OTEL_EXPORTER_OTLP_ENDPOINT", tracingBounds.endpoint, "")).pipe(
      Config.map((value) => Option.getOrUndefined(Option.filter(value, (url) => url.length > 0)))
    ),
    serviceName: boundedString("OTEL_SERVICE_NAME", tracingBounds.serviceName, serviceNameFallback),
    exportInterval_ms: boundedInt("OTEL_EXPORT_INTERVAL_MS", tracingBounds.exportInterval_ms, 1_000),
    exportBatchSize_max: boundedInt("OTEL_EXPORT_BATCH_SIZE_MAX", tracingBounds.exportBatchSize_max, 1_000),
    shutdownTimeout_ms: boundedInt("OTEL_SHUTDOWN_TIMEOUT_MS", tracingBounds.shutdownTimeout_ms, 3_000),
    // The OpenTelemetry SDKs' name and default (10 s) for the same bound.
    exportTimeout_ms: boundedInt("OTEL_EXPORTER_OTLP_TIMEOUT", tracingBounds.exportTimeout_ms, 10_000),
    sampledTraces_permille: boundedInt("OTEL_TRACES_SAMPLED_PERMILLE", tracingBounds.sampledTraces_permille, 1_000)
  })

/**
 * Head sampling of root spans (the decision is taken once per trace, at its first span); Effect
 * already makes children of an unsampled span unsampled, and the OTLP tracer exports only sampled
 * spans. Ids are still generated for every span: logs keep their trace ids.
 */
export const sampleRoots = (inner: Tracer.Tracer, permille: number): Tracer.Tracer =>
  permille >= 1_000
    ? inner
    : Tracer.make({
        span: (options) =>
          inner.span(
            Option.isNone(options.parent) ? { ...options, sampled: options.sampled && Math.random() * 1_000 < permille } : options
          ),
        context: inner.context
      })

/**
 * Every exported span's string attributes without API keys (`withoutApiKeys`), checked when the
 * span ends, after the last attribute is set: the HTTP tracer records the URL as received
 * (`url.full`, `url.path`, `url.query`) at the very end of the request, and a client that put its
 * key in the query (`?api_key=`) or in the path had it exported in full (outside security review).
 * A span is changed in place just before it ends (its own `attribute`, so the exporter sees the
 * redacted value); nothing is redacted when nothing matches.
 */
export const redactingApiKeys = (inner: Tracer.Tracer): Tracer.Tracer =>
  Tracer.make({
    span: (options) => {
      const span = inner.span(options)
      const end = span.end.bind(span)
      span.end = (endTime, exit) => {
        for (const [key, value] of span.attributes) {
          if (typeof value !== "string") continue
          const redacted = withoutApiKeys(value)
          if (redacted !== value) span.attribute(key, redacted)
        }
        end(endTime, exit)
      }
      return span
    },
    context: inner.context
  })

/** Fetch, each request (its answer included) bounded by `timeout_ms`: interrupted, the request is aborted. */
const boundedFetch = (timeout_ms: number): Layer.Layer<HttpClient.HttpClient> =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.gen(function* () {
      const client = yield* HttpClient.HttpClient
      return HttpClient.transform(client, (response, request) =>
        response.pipe(
          Effect.timeout(Duration.millis(timeout_ms)),
          // The client's own error, so the exporter treats it as it treats a refused connection.
          Effect.catchTag("TimeoutError", () =>
            Effect.fail(new HttpClientError.HttpClientError({
              reason: new HttpClientError.TransportError({ request, description: `no answer within ${timeout_ms} ms (OTEL_EXPORTER_OTLP_TIMEOUT)` })
            })))
        ))
    })
  ).pipe(Layer.provide(FetchHttpClient.layer))

/** The OTLP span exporter for `options`, or nothing when no endpoint is configured. */
export const tracingLayerWith = (options: TracingOptions): Layer.Layer<never> =>
  options.endpoint === undefined
    ? Layer.empty
    : Layer.effect(
        Tracer.Tracer,
        OtlpTracer.make({
          url: `${options.endpoint.replace(/\/+$/, "")}/v1/traces`,
          resource: { serviceName: options.serviceName },
          exportInterval: options.exportInterval_ms,
          maxBatchSize: options.exportBatchSize_max,
          shutdownTimeout: options.shutdownTimeout_ms
        }).pipe(Effect.map((tracer) => sampleRoots(redactingApiKeys(tracer), options.sampledTraces_permille)))
      ).pipe(
        Layer.provideMerge(OtlpExporter.layerFlusher),
        Layer.provide(OtlpSerialization.layerJson),
        Layer.provide(boundedFetch(options.exportTimeout_ms))
      )

/** The exporter as configured by the environment (`serviceName` when `OTEL_SERVICE_NAME` is unset). */
export const TracingLive = (serviceName: string): Layer.Layer<never, Config.ConfigError> =>
  Layer.unwrap(Effect.map(TracingSettings(serviceName), tracingLayerWith))
