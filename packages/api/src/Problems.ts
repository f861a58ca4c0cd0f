import { type ErrorCode, errorCatalog, errorCodes, statusOf } from "@pay/domain"
import { Schema } from "effect"
import { HttpApiError } from "effect/http-api"

/**
 * Every error the API answers is an RFC 9457 problem (`application/problem+json`) with `type`,
 * `title`, `status`, `detail`, a stable machine `code`, and the offending `field` where there is
 * one. There is one problem type per code of the error catalog (`@pay/domain` ErrorCatalog.ts):
 * its URI is this base + the code, and its status and title are the catalog's. The OpenAPI
 * document declares exactly these types, one schema each (`type` and `code` are constants).
 *
 * The type is a relative URI reference (RFC 9457 §3.1.1: resolved against the request's URI):
 * it resolves to this API's own page for the code, `GET /docs/problems/<code>` (what it means,
 * whether to retry), wherever the API is served.
 */
export const problemTypeBase = "/docs/problems/"
export const problemContentType = "application/problem+json"

export const problemType = (code: ErrorCode): string => `${problemTypeBase}${code}`

/** The members every problem body carries, whatever its code. */
export const ProblemBody = Schema.Struct({
  type: Schema.String,
  title: Schema.String,
  status: Schema.Int,
  detail: Schema.String,
  code: Schema.String,
  field: Schema.optionalKey(Schema.String)
})
export type ProblemBody = typeof ProblemBody.Type

/** `payment_not_found` → `PaymentNotFoundProblem` (the schema's name in the OpenAPI document). */
const problemName = (code: ErrorCode) =>
  `${code.split("_").map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join("")}Problem`

export interface CodedProblemMembers<Code extends ErrorCode> {
  readonly code: Code
  readonly detail: string
  readonly field?: string
}

/** The problem class of one code: its declaration (type, status, title) comes from the catalog. */
export const problemFor = <const Code extends ErrorCode>(code: Code) => {
  const made = HttpApiError.Problem<CodedProblemMembers<Code>>()(
    problemName(code),
    { type: problemType(code), status: statusOf(code), title: errorCatalog[code].title },
    { code: Schema.tag(code), detail: Schema.String, field: Schema.optionalKey(Schema.String) },
    { description: errorCatalog[code].meaning }
  )
  // Only reachable without a `Self` type, which is given above.
  if (typeof made === "string") throw new Error(made)
  return made
}

/** 401, raised by the authorization middleware (rendered by HttpApi itself). */
export class UnauthorizedProblem extends problemFor("unauthorized") {}

/** 503 from the authorization middleware: the database did not answer while checking the key. */
export class DatabaseUnavailableProblem extends problemFor("database_unavailable") {}

/** 500 from the authorization middleware: the database refused the key's lookup (a bug: a grant, the schema). */
export class InternalErrorProblem extends problemFor("internal_error") {}

export const DependencyCheck = Schema.Struct({
  name: Schema.String,
  status: Schema.Literals(["up", "down"]),
  /**
   * Whether the instance can serve without it: only a required dependency that is down makes the
   * instance unready (503). Postgres is; Redis (a cache in front of Postgres) and Kafka (events
   * wait in the outbox) are not: both are shared by every instance, and gating on them took every
   * instance out of rotation at once while payments worked (outside operator review).
   */
  required: Schema.Boolean,
  latency_ms: Schema.Number,
  error: Schema.optionalKey(Schema.String)
})
export type DependencyCheck = typeof DependencyCheck.Type

const dependencyUnavailable = "dependency_unavailable" satisfies ErrorCode

/** 503 from `/health/ready`: names the dependency (or dependencies) that did not answer. */
export class DependencyUnavailable extends HttpApiError.Problem<DependencyUnavailable>()(
  "DependencyUnavailable",
  {
    type: problemType(dependencyUnavailable),
    status: statusOf(dependencyUnavailable),
    title: errorCatalog[dependencyUnavailable].title
  },
  {
    code: Schema.tag(dependencyUnavailable),
    detail: Schema.String,
    unavailable: Schema.Array(Schema.String),
    checks: Schema.Array(DependencyCheck)
  },
  { description: errorCatalog[dependencyUnavailable].meaning }
) {}

type ProblemSchema = Schema.Top & { readonly DecodingServices: never; readonly EncodingServices: never }

const problemSchemaOf = (code: ErrorCode): ProblemSchema => {
  switch (code) {
    case "unauthorized":
      return UnauthorizedProblem
    case "database_unavailable":
      return DatabaseUnavailableProblem
    case "internal_error":
      return InternalErrorProblem
    case "dependency_unavailable":
      return DependencyUnavailable
    default:
      return problemFor(code)
  }
}

/** One problem schema per code (the classes above for the codes that have one), built once. */
const problemSchemas: ReadonlyMap<ErrorCode, ProblemSchema> = new Map(errorCodes.map((code) => [code, problemSchemaOf(code)]))

/** The problem schemas of the given codes, for an endpoint's `error` list. */
export const problems = (...codes: ReadonlyArray<ErrorCode>) =>
  codes.map((code) => {
    const schema = problemSchemas.get(code)
    if (schema === undefined) throw new Error(`no problem schema for ${code}`)
    return schema
  })

/**
 * Errors any request may get at the HTTP edge, whatever its endpoint: a duplicated header or query
 * parameter (`invalid_request`), headers or body too slow (`request_timeout`, answered by the socket
 * layer), headers too large (`headers_too_large`). `method_not_allowed` is listed on every
 * operation because OpenAPI has no place for a path's answer to a method it does not take: each
 * path answers it (with `Allow`) for the methods not documented under it.
 */
export const edgeProblemCodes = [
  "invalid_request",
  "method_not_allowed",
  "request_timeout",
  "headers_too_large"
] as const satisfies ReadonlyArray<ErrorCode>

/** Errors every authenticated endpoint may answer: the edge's, the key's, its rate limits, an outage, a bug. */
export const commonProblemCodes = [
  ...edgeProblemCodes,
  "unauthorized",
  "authentication_rate_limited",
  "rate_limited",
  "database_unavailable",
  "invariant_violation",
  "internal_error"
] as const satisfies ReadonlyArray<ErrorCode>

/** What every idempotent POST (payments, webhooks) may answer besides its own refusals (the body, the key, an unknown outcome). */
export const postProblemCodes = [
  ...commonProblemCodes,
  "malformed_json",
  "body_unreadable",
  "body_too_large",
  "unsupported_media_type",
  "idempotency_key_missing",
  "idempotency_key_invalid",
  "idempotency_key_reused",
  "idempotency_key_in_use"
] as const satisfies ReadonlyArray<ErrorCode>
