import { DependencyUnavailable, PaymentsApi } from "@pay/api"
import { Effect } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import { Readiness } from "./Readiness.ts"

export const SystemHandlers = HttpApiBuilder.group(
  PaymentsApi,
  "system",
  Effect.fn(function* (handlers) {
    const readiness = yield* Readiness
    return handlers.handleAll({
      live: () => Effect.succeed({ status: "ok" as const }),
      ready: () =>
        Effect.gen(function* () {
          const checks = yield* readiness.check
          const down = checks.filter((c) => c.status === "down")
          const unavailable = down.filter((c) => c.required).map((c) => c.name)
          if (unavailable.length > 0) {
            return yield* new DependencyUnavailable({
              detail: `not ready: ${unavailable.join(", ")} ${unavailable.length === 1 ? "does" : "do"} not answer`,
              unavailable,
              checks
            })
          }
          // Serving without a dependency that is not required: ready for the balancer, said in the body.
          const degraded = down.map((c) => c.name)
          return { status: degraded.length === 0 ? "ready" as const : "degraded" as const, degraded, checks }
        })
    })
  })
)
