import { Schema } from "effect"
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "effect/http-api"
import { DependencyCheck, DependencyUnavailable, edgeProblemCodes, problems } from "./Problems.ts"

export const Liveness = Schema.Struct({ status: Schema.Literal("ok") })
/**
 * 200: the instance can serve. `degraded` names the dependencies that are down without stopping it
 * (Redis: replays and markers come from Postgres; Kafka: events wait in the outbox); `status` is
 * `degraded` while any is, `ready` when every dependency answers.
 */
export const Readiness = Schema.Struct({
  status: Schema.Literals(["ready", "degraded"]),
  degraded: Schema.Array(Schema.String),
  checks: Schema.Array(DependencyCheck)
})

/** Probes for load balancers and operators. No authentication. */
export class SystemApi extends HttpApiGroup.make("system", { topLevel: true })
  .add(
    HttpApiEndpoint.get("live", "/health/live", { success: Liveness, error: problems(...edgeProblemCodes) })
      .annotate(OpenApi.Description, "200 while the process answers HTTP; checks nothing else."),
    HttpApiEndpoint.get("ready", "/health/ready", { success: Readiness, error: [DependencyUnavailable, ...problems(...edgeProblemCodes)] })
      .annotate(OpenApi.Description, "200 when the instance can serve: Postgres answers (status `ready`, or `degraded` naming Redis or Kafka when they do not: the API works without them); 503 dependency_unavailable when Postgres does not answer.")
  )
  .annotateMerge(OpenApi.annotations({
    title: "System",
    description: "Liveness (the process answers) and readiness (Postgres answers; Redis and Kafka are reported, not required)."
  }))
{}
