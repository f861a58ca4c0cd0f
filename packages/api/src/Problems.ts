import { Schema } from "effect"
import { HttpApiError } from "effect/http-api"

/**
 * Every error the API answers is an RFC 9457 problem (`application/problem+json`) with `type`,
 * `title`, `status`, `detail`, a stable machine `code`, and the offending `field` where there is
 * one. Problem types are URIs under this base; the `code` is what clients branch on.
 */
export const problemTypeBase = "https://docs.payments.local/problems/"
export const problemContentType = "application/problem+json"

/** The members every problem body carries, whatever its status. */
export const ProblemBody = Schema.Struct({
  type: Schema.String,
  title: Schema.String,
  status: Schema.Int,
  detail: Schema.String,
  code: Schema.String,
  field: Schema.optionalKey(Schema.String)
})
export type ProblemBody = typeof ProblemBody.Type

const problemFields = {
  code: Schema.String,
  detail: Schema.String,
  field: Schema.optionalKey(Schema.String)
}

/** 400: the request is malformed or a value is invalid; `field` names the culprit. */
export class BadRequestProblem extends HttpApiError.Problem<BadRequestProblem>()(
  "BadRequestProblem",
  { type: `${problemTypeBase}invalid_request`, status: 400, title: "Invalid request" },
  problemFields
) {}

/** 401: no API key, or not a valid one. */
export class UnauthorizedProblem extends HttpApiError.Problem<UnauthorizedProblem>()(
  "UnauthorizedProblem",
  { type: `${problemTypeBase}unauthorized`, status: 401, title: "Unauthorized" },
  problemFields
) {}

/** 404: no such resource for this merchant (another merchant's id looks exactly the same). */
export class NotFoundProblem extends HttpApiError.Problem<NotFoundProblem>()(
  "NotFoundProblem",
  { type: `${problemTypeBase}not_found`, status: 404, title: "Not found" },
  problemFields
) {}

/** 409: the idempotency key is in use, the transition is not allowed, or a concurrent change won. */
export class ConflictProblem extends HttpApiError.Problem<ConflictProblem>()(
  "ConflictProblem",
  { type: `${problemTypeBase}conflict`, status: 409, title: "Conflict" },
  problemFields
) {}

/** 413: the body is over the limit (64 KiB). */
export class PayloadTooLargeProblem extends HttpApiError.Problem<PayloadTooLargeProblem>()(
  "PayloadTooLargeProblem",
  { type: `${problemTypeBase}body_too_large`, status: 413, title: "Request body too large" },
  problemFields
) {}

/** 415: the body is not JSON. */
export class UnsupportedMediaTypeProblem extends HttpApiError.Problem<UnsupportedMediaTypeProblem>()(
  "UnsupportedMediaTypeProblem",
  { type: `${problemTypeBase}unsupported_media_type`, status: 415, title: "Unsupported media type" },
  problemFields
) {}

/** 422: the idempotency key was used with a different request. */
export class UnprocessableProblem extends HttpApiError.Problem<UnprocessableProblem>()(
  "UnprocessableProblem",
  { type: `${problemTypeBase}unprocessable`, status: 422, title: "Unprocessable request" },
  problemFields
) {}

/**
 * 503: a dependency (database, acquirer) did not answer, or the acquirer's outcome is unknown.
 * Nothing was decided: retry with the same Idempotency-Key and the work resumes where it stopped.
 */
export class ServiceUnavailableProblem extends HttpApiError.Problem<ServiceUnavailableProblem>()(
  "ServiceUnavailableProblem",
  { type: `${problemTypeBase}service_unavailable`, status: 503, title: "Service unavailable" },
  problemFields
) {}

/** Errors every authenticated endpoint may answer. */
export const commonProblems = [BadRequestProblem, UnauthorizedProblem, ServiceUnavailableProblem] as const

export const DependencyCheck = Schema.Struct({
  name: Schema.String,
  status: Schema.Literals(["up", "down"]),
  latency_ms: Schema.Number,
  error: Schema.optionalKey(Schema.String)
})
export type DependencyCheck = typeof DependencyCheck.Type

/** 503 from `/health/ready`: names the dependency (or dependencies) that did not answer. */
export class DependencyUnavailable extends HttpApiError.Problem<DependencyUnavailable>()(
  "DependencyUnavailable",
  { type: `${problemTypeBase}dependency_unavailable`, status: 503, title: "A dependency is unavailable" },
  {
    code: Schema.Literal("dependency_unavailable"),
    detail: Schema.String,
    unavailable: Schema.Array(Schema.String),
    checks: Schema.Array(DependencyCheck)
  }
) {}
