import { DomainEvent } from "@pay/domain"
import { Effect, Result, Schema } from "effect"

/**
 * CloudEvents 1.0 in Kafka's binary content mode: the attributes travel as `ce_`-prefixed headers,
 * `datacontenttype` as the `content-type` header, and the event data (JSON) is the record value.
 * https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/kafka-protocol-binding.md
 */
export const cloudEventsSource = "/payments-platform"
export const specVersion = "1.0"
export const dataContentType = "application/json"

/** The headers every event carries. `eventversion` is our extension: the payload schema version. */
export const CloudEventHeaders = Schema.Struct({
  ce_id: Schema.String,
  ce_source: Schema.String,
  ce_type: Schema.String,
  ce_specversion: Schema.Literal(specVersion),
  ce_time: Schema.String,
  ce_subject: Schema.String,
  ce_eventversion: Schema.String,
  "content-type": Schema.Literal(dataContentType),
  correlation_id: Schema.optionalKey(Schema.String),
  traceparent: Schema.optionalKey(Schema.String)
})
export type CloudEventHeaders = typeof CloudEventHeaders.Type

/**
 * One outbox row, as the publisher reads it. Decoded with a schema at the boundary: a row the
 * publisher cannot read is a broken invariant (the table's CHECKs should have refused it).
 */
export const OutboxRow = Schema.Struct({
  id: Schema.String,
  position: Schema.BigInt,
  aggregate_type: Schema.String,
  aggregate_id: Schema.String,
  event_type: Schema.String,
  event_version: Schema.Int,
  /** jsonb, already parsed by the driver; sent on as JSON text. */
  payload: Schema.Unknown,
  headers: Schema.Unknown,
  created_at: Schema.Date,
  attempt_count: Schema.Int
})
export type OutboxRow = typeof OutboxRow.Type

export interface EventRecord {
  readonly key: string
  readonly value: string
  readonly headers: Readonly<Record<string, string>>
}

const stringHeaders = (headers: unknown): Record<string, string> => {
  const out: Record<string, string> = {}
  if (typeof headers === "object" && headers !== null) {
    for (const [name, value] of Object.entries(headers)) if (typeof value === "string") out[name] = value
  }
  return out
}

/**
 * The Kafka record for an outbox row. The key is the aggregate id (the payment id), so one
 * payment's events land on one partition, in order. `ce_time` is the row's creation time, taken
 * inside the transaction that made the change.
 */
export const toEventRecord = (row: OutboxRow): EventRecord => {
  const carried = stringHeaders(row.headers)
  const headers: CloudEventHeaders = {
    ce_id: row.id,
    ce_source: cloudEventsSource,
    ce_type: row.event_type,
    ce_specversion: specVersion,
    ce_time: row.created_at.toISOString(),
    ce_subject: `${row.aggregate_type}/${row.aggregate_id}`,
    ce_eventversion: String(row.event_version),
    "content-type": dataContentType,
    ...(carried.correlation_id === undefined ? {} : { correlation_id: carried.correlation_id }),
    ...(carried.traceparent === undefined ? {} : { traceparent: carried.traceparent })
  }
  return { key: row.aggregate_id, value: JSON.stringify(row.payload), headers }
}

/** Reads the envelope back from a consumed record's headers (consumers share this). */
export const decodeCloudEventHeaders = Schema.decodeUnknownEffect(CloudEventHeaders)

/** A consumed record that is not a well-formed payment event: the envelope and the data disagree. */
export class MalformedEventRecord extends Schema.TaggedError<MalformedEventRecord>()("MalformedEventRecord", {
  message: Schema.String
}) {}

/** A payment's event or one of its refunds' events: all travel on the payment's key (docs/events.md). */
export interface DecodedPaymentEvent {
  readonly envelope: CloudEventHeaders
  readonly event: DomainEvent
}

/** What the decoders read of a consumed Kafka record. */
export interface ConsumedRecord {
  readonly key: string | null
  readonly value: string
  readonly headers: Readonly<Record<string, string>>
}

const headersResult = Schema.decodeUnknownResult(CloudEventHeaders)
const domainEventResult = Schema.decodeUnknownResult(DomainEvent)

const malformed = (message: string) => Result.fail(new MalformedEventRecord({ message }))

/**
 * What a consumer of `payments.events` does with a record: decode the CloudEvents headers, decode
 * the JSON value with the shared `DomainEvent` schema (payment and refund events), and check that the two agree (type, the
 * subject's payment id, and the record key). Deduplicate on `envelope.ce_id`. Synchronous (a
 * Result, no fiber per record): a consumer decodes a whole poll of these before its transaction.
 */
export const decodePaymentEventRecordResult = (record: ConsumedRecord): Result.Result<DecodedPaymentEvent, MalformedEventRecord> => {
  const envelope = headersResult(record.headers)
  if (Result.isFailure(envelope)) return malformed(envelope.failure.message)
  let json: unknown
  try {
    json = JSON.parse(record.value)
  } catch (error) {
    return malformed(String(error))
  }
  const decoded = domainEventResult(json)
  if (Result.isFailure(decoded)) return malformed(decoded.failure.message)
  const event = decoded.success
  const { ce_subject, ce_type } = envelope.success
  if (event.type !== ce_type) return malformed(`ce_type ${ce_type} but data type ${event.type}`)
  if (ce_subject !== `payment/${event.payment_id}`) return malformed(`ce_subject ${ce_subject} is not payment/${event.payment_id}`)
  if (record.key !== event.payment_id) return malformed(`key ${String(record.key)} is not ${event.payment_id}`)
  return Result.succeed({ envelope: envelope.success, event })
}

/** decodePaymentEventRecordResult as an Effect. */
export const decodePaymentEventRecord = (record: ConsumedRecord): Effect.Effect<DecodedPaymentEvent, MalformedEventRecord> => Effect.fromResult(decodePaymentEventRecordResult(record))
