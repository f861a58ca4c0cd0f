import { Config, Context, Effect, Formatter, Layer, Logger, References, Tracer } from "effect"

/**
 * One JSON object per line: `timestamp`, `level`, `message`, `trace_id` and `span_id` (of the
 * current span, when there is one), then the annotations flat (`correlation_id`, `merchant_id`,
 * `payment_id`, … where known), then `cause` and the log spans. Effect's own `Logger.consoleJson`
 * prints no trace id and nests the annotations; a log search by `correlation_id` or `trace_id`
 * wants them at the top level.
 */
export const structuredWithTrace = Logger.make((options) => {
  const entry = Logger.formatStructured.log(options)
  const span = Context.getOrUndefined(options.fiber.context, Tracer.ParentSpan)
  const line: Record<string, unknown> = {
    timestamp: entry.timestamp,
    level: entry.level,
    message: entry.message,
    ...(span === undefined ? {} : { trace_id: span.traceId, span_id: span.spanId }),
    ...entry.annotations
  }
  if (entry.cause !== undefined) line["cause"] = entry.cause
  if (Object.keys(entry.spans).length > 0) line["spans"] = entry.spans
  return Formatter.formatJson(line)
})

/** The JSON logger, one line per event on stdout. */
export const consoleJsonWithTrace = Logger.withConsoleLog(structuredWithTrace)

/** `LOG_LEVEL` (default `Info`): the least severe level written (`Debug` shows per-request lines, see `HTTP_ACCESS_LOG`). */
export const LogLevelSetting = Config.LogLevel("LOG_LEVEL").pipe(Config.withDefault("Info" as const))

/** JSON logs with trace ids, from `LOG_LEVEL` up. */
export const JsonLoggingLive: Layer.Layer<never, Config.ConfigError> = Layer.unwrap(
  Effect.gen(function* () {
    const level = yield* LogLevelSetting
    return Layer.merge(Logger.layer([consoleJsonWithTrace]), Layer.succeed(References.MinimumLogLevel, level))
  })
)
