import { problemContentType, problemType, type ProblemBody } from "@pay/api"
import { errorCatalog, showingHiddenCharacters, withoutCardNumbers } from "@pay/domain"
import type { StoredResponse } from "@pay/idempotency"
import { Match } from "effect"
import type { ApiError } from "./ApiErrors.ts"

/** What a problem document says beyond its code: the detail for people, and the culprit field. */
interface Presentation {
  readonly detail: string
  readonly field?: string
}

const idempotencyKeyField = "Idempotency-Key"
const aboutTheKey = (error: { readonly message: string }): Presentation => ({ detail: error.message, field: idempotencyKeyField })
const asIs = (error: { readonly message: string }): Presentation => ({ detail: error.message })

/**
 * How each error is presented. Exhaustive over `ApiError`: a class added to the list in
 * ApiErrors.ts without a line here does not compile.
 */
const present = (error: ApiError): Presentation =>
  Match.valueTags(error, {
    RouteNotFound: asIs,
    MethodNotAllowed: asIs,
    RequestTimeout: asIs,
    HeadersTooLarge: asIs,
    RateLimited: asIs,
    ConcurrencyLimited: asIs,
    AuthenticationRateLimited: asIs,
    InvalidRequest: (e) => (e.field === undefined ? { detail: e.detail } : { detail: e.detail, field: e.field }),
    MalformedJson: asIs,
    BodyUnreadable: asIs,
    BodyTooLarge: asIs,
    UnsupportedMediaType: asIs,
    // The same words whatever was wrong with the key: no oracle for guessing keys.
    Unauthorized: () => ({ detail: "missing or invalid API key: send Authorization: Bearer <api key>" }),
    IdempotencyKeyMissing: aboutTheKey,
    IdempotencyKeyInvalid: aboutTheKey,
    IdempotencyKeyReused: aboutTheKey,
    IdempotencyKeyInUse: aboutTheKey,
    IdempotencyLockLost: aboutTheKey,
    PaymentNotFound: asIs,
    InvalidTransition: asIs,
    CaptureExceedsAuthorized: (e) => ({ detail: e.message, field: "amount" }),
    AuthorizationExpired: asIs,
    PaymentNotRefundable: asIs,
    RefundExceedsCaptured: (e) => ({ detail: e.message, field: "amount" }),
    RefundExceedsBalance: asIs,
    RefundNotFound: asIs,
    ConcurrentModification: asIs,
    InvalidCursor: (e) => ({ detail: e.message, field: "starting_after" }),
    WebhookEndpointNotFound: asIs,
    WebhookDeliveryNotFound: asIs,
    // No `field`: no value of the request is at fault, the merchant's count of endpoints is.
    WebhookEndpointLimitReached: asIs,
    AuthorizationInProgress: (e) => ({
      detail: `${e.message}. Nothing was done and nothing is pending; read the payment, and once its authorization has finished (AUTHORIZED), cancel with a new Idempotency-Key.`
    }),
    AcquirerTimeout: (e) => ({ detail: `${e.message}. Retry with the same Idempotency-Key to finish it.` }),
    AcquirerUnavailable: (e) => ({ detail: `${e.message}. Nothing was decided; retry with the same Idempotency-Key.` }),
    PaymentLocked: (e) => ({ detail: `${e.message}. Retry with the same Idempotency-Key to finish it.` }),
    SettlementUnavailable: (e) => ({ detail: `${e.message}. Nothing was committed; retry with the same Idempotency-Key.` }),
    DatabaseUnavailable: asIs,
    InvariantViolation: asIs,
    InternalError: asIs
  })

/**
 * The RFC 9457 document of an error: type, title and status from its code's catalog row. A detail
 * or field may echo what the client sent (a path id, a query parameter's name, a member's name):
 * its hidden characters are written out (`\u{202E}`), so that a dashboard or a terminal shows what
 * was sent instead of obeying it (outside attack review: `no refund re_` + U+202E came back as is).
 */
export const problemDocument = (error: ApiError): ProblemBody => {
  const presented = present(error)
  const detail = showingHiddenCharacters(withoutCardNumbers(presented.detail))
  const field = presented.field === undefined ? undefined : showingHiddenCharacters(withoutCardNumbers(presented.field))
  const entry = errorCatalog[error.code]
  return {
    type: problemType(error.code),
    title: entry.title,
    status: entry.status,
    detail,
    code: error.code,
    ...(field === undefined ? {} : { field })
  }
}

/** The problem document rendered once to the exact bytes that are sent and, when decided, stored. */
export const problemResponse = (error: ApiError): StoredResponse => {
  const body = problemDocument(error)
  return { status: body.status, contentType: problemContentType, body: JSON.stringify(body) }
}

export const json = (status: number, value: unknown): StoredResponse => ({
  status,
  contentType: "application/json",
  body: JSON.stringify(value)
})
