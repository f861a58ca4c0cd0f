/**
 * The platform's error vocabulary: every stable `code` a client of the API can receive, with its
 * HTTP status, the problem document's title, whether (and how) to retry, and what it means. This
 * table is the one place a code's status is written: the error classes take it from here
 * (`CodedError`), the HTTP contract documents one problem type per row (`@pay/api` Problems.ts),
 * and the server renders an error as the row of its code. docs/api.md lists the same rows.
 *
 * The title is what the problem document's `title` says; titles follow the status, so clients that
 * read titles see the words they always saw.
 */
export type Retry =
  /** Fix the request first: the same request will be refused again. */
  | "no"
  /** The same request, with the same Idempotency-Key, finishes the work (exactly once). */
  | "same_key"
  /** The same request and key, after a short wait (the first request is still running). */
  | "same_key_later"
  /** The answer is final for this key; a new key asks again (after reading the payment). */
  | "no_stored"

export interface ErrorEntry {
  readonly status: 400 | 401 | 404 | 405 | 408 | 409 | 413 | 415 | 422 | 429 | 431 | 500 | 503
  readonly title: string
  readonly retry: Retry
  /** One line: when a client gets this code. */
  readonly meaning: string
}

export const errorCatalog = {
  invalid_request: {
    status: 400, title: "Invalid request", retry: "no",
    meaning: "A value is missing, of the wrong type, out of range or unknown (`field` says which)"
  },
  malformed_json: { status: 400, title: "Invalid request", retry: "no", meaning: "The body is not JSON" },
  body_unreadable: {
    status: 400, title: "Invalid request", retry: "same_key", meaning: "The connection broke while the body was read"
  },
  idempotency_key_missing: {
    status: 400, title: "Invalid request", retry: "no", meaning: "A POST without an `Idempotency-Key` header (`field: \"Idempotency-Key\"`)"
  },
  idempotency_key_invalid: {
    status: 400, title: "Invalid request", retry: "no",
    meaning: "The `Idempotency-Key` is empty, over 255 characters, has control or non-ASCII characters, or broken quoting"
  },
  invalid_cursor: {
    status: 400, title: "Invalid request", retry: "no",
    meaning: "`starting_after` is not an item of the list it pages (the merchant's payments or webhook endpoints, the endpoint's deliveries, the payment's refunds)"
  },
  unauthorized: { status: 401, title: "Unauthorized", retry: "no", meaning: "No API key, or an unknown, malformed or revoked one" },
  route_not_found: {
    status: 404, title: "Not found", retry: "no",
    meaning: "No endpoint at this path (an unknown path, or a path segment that is not valid percent-encoding)"
  },
  method_not_allowed: {
    status: 405, title: "Method not allowed", retry: "no", meaning: "The path exists, not with this method: `Allow` lists its methods"
  },
  request_timeout: {
    status: 408, title: "Request timeout", retry: "same_key",
    meaning: "The headers or the body did not arrive in time (the connection is closed; nothing was executed)"
  },
  payment_not_found: { status: 404, title: "Not found", retry: "no", meaning: "No such payment **for this merchant**" },
  refund_not_found: { status: 404, title: "Not found", retry: "no", meaning: "No such refund of this payment **for this merchant**" },
  webhook_endpoint_not_found: {
    status: 404, title: "Not found", retry: "no", meaning: "No such webhook endpoint **for this merchant** (or it was deleted)"
  },
  webhook_delivery_not_found: {
    status: 404, title: "Not found", retry: "no", meaning: "No such webhook delivery for this endpoint"
  },
  idempotency_key_in_use: {
    status: 409, title: "Conflict", retry: "same_key_later",
    meaning: "The first request with this key is still running (or its server died and its lease has not expired yet): retry after `Retry-After` seconds"
  },
  invalid_transition: {
    status: 409, title: "Conflict", retry: "no_stored",
    meaning: "The payment's status does not allow it (settle twice, authorize a settled payment…), or a settle or cancel lost the race at the acquirer to another request of the same payment (the authorization was already captured or voided; `detail` says which)"
  },
  authorization_in_progress: {
    status: 409, title: "Conflict", retry: "no_stored",
    meaning: "A cancel of a CREATED payment whose authorization is still in progress at the bank: nothing was done and nothing is pending; once the authorization has finished (read the payment), a cancel with a new key voids it"
  },
  authorization_expired: {
    status: 409, title: "Conflict", retry: "no_stored",
    meaning: "A settle after the authorization's `authorization_expires_at`: the funds are no longer held"
  },
  concurrent_modification: {
    status: 409, title: "Conflict", retry: "no_stored", meaning: "Another change to the same payment won the race"
  },
  payment_not_refundable: {
    status: 409, title: "Conflict", retry: "no_stored", meaning: "Only a SETTLED payment can be refunded"
  },
  refund_exceeds_balance: {
    status: 409, title: "Conflict", retry: "no_stored",
    meaning: "The merchant's payable balance, less its pending refunds' parts on it, does not cover the refund less its fee share"
  },
  // 409 like refund_exceeds_balance: the request is well formed and would succeed against another
  // state of the merchant's account (one endpoint fewer); 422 here means the request itself is
  // wrong whatever the state (a reused key, an amount above what the payment allows).
  webhook_endpoint_limit_reached: {
    status: 409, title: "Conflict", retry: "no_stored",
    meaning: "The merchant already has the most webhook endpoints allowed (16, disabled ones included): delete one, then register with a new key"
  },
  body_too_large: { status: 413, title: "Request body too large", retry: "no", meaning: "The body is over 64 KiB" },
  unsupported_media_type: {
    status: 415, title: "Unsupported media type", retry: "no", meaning: "A body that is not `application/json` in UTF-8, or that has a `Content-Encoding` (send it uncompressed)"
  },
  idempotency_key_reused: {
    status: 422, title: "Unprocessable request", retry: "no",
    meaning: "This key was used for a different request (method, path or body); use a new key for a new request"
  },
  capture_exceeds_authorized: {
    status: 422, title: "Unprocessable request", retry: "no_stored",
    meaning: "A settle `amount` above the authorized amount: a capture takes at most what was authorized"
  },
  refund_exceeds_captured: {
    status: 422, title: "Unprocessable request", retry: "no_stored",
    meaning: "The payment's refunds that have not failed, with this one, would exceed the captured amount"
  },
  rate_limited: {
    status: 429, title: "Too many requests", retry: "same_key_later",
    meaning: "Over the merchant's request rate, or its requests in flight (the concurrency limit): nothing was executed; retry after `Retry-After` seconds, with fewer requests at once"
  },
  authentication_rate_limited: {
    status: 429, title: "Too many requests", retry: "same_key_later",
    meaning: "Too many failed authentications from this address: retry after `Retry-After` seconds, with a valid key"
  },
  headers_too_large: {
    status: 431, title: "Request header fields too large", retry: "no",
    meaning: "The request's headers are over 16 KiB (the connection is closed)"
  },
  internal_error: { status: 500, title: "Internal error", retry: "same_key", meaning: "A bug; logged with its cause" },
  invariant_violation: {
    status: 500, title: "Internal error", retry: "same_key",
    meaning: "The database refused a write (a constraint or guard trigger) that the service should have refused first: a bug, logged; nothing was committed"
  },
  acquirer_timeout: {
    status: 503, title: "Service unavailable", retry: "same_key",
    meaning: "The bank did not answer in time: the outcome is unknown (`Retry-After: 1`)"
  },
  acquirer_unavailable: {
    status: 503, title: "Service unavailable", retry: "same_key", meaning: "The bank could not be reached: nothing was decided"
  },
  payment_locked: {
    status: 503, title: "Service unavailable", retry: "same_key",
    meaning: "Another transaction held the payment past the lock wait (after the bank answered, or, for an authorize, before it was asked): nothing was committed; the same key finishes the work"
  },
  database_unavailable: {
    status: 503, title: "Service unavailable", retry: "same_key", meaning: "The database did not complete the request: nothing was decided"
  },
  settlement_unavailable: {
    status: 503, title: "Service unavailable", retry: "same_key",
    meaning: "The ledger did not complete the settlement posting: nothing was committed"
  },
  dependency_unavailable: {
    status: 503, title: "A dependency is unavailable", retry: "same_key_later",
    meaning: "`/health/ready` only: `unavailable` lists the dependencies that do not answer"
  }
} as const satisfies Readonly<Record<string, ErrorEntry>>

export type ErrorCode = keyof typeof errorCatalog

export const errorCodes: ReadonlyArray<ErrorCode> = Object.keys(errorCatalog).filter(
  (code): code is ErrorCode => Object.hasOwn(errorCatalog, code)
)

/** The HTTP status of a code: the one place statuses are written is the table above. */
export const statusOf = (code: ErrorCode): ErrorEntry["status"] => errorCatalog[code].status
