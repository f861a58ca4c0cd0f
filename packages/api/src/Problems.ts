import { Schema } from "effect"
import { HttpApiError } from "effect/http-api"

/**
 * Every error the API answers is an RFC 9457 problem (`application/problem+json`) with `type`,
 * `title`, `status`, `detail`, a stable machine `code`, and the offending `field` where there is
 * one. Problem types are URIs under this base.
 */
export const problemTypeBase = "https://docs.payments.local/problems/"

export const DependencyCheck = Schema.Struct({
  name: Schema.String,
  status: Schema.Literals(["up", "down"]),
  latency_ms: Schema.Number,
  error: Schema.optionalKey(Schema.String)
})
export type DependencyCheck = typeof DependencyCheck.Type

/** 503: a dependency the platform needs did not answer. Names the missing one(s). */
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
