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

export class MalformedJson extends CodedError<MalformedJson>()("malformed_json", "MalformedJson", {}, () => "the body is not valid JSON") {}

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
  { contentType: Schema.String },
  (e) => `send the body as application/json (got ${JSON.stringify(e.contentType)})`
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

/** A bug: an error nobody declared, or a defect. Logged with its cause; `failed` names what failed. */
export class InternalError extends CodedError<InternalError>()(
  "internal_error",
  "InternalError",
  { failed: Schema.optionalKey(Schema.String) },
  (e) => e.failed === undefined
    ? "an unexpected error occurred; it has been logged"
    : `an unexpected error occurred (${e.failed}); it has been logged`
) {}
