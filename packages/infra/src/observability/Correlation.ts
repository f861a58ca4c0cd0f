import { Context, Effect, Option, Schema, Tracer } from "effect"
import { Headers, HttpTraceContext } from "effect/http"
import { randomUUID } from "node:crypto"
import { decodedOrAsIs } from "../DatabaseTarget.ts"

/**
 * One correlation id per request, from the HTTP edge to the consumers: the client's
 * `X-Request-Id` when it is acceptable, a fresh UUID otherwise. It is answered on every response,
 * written on every log line of the request (`correlation_id`), stored in the payment's history row
 * and the outbox row, and carried to Kafka as the record header `correlation_id`.
 */
export const correlationHttpHeader = "x-request-id"
/** The Kafka record header (and the outbox row's `headers` key) that carries it. */
export const correlationRecordHeader = "correlation_id"
/** The Kafka record header that carries the W3C trace context of the change that wrote the row. */
export const traceparentRecordHeader = "traceparent"
/** The log annotation: the same name in the API's and the consumers' logs. */
export const correlationLogKey = "correlation_id"

export const CORRELATION_ID_LENGTH_MAX = 200

/**
 * Printable ASCII without spaces, 1 to 200 characters: safe in a header, a log line, a SQL row
 * (the history table's CHECK bounds it to 200 too) and a Kafka header. Anything else is replaced
 * by a generated id, never refused: the id is a convenience for the client, not a contract.
 */
export const CorrelationId = Schema.String.check(
  Schema.isBetweenLength(1, CORRELATION_ID_LENGTH_MAX),
  Schema.isPattern(/^[\x21-\x7e]+$/, { message: "a correlation id is printable ASCII without spaces" })
)

const isCorrelationId = Schema.is(CorrelationId)

/**
 * The client's id when acceptable, a new UUID otherwise: an id carrying an API key (a client that
 * sent its key as `X-Request-Id`) is replaced too, or the key would be in every log line of the
 * request, the payment's history, its outbox rows and their Kafka headers (outside re-test).
 */
export const correlationIdFrom = (candidate: string | undefined): string =>
  candidate !== undefined && isCorrelationId(candidate) && withoutApiKeys(candidate) === candidate ? candidate : randomUUID()

/** The current request's (or consumed record's) correlation id; `undefined` outside one. */
export const CurrentCorrelationId = Context.Reference<string | undefined>("infra/observability/CurrentCorrelationId", {
  defaultValue: () => undefined
})

/** Runs `effect` as part of `correlationId`: every log line it writes carries it. */
export const withCorrelationId =
  (correlationId: string) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    effect.pipe(
      Effect.annotateLogs(correlationLogKey, correlationId),
      Effect.provideService(CurrentCorrelationId, correlationId)
    )

