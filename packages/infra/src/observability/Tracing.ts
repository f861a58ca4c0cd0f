import { Config, Effect, Layer, Option } from "effect"
import { FetchHttpClient } from "effect/http"
import { OtlpSerialization, OtlpTracer } from "effect/observability"
import { boundedInt, boundedString } from "../BoundedConfig.ts"

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
  shutdownTimeout_ms: { min: 100, max: 30_000 }
} as const

export interface TracingOptions {
  /** The OTLP/HTTP base URL; `undefined`: no export. */
  readonly endpoint: string | undefined
  readonly serviceName: string
  readonly exportInterval_ms: number
  readonly exportBatchSize_max: number
  readonly shutdownTimeout_ms: number
}

export const TracingSettings = (serviceNameFallback: string) =>
  Config.all({
    endpoint: Config.option(boundedString("OTEL_EXPORTER_OTLP_ENDPOINT", tracingBounds.endpoint, "")).pipe(
      Config.map((value) => Option.getOrUndefined(Option.filter(value, (url) => url.length > 0)))
    ),
    serviceName: boundedString("OTEL_SERVICE_NAME", tracingBounds.serviceName, serviceNameFallback),
    exportInterval_ms: boundedInt("OTEL_EXPORT_INTERVAL_MS", tracingBounds.exportInterval_ms, 1_000),
    exportBatchSize_max: boundedInt("OTEL_EXPORT_BATCH_SIZE_MAX", tracingBounds.exportBatchSize_max, 1_000),
    shutdownTimeout_ms: boundedInt("OTEL_SHUTDOWN_TIMEOUT_MS", tracingBounds.shutdownTimeout_ms, 3_000)
  })

/** The OTLP span exporter for `options`, or nothing when no endpoint is configured. */
export const tracingLayerWith = (options: TracingOptions): Layer.Layer<never> =>
  options.endpoint === undefined
    ? Layer.empty
    : OtlpTracer.layer({
        url: `${options.endpoint.replace(/\/+$/, "")}/v1/traces`,
        resource: { serviceName: options.serviceName },
        exportInterval: options.exportInterval_ms,
        maxBatchSize: options.exportBatchSize_max,
        shutdownTimeout: options.shutdownTimeout_ms
      }).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(FetchHttpClient.layer))

/** The exporter as configured by the environment (`serviceName` when `OTEL_SERVICE_NAME` is unset). */
export const TracingLive = (serviceName: string): Layer.Layer<never, Config.ConfigError> =>
  Layer.unwrap(Effect.map(TracingSettings(serviceName), tracingLayerWith))
