import { Authorization, CurrentMerchant, DatabaseUnavailable, DatabaseUnavailableProblem, UnauthorizedProblem } from "@pay/api"
import { ApiKeys } from "@pay/merchants"
import { Effect, Layer, Redacted } from "effect"
import { problemDocument } from "./Problem.ts"

/**
 * Bearer API keys: looked up by their SHA-256 hash; the merchant scopes everything after. The
 * middleware's problems are rendered by HttpApi from its declared problem classes; their words
 * are the errors' own (Problem.ts).
 */
export const AuthorizationLive = Layer.effect(
  Authorization,
  Effect.gen(function* () {
    const apiKeys = yield* ApiKeys
    return Authorization.of({
      bearer: Effect.fn("Authorization.bearer")(function* (httpEffect, { credential }) {
        const authenticated = yield* apiKeys.authenticate(Redacted.value(credential)).pipe(
          Effect.catchTags({
            Unauthorized: (error) => new UnauthorizedProblem({ detail: problemDocument(error).detail }),
            SqlError: () =>
              new DatabaseUnavailableProblem({ detail: problemDocument(new DatabaseUnavailable({ during: "authentication" })).detail })
          })
        )
        return yield* Effect.provideService(httpEffect, CurrentMerchant, {
          merchantId: authenticated.merchantId,
          apiKeyId: authenticated.apiKeyId
        })
      })
    })
  })
)
