import { AcquirerTimeout, AcquirerUnavailable } from "@pay/acquirer"
import {
  AuthenticationRateLimited,
  BodyTooLarge,
  BodyUnreadable,
  ConcurrencyLimited,
  DatabaseUnavailable,
  InvariantViolation,
  HeadersTooLarge,
  InternalError,
  InvalidRequest,
  MalformedJson,
  MethodNotAllowed,
  RateLimited,
  RequestTimeout,
  RouteNotFound,
  UnsupportedMediaType
} from "@pay/api"
import {
  AuthorizationExpired,
  AuthorizationInProgress,
  CaptureExceedsAuthorized,
  ConcurrentModification,
  InvalidCursor,
  InvalidTransition,
  PaymentLocked,
  PaymentNotFound,
  PaymentNotRefundable,
  RefundExceedsBalance,
  RefundExceedsCaptured,
  RefundNotFound
} from "@pay/domain"
import {
  IdempotencyKeyInUse,
  IdempotencyKeyInvalid,
  IdempotencyKeyMissing,
  IdempotencyKeyReused,
  IdempotencyLockLost
} from "@pay/idempotency"
import { Unauthorized } from "@pay/merchants"
import { SettlementUnavailable } from "@pay/settlement"
import { WebhookDeliveryNotFound, WebhookEndpointLimitReached, WebhookEndpointNotFound } from "@pay/webhooks"

/**
 * Every error class the API answers with, whichever package owns it. Each carries its `code`;
 * the status is the catalog's. `Problem.ts` renders each with an exhaustive match over this
 * union, so adding a class here without saying how it is presented fails the build, and the
 * OpenAPI test walks this list (`packages/server/test/error-catalog.test.ts`).
 */
export const apiErrorClasses = [
  // the HTTP edge, before an endpoint is chosen (router, socket, rate limits)
  RouteNotFound,
  MethodNotAllowed,
  RequestTimeout,
  HeadersTooLarge,
  RateLimited,
  ConcurrencyLimited,
  AuthenticationRateLimited,
  // the request itself (HTTP edge)
  InvalidRequest,
  MalformedJson,
  BodyUnreadable,
  BodyTooLarge,
  UnsupportedMediaType,
  // who asks (merchants)
  Unauthorized,
  // the Idempotency-Key (idempotency)
  IdempotencyKeyMissing,
  IdempotencyKeyInvalid,
  IdempotencyKeyReused,
  IdempotencyKeyInUse,
  IdempotencyLockLost,
  // decided refusals (domain)
  PaymentNotFound,
  InvalidTransition,
  CaptureExceedsAuthorized,
  AuthorizationExpired,
  PaymentNotRefundable,
  RefundExceedsCaptured,
  RefundExceedsBalance,
  RefundNotFound,
  ConcurrentModification,
  AuthorizationInProgress,
  InvalidCursor,
  // decided refusals (webhooks)
  WebhookEndpointNotFound,
  WebhookDeliveryNotFound,
  WebhookEndpointLimitReached,
  // unknown outcomes: nothing decided, retry with the same key
  AcquirerTimeout,
  AcquirerUnavailable,
  PaymentLocked,
  SettlementUnavailable,
  DatabaseUnavailable,
  // a bug
  InvariantViolation,
  InternalError
] as const

export type ApiError = InstanceType<(typeof apiErrorClasses)[number]>
