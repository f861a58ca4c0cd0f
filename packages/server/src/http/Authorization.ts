import { Authorization, CurrentMerchant, ServiceUnavailableProblem, UnauthorizedProblem } from "@pay/api"
import { ApiKeys } from "@pay/idempotency"
import { Effect, Layer, Redacted } from "effect"

/** Bearer API keys: looked up by their SHA-256 hash; the merchant scopes everything after. */
export const AuthorizationLive = Layer.effect(
  Authorization,
  Effect.gen(function* () {
    const apiKeys = yield* ApiKeys
    return Authorization.of({
      bearer: Effect.fn("Authorization.bearer")(function* (httpEffect, { credential }) {
        const authenticated = yield* apiKeys.authenticate(Redacted.value(credential)).pipe(
          Effect.catchTags({
            Unauthorized: () =>
              new UnauthorizedProblem({
                code: "unauthorized",
                detail: "missing or invalid API key: send Authorization: Bearer <api key>"
              }),
            SqlError: () =>
              new ServiceUnavailableProblem({
                code: "database_unavailable",
                detail: "the database did not answer while checking the API key; retry"
              })
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
