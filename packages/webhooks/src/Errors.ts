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
 * The merchant already has `endpointCount_max` endpoints (disabled ones count; deleted ones do
 * not): a quota, not a bad value, so its own code (409, like the other "not in this state" refusals)
 * rather than `invalid_request` naming a field that is not at fault.
 */
export class WebhookEndpointLimitReached extends CodedError<WebhookEndpointLimitReached>()(
  "webhook_endpoint_limit_reached",
  "WebhookEndpointLimitReached",
  { endpointCount_max: Schema.Int },
  (e) => `at most ${e.endpointCount_max} webhook endpoints per merchant (disabled ones included): delete one before registering another`
) {}

/**
 * A value the endpoint service refuses (the code's check; the table's CHECKs are the second):
 * an unsafe URL, an unknown event type, a description too long. The server answers
 * `invalid_request` naming `field`.
 */
export class WebhookEndpointRefused extends DescribedError<WebhookEndpointRefused>()(
  "WebhookEndpointRefused", { field: Schema.String, reason: Schema.String }, (e) => `${e.field}: ${e.reason}`
) {}
