import { CodedError } from "@pay/domain"
import { Schema } from "effect"

/**
 * Errors found at the HTTP edge, before any capability is asked: the request itself is unusable
 * (body, content type, a query parameter), or something below failed in a way that has no class of
 * its own (a database that did not answer, a bug). Each carries its code; the status is the
 * catalog's (`@pay/domain` ErrorCatalog.ts).
 */

/** A value is missing, of the wrong type, out of range or unknown; `field` names it when there is one. */
export class InvalidRequest extends CodedError<InvalidRequest>()(
  "invalid_request",
  "InvalidRequest",
  { detail: Schema.String, field: Schema.optionalKey(Schema.String) },
  (e) => e.detail
) {}

/** The body is not a JSON text; `reason` when more than the parser's refusal is known (not UTF-8). */
export class MalformedJson extends CodedError<MalformedJson>()(
  "malformed_json",
  "MalformedJson",
  { reason: Schema.optionalKey(Schema.String) },
  (e) => (e.reason === undefined ? "the body is not valid JSON" : `the body is not valid JSON: ${e.reason}`)
) {}

/** The connection broke while the body was read. */
export class BodyUnreadable extends CodedError<BodyUnreadable>()(
  "body_unreadable", "BodyUnreadable", {}, () => "the request body could not be read"
) {}

/** The body is over the limit; `declared_bytes` when Content-Length said so before reading. */
export class BodyTooLarge extends CodedError<BodyTooLarge>()(
  "body_too_large",
  "BodyTooLarge",
  { limit_bytes: Schema.Int, declared_bytes: Schema.optionalKey(Schema.Number) },
  (e) => e.declared_bytes === undefined
    ? `the body is over ${e.limit_bytes} bytes`
    : `the body is ${e.declared_bytes} bytes; at most ${e.limit_bytes} are accepted`
) {}

export class UnsupportedMediaType extends CodedError<UnsupportedMediaType>()(
  "unsupported_media_type",
  "UnsupportedMediaType",
  { contentType: Schema.String, contentEncoding: Schema.optionalKey(Schema.String) },
  (e) => e.contentEncoding === undefined
    ? `send the body as application/json (got ${JSON.stringify(e.contentType)})`
    : `send the body without a content coding (got Content-Encoding ${JSON.stringify(e.contentEncoding)}; none is supported)`
) {}

/** The database did not complete the request (an outage, not a refusal): nothing was decided. */
export class DatabaseUnavailable extends CodedError<DatabaseUnavailable>()(
  "database_unavailable",
  "DatabaseUnavailable",
  { during: Schema.Literals(["request", "authentication"]) },
  (e) => e.during === "authentication"
    ? "the database did not answer while checking the API key; retry"
    : "the database did not complete the request; retry with the same Idempotency-Key"
) {}

/**
 * The database refused a write (SQLSTATE class 23, a guard trigger, the ledger's LGxxx): every such
 * rule is checked by the code first, so reaching the edge is a bug of ours, not an outage and not
 * the client's fault (docs/api.md, "Database failures"). Nothing was committed.
 */
export class InvariantViolation extends CodedError<InvariantViolation>()(
  "invariant_violation",
  "InvariantViolation",
  {},
  () => "the database refused a write the service should have refused first; nothing was committed; it has been logged"
) {}

/** A bug: an error nobody declared, or a defect. Logged with its cause; `failed` names what failed. */
export class InternalError extends CodedError<InternalError>()(
  "internal_error",
  "InternalError",
  { failed: Schema.optionalKey(Schema.String) },
  (e) => e.failed === undefined
    ? "an unexpected error occurred; it has been logged"
    : `an unexpected error occurred (${e.failed}); it has been logged`
) {}

/**
 * Errors of the HTTP edge itself, before any endpoint is chosen: the router found no endpoint, the
 * endpoint does not take this method, the connection was too slow or its headers too large, or
 * the caller is over a rate limit. Each is one problem type of the catalog like the others.
 */

/** No endpoint at this path (unknown, or a segment that is not valid percent-encoding). */
export class RouteNotFound extends CodedError<RouteNotFound>()(
  "route_not_found",
  "RouteNotFound",
  { method: Schema.String, path: Schema.String },
  (e) => `no endpoint ${e.method} ${e.path}; see /openapi.json`
) {}

