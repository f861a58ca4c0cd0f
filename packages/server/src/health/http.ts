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
          const unavailable = checks.filter((c) => c.status === "down").map((c) => c.name)
          if (unavailable.length > 0) {
            return yield* new DependencyUnavailable({
              detail: `not ready: ${unavailable.join(", ")} ${unavailable.length === 1 ? "does" : "do"} not answer`,
              unavailable,
              checks
            })
          }
          return { status: "ready" as const, checks }
        })
    })
  })
)
