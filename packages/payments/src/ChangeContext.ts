import { Schema } from "effect"

/** W3C trace context header (`00-<trace id>-<span id>-<flags>`), lowercase hex. */
export const Traceparent = Schema.String.check(
  Schema.isPattern(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/, {
    message: "traceparent must be a W3C trace context header: 00-<32 hex>-<16 hex>-<2 hex>"
  })
)

/**
 * Who asks for a change and why: written to `payment_status_history` and carried as outbox event
 * headers. Bounds are the same as the history table's CHECKs; the edge (HTTP, CLI, worker)
 * validates with this schema, the repository asserts it.
 */
export const ChangeContext = Schema.Struct({
  /** Who: `api_key:<id>`, `merchant:<id>`, `system:settlement`, `operator:<name>`. */
  actor: Schema.String.check(Schema.isBetweenLength(1, 200)),
  /** Why, in words, when there is more to say than the command (optional). */
  reason: Schema.optionalKey(Schema.String.check(Schema.isBetweenLength(1, 1000))),
  /** Ties the history row, the outbox event and the logs of one request together. */
  correlationId: Schema.String.check(Schema.isBetweenLength(1, 200)),
  traceparent: Schema.optionalKey(Traceparent)
})
export type ChangeContext = typeof ChangeContext.Type

export const isChangeContext = Schema.is(ChangeContext)

/** The outbox event headers a change carries: its correlation id, and its trace when it has one. */
export const eventHeadersOf = (context: ChangeContext): Record<string, string> =>
  context.traceparent === undefined
    ? { correlation_id: context.correlationId }
    : { correlation_id: context.correlationId, traceparent: context.traceparent }