/** The W3C `traceparent` of a span: `00-<trace id>-<span id>-<01 sampled | 00>`. */
export const traceparentOf = (span: Tracer.AnySpan): string => `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

/**
 * The trace context to store with a change (history row, outbox row, Kafka header): the current
 * span's when there is one (the request's server span continues the client's `traceparent`, so
 * the trace id is the client's), else the one the caller received, else none.
 */
export const currentTraceparent = (received: string | undefined): Effect.Effect<string | undefined> =>
  Effect.currentSpan.pipe(
    Effect.map(traceparentOf),
    Effect.catch(() => Effect.succeed(received))
  )

/** The remote span a `traceparent` names (for a parent or a link); none when malformed. */
export const spanFromTraceparent = (traceparent: string | undefined): Option.Option<Tracer.ExternalSpan> =>
  traceparent === undefined ? Option.none() : HttpTraceContext.w3c(Headers.fromRecordUnsafe({ traceparent }))

/**
 * For a consumer of an outbox event (Kafka record headers as strings): runs the handling in a
 * `consumer` span whose parent is the change's span named by the `traceparent` header (the trace
 * continues across the broker, however late), with the record's `correlation_id` on every log
 * line (a fresh one when the record carries none, so the handling's lines still belong together).
 *
 * ```ts
 * handle(record).pipe(continueFromRecord("payments.events consume", record.headers, { "messaging.kafka.offset": offset }))
 * ```
 */
export const continueFromRecord =
  (spanName: string, headers: Readonly<Record<string, string>>, attributes: Readonly<Record<string, unknown>> = {}) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    effect.pipe(
      Effect.withSpan(spanName, {
        kind: "consumer",
        parent: Option.getOrUndefined(spanFromTraceparent(headers[traceparentRecordHeader])),
        attributes: { ...attributes, ...(headers["ce_id"] === undefined ? {} : { "messaging.message.id": headers["ce_id"] }) }
      }),
      withCorrelationId(correlationIdFrom(headers[correlationRecordHeader]))
    )

/**
 * The most record traces one batch span links to: a consumer's slice holds up to 1,000 records,
 * and OpenTelemetry keeps 128 links per span by default; the rest are counted
 * (`messaging.batch.links_omitted`), and `processed_events.event_id` = `outbox_events.id` finds
 * any record's slice by its event.
 */
export const batchSpanLinks_max = 32

/** What a batch span needs of a record (a KafkaRecord has it). */
export interface LinkedRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: bigint
  readonly headers: Readonly<Record<string, string>>
}

/**
 * For records handled together (a consumer's slice, one transaction): one `consumer` span with
 * the batch's topic, partition and offsets, linked to the spans that changed its first
 * `batchSpanLinks_max` records (their `traceparent` headers), so that a request's trace leads to
 * the slice that applied its event. Links, not a parent: the records come from many requests.
 */
export const continueFromRecords =
  (spanName: string, records: ReadonlyArray<LinkedRecord>, attributes: Readonly<Record<string, unknown>> = {}) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
    const links: Array<Tracer.SpanLink> = []
    for (const record of records) {
      if (links.length === batchSpanLinks_max) break
      const span = spanFromTraceparent(record.headers[traceparentRecordHeader])
      if (Option.isSome(span)) links.push({ span: span.value, attributes: record.headers["ce_id"] === undefined ? {} : { "messaging.message.id": record.headers["ce_id"] } })
    }
    const first = records[0]
    const last = records[records.length - 1]
    return Effect.withSpan(effect, spanName, {
      kind: "consumer",
      links,
      attributes: {
        ...attributes,
        "messaging.batch.message_count": records.length,
        "messaging.batch.links_omitted": Math.max(0, records.length - links.length),
        ...(first === undefined || last === undefined ? {} : {
          "messaging.destination.name": first.topic,
          "messaging.destination.partition.id": String(first.partition),
          "messaging.kafka.offset.first": String(first.offset),
          "messaging.kafka.offset.last": String(last.offset)
        })
      }
    })
  }

/**
 * Fields for the enclosing request's access line (`merchant_id`, `payment_id`, …), filled by the
 * code that learns them (authorization, handlers, use cases) and written once by the HTTP
 * middleware when the request ends. One mutable record per request, created by the middleware;
 * `undefined` outside a request (then `annotateRequest` only annotates the span).
 */
export const CurrentRequestFields = Context.Reference<Record<string, string> | undefined>("infra/observability/CurrentRequestFields", {
  defaultValue: () => undefined
})

/**
 * Text with every API-key-shaped run (`sk_test_…` / `sk_live_…`, 8+ characters after the prefix)
 * replaced by its prefix and `REDACTED`, wherever it starts (`Bearer%20sk_…`, `x_sk_…`: a word
 * boundary before the prefix let encoded forms through: outside diff review): a key pasted into a path or a query (a client's mistake)
 * never reaches a log line or a span (outside security review: `payment_id` and `url.path` carried
 * one in full). The Authorization header is never recorded in the first place.
 */
export const withoutApiKeys = (text: string): string => {
  const plain = withoutLiteralApiKeys(text)
  if (!plain.includes("%")) return plain
  // Percent-encoded (`sk_test%5F…`, `%73k_test_…`): matched in the decoded text, which is then
  // what is kept (redacted); text whose decoding names no key is left as written.
  const decoded = decodedOrAsIs(plain)
  const redacted = withoutLiteralApiKeys(decoded)
  return redacted === decoded ? plain : redacted
}

const apiKeyPattern = /(sk_(?:test|live)_)[0-9A-Za-z]{8,}/g

/** Only the keys written as they are (one regular-expression pass; what every log line goes through). */
export const withoutLiteralApiKeys = (text: string): string => text.replace(apiKeyPattern, "$1REDACTED")

/** Adds `fields` to the current request's access line and to the current span. */
export const annotateRequest = (fields: Readonly<Record<string, string>>): Effect.Effect<void> =>
  Effect.gen(function* () {
    const holder = yield* CurrentRequestFields
    if (holder !== undefined) Object.assign(holder, fields)
    yield* Effect.annotateCurrentSpan(fields)
  })
