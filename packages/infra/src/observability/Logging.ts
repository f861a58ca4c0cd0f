import { Config, Context, Effect, Formatter, Layer, Logger, References, Tracer } from "effect"
import { withoutLiteralApiKeys } from "./Correlation.ts"

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)

/** An error given to a log call: `Tag: message` (a tagged error) or its message. */
const errorText = (value: Record<string, unknown>): string | undefined => {
  if (value instanceof Error) return value.message
  const { _tag: tag, message } = value
  return typeof tag === "string" && typeof message === "string" ? `${tag}: ${message}` : undefined
}

/**
 * `Effect.log("text", { … })` gives the logger `["text", { … }]`: the text stays the `message`,
 * a plain object's fields join the line's (never replacing the line's own: timestamp, level,
 * message, the trace ids, the annotations), an error becomes `error`, anything else `details`.
 * A search by field (`retry_in_ms`, `url`) then finds them as it finds the annotations.
 */
export const flatMessage = (message: unknown): { readonly message: unknown; readonly fields: Record<string, unknown> } => {
  if (!Array.isArray(message) || typeof message[0] !== "string") return { message, fields: {} }
  const [text, ...rest] = message
  const fields: Record<string, unknown> = {}
  const details: Array<unknown> = []
  for (const value of rest) {
    const error = isRecord(value) ? errorText(value) : undefined
    if (error !== undefined && fields["error"] === undefined) fields["error"] = error
    else if (isRecord(value) && error === undefined) for (const [name, field] of Object.entries(value)) if (!(name in fields)) fields[name] = field
    else details.push(value)
  }
  if (details.length > 0) fields["details"] = details
  return { message: text, fields }
}

/**
 * One JSON object per line: `timestamp`, `level`, `message`, `trace_id` and `span_id` (of the
 * current span, when there is one), then the annotations flat (`correlation_id`, `merchant_id`,
 * `payment_id`, … where known) and the fields of an object given to the log call (flatMessage),
 * then `cause` and the log spans; an API key anywhere in it written `sk_test_REDACTED`. Effect's own `Logger.consoleJson`
 * prints no trace id and nests the annotations; a log search by `correlation_id` or `trace_id`
 * wants them at the top level.
 */
export const structuredWithTrace = Logger.make((options) => {
  const entry = Logger.formatStructured.log(options)
  const span = Context.getOrUndefined(options.fiber.context, Tracer.ParentSpan)
  const { message, fields } = flatMessage(entry.message)
  const line: Record<string, unknown> = {
    timestamp: entry.timestamp,
    level: entry.level,
    message,
    ...(span === undefined ? {} : { trace_id: span.traceId, span_id: span.spanId }),
    ...entry.annotations
  }
  for (const [name, value] of Object.entries(fields)) if (!(name in line)) line[name] = value
  if (entry.cause !== undefined) line["cause"] = entry.cause
  if (Object.keys(entry.spans).length > 0) line["spans"] = entry.spans
  // The last net: an API key in any field (an Idempotency-Key or a path a client pasted it into,
  // an error's text quoting a request) never reaches the log (outside re-test).
  return withoutLiteralApiKeys(Formatter.formatJson(line))
})

/** The JSON logger, one line per event on stdout through the console (one write per line). */
export const consoleJsonWithTrace = Logger.withConsoleLog(structuredWithTrace)

/** Lines held before a write is forced within the same turn of the event loop. */
export const logLinesPerWrite_max = 256

/**
 * Lines gathered and written with ONE `write` per turn of the event loop (or as soon as
 * `lines_max` wait), in order. stdout on a file or a pipe is written synchronously by Node, one
 * system call per `console.log`: under load the per-request access line was one more syscall per
 * request (issue 18: ≈ 5 % of the server's busy CPU on replays). What a crash can lose is bounded:
 * the lines of the current turn, at most `lines_max`; a normal exit flushes (`process.on("exit")`).
 */
export const makeLineSink = (write: (chunk: string) => void, lines_max: number = logLinesPerWrite_max) => {
  let lines: Array<string> = []
  let scheduled = false
  const flush = () => {
    scheduled = false
    if (lines.length === 0) return
    const chunk = `${lines.join("\n")}\n`
    lines = []
    write(chunk)
  }
  const push = (line: string) => {
    lines.push(line)
    if (lines.length >= lines_max) flush()
    else if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  }
  return { push, flush }
}

const stdoutSink = makeLineSink((chunk) => {
  process.stdout.write(chunk)
})
process.on("exit", stdoutSink.flush)

/** The JSON logger on stdout, lines batched per turn of the event loop (makeLineSink). */
export const batchedJsonWithTrace = Logger.map(structuredWithTrace, stdoutSink.push)

/** `LOG_LEVEL` (default `Info`): the least severe level written (`Debug` shows per-request lines, see `HTTP_ACCESS_LOG`). */
export const LogLevelSetting = Config.LogLevel("LOG_LEVEL").pipe(Config.withDefault("Info" as const))

/** `logger` as the only logger, from `LOG_LEVEL` up. */
export const loggingWith = <Output>(logger: Logger.Logger<unknown, Output>): Layer.Layer<never, Config.ConfigError> =>
  Layer.unwrap(
    Effect.map(LogLevelSetting, (level) => Layer.merge(Logger.layer([logger]), Layer.succeed(References.MinimumLogLevel, level)))
  )

/** JSON logs with trace ids on stdout, from `LOG_LEVEL` up. */
export const JsonLoggingLive: Layer.Layer<never, Config.ConfigError> = loggingWith(batchedJsonWithTrace)
