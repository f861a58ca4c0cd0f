import { Schema } from "effect"
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "effect/http-api"
import { DependencyCheck, DependencyUnavailable, edgeProblemCodes, problems } from "./Problems.ts"

export const Liveness = Schema.Struct({ status: Schema.Literal("ok") })
export const Readiness = Schema.Struct({ status: Schema.Literal("ready"), checks: Schema.Array(DependencyCheck) })

/** Probes for load balancers and operators. No authentication. */
export class SystemApi extends HttpApiGroup.make("system", { topLevel: true })
  .add(
    HttpApiEndpoint.get("live", "/health/live", { success: Liveness, error: problems(...edgeProblemCodes) })
      .annotate(OpenApi.Description, "200 while the process answers HTTP; checks nothing else."),
    HttpApiEndpoint.get("ready", "/health/ready", { success: Readiness, error: [DependencyUnavailable, ...problems(...edgeProblemCodes)] })
      .annotate(OpenApi.Description, "200 when Postgres, Redis and Kafka answer; 503 dependency_unavailable names those that do not.")
  )
  .annotateMerge(OpenApi.annotations({
    title: "System",
    description: "Liveness (the process answers) and readiness (Postgres, Redis and Kafka answer)."
  }))
{}
