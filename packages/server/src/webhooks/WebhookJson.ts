import type { WebhookEndpointJson } from "@pay/api"
import type { WebhookAttempt, WebhookDelivery, WebhookEndpoint } from "@pay/webhooks"

const iso = (date: Date | null): string | null => (date === null ? null : date.toISOString())

/** The API's view of an endpoint (never its secret). */
export const toWebhookEndpointJson = (endpoint: WebhookEndpoint): WebhookEndpointJson => ({
  id: endpoint.id,
  object: "webhook_endpoint",
  url: endpoint.url,
  description: endpoint.description,
  event_types: endpoint.event_types,
  status: endpoint.status,
  disabled_reason: endpoint.disabled_reason,
  disabled_at: iso(endpoint.disabled_at),
  failing_since: iso(endpoint.failing_since),
  created_at: endpoint.created_at.toISOString(),
  updated_at: endpoint.updated_at.toISOString()
})

const toAttemptJson = (attempt: WebhookAttempt) => ({
  attempt_number: attempt.attempt_number,
  started_at: attempt.started_at.toISOString(),
  outcome: attempt.outcome,
  response_status: attempt.response_status,
  latency_ms: attempt.latency_ms,
  response_body_excerpt: attempt.response_body_excerpt,
  error: attempt.error,
  finished_at: iso(attempt.finished_at)
})

export const toWebhookDeliveryJson = (delivery: WebhookDelivery, attempts?: ReadonlyArray<WebhookAttempt>) => ({
  id: delivery.id,
  object: "webhook_delivery" as const,
  endpoint_id: delivery.endpoint_id,
  event_id: delivery.event_id,
  event_type: delivery.event_type,
  payment_id: delivery.payment_id,
  refund_id: delivery.refund_id,
  status: delivery.status,
  failed_reason: delivery.failed_reason,
  attempt_count: delivery.attempt_count,
  next_attempt_at: delivery.status === "pending" ? delivery.next_attempt_at.toISOString() : null,
  last_response_status: delivery.last_response_status,
  created_at: delivery.created_at.toISOString(),
  finished_at: iso(delivery.finished_at),
  ...(attempts === undefined ? {} : { attempts: attempts.map(toAttemptJson) })
})