/** The path exists with other methods; `allow` is the `Allow` header's list. */
export class MethodNotAllowed extends CodedError<MethodNotAllowed>()(
  "method_not_allowed",
  "MethodNotAllowed",
  { method: Schema.String, allow: Schema.Array(Schema.String) },
  (e) => `${e.method} is not allowed here; allowed: ${e.allow.join(", ")}`
) {}

/** The headers or the body did not arrive within the server's limit (answered by the socket layer). */
export class RequestTimeout extends CodedError<RequestTimeout>()(
  "request_timeout",
  "RequestTimeout",
  { limit_ms: Schema.Int },
  (e) => `the request did not arrive within ${e.limit_ms} ms; nothing was executed`
) {}

/** Node's HTTP parser's bound on a request's header lines (fixed; llhttp refuses the 1,001st). */
export const headerLines_max = 1_000

/**
 * The headers are over one of the parser's limits, their size or their count of lines (answered
 * by the socket layer, which closes the connection). Which one is said (outside client review:
 * 1,100 short lines, 12 KB, were told "over 16384 bytes"), when the server can tell; both when it cannot.
 * The size alone is never said: the parser cannot tell where the failing request began.
 */
export class HeadersTooLarge extends CodedError<HeadersTooLarge>()(
  "headers_too_large",
  "HeadersTooLarge",
  { limit_bytes: Schema.Int, over: Schema.Literals(["lines", "bytes_or_lines"]) },
  (e) =>
    e.over === "lines"
      ? `the request has over ${headerLines_max} header lines`
      : `the request headers are over ${e.limit_bytes} bytes or ${headerLines_max} lines`
) {}

/** A window as a person reads it: whole seconds in seconds ("1 second", "60 seconds"), else milliseconds. */
const windowText = (window_ms: number): string =>
  window_ms === 1_000 ? "second" : window_ms % 1_000 === 0 ? `${window_ms / 1_000} seconds` : `${window_ms} ms`

/**
 * Over the merchant's request rate (`requests_max` per `window_ms`, as configured);
 * `retry_after_s` is the `Retry-After` header.
 */
export class RateLimited extends CodedError<RateLimited>()(
  "rate_limited",
  "RateLimited",
  { requests_max: Schema.Int, window_ms: Schema.Int, retry_after_s: Schema.Int },
  (e) => `over ${e.requests_max} requests per ${windowText(e.window_ms)} for this merchant; nothing was executed, retry in ${e.retry_after_s} s`
) {}

/**
 * Over the merchant's requests in flight (its share of the server, server/http/MerchantInFlight.ts): `in_flight_max`
 * of its requests are being served and its queue of `queued_max` is full, or this request waited
 * `wait_ms_max` in it; or the process is serving `merchants_max` merchants at once. The code is
 * `rate_limited` (the catalog's 429); `retry_after_s` is the `Retry-After` header.
 */
export class ConcurrencyLimited extends CodedError<ConcurrencyLimited>()(
  "rate_limited",
  "ConcurrencyLimited",
  {
    reason: Schema.Literals(["queue_full", "queue_wait", "merchants_max"]),
    in_flight_max: Schema.Int,
    queued_max: Schema.Int,
    wait_ms_max: Schema.Int,
    merchants_max: Schema.Int,
    retry_after_s: Schema.Int
  },
  (e) => {
    const retry = `nothing was executed; send fewer requests at once, retry in ${e.retry_after_s} s`
    switch (e.reason) {
      case "queue_full":
        return `over the concurrency limit: this merchant already has ${e.in_flight_max} requests in flight and ${e.queued_max} waiting; ${retry}`
      case "queue_wait":
        return `over the concurrency limit: waited ${e.wait_ms_max} ms behind this merchant's ${e.in_flight_max} requests in flight; ${retry}`
      case "merchants_max":
        return `over the concurrency limit: the server is serving ${e.merchants_max} merchants at once; ${retry}`
    }
  }
) {}

/** Too many failed authentications from one source address; `retry_after_s` is the `Retry-After` header. */
export class AuthenticationRateLimited extends CodedError<AuthenticationRateLimited>()(
  "authentication_rate_limited",
  "AuthenticationRateLimited",
  { failures_max: Schema.Int, retry_after_s: Schema.Int },
  (e) => `over ${e.failures_max} failed authentications from this address; retry in ${e.retry_after_s} s with a valid key`
) {}
