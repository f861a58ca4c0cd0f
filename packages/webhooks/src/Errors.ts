import { CodedError, DescribedError } from "@pay/domain"
import { Schema } from "effect"

/**
 * No such endpoint for this merchant: the same answer whether the id is unknown, another
 * merchant's, or deleted (no oracle for other merchants' endpoints).
 */
export class WebhookEndpointNotFound extends CodedError<WebhookEndpointNotFound>()(
  "webhook_endpoint_not_found", "WebhookEndpointNotFound", { endpointId: Schema.String }, (e) => `no webhook endpoint ${e.endpointId}`
) {}

export class WebhookDeliveryNotFound extends CodedError<WebhookDeliveryNotFound>()(
  "webhook_delivery_not_found", "WebhookDeliveryNotFound", { deliveryId: Schema.String }, (e) => `no webhook delivery ${e.deliveryId}`
) {}

/**
 * A value the endpoint service refuses (the code's check; the table's CHECKs are the second):
 * an unsafe URL, an unknown event type, too many endpoints. The server answers `invalid_request`
 * naming `field`.
 */
export class WebhookEndpointRefused extends DescribedError<WebhookEndpointRefused>()(
  "WebhookEndpointRefused", { field: Schema.String, reason: Schema.String }, (e) => `${e.field}: ${e.reason}`
) {}
