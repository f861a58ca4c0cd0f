import {
  Authorization,
  AuthenticationRateLimited,
  ConcurrencyLimited,
  CurrentMerchant,
  DatabaseUnavailable,
  DatabaseUnavailableProblem,
  InternalError,
  InternalErrorProblem,
  RateLimited,
  UnauthorizedProblem
} from "@pay/api"
import { annotateRequest, sqlFailureKind } from "@pay/infra"
import { ApiKeys, isWellFormedApiKey } from "@pay/merchants"
import { Effect, Layer, Option, Redacted } from "effect"
import { HttpServerRequest } from "effect/http"
import type { SqlError } from "effect/sql/SqlError"
import { authenticationSourceOf } from "./ClientAddress.ts"
import { problemDocument } from "./Problem.ts"
import { receiveBodyFirst } from "./RequestBody.ts"
import { concurrencyRetryAfter_s, MerchantInFlight, type Refusal } from "./MerchantInFlight.ts"
import { RateLimits } from "./RateLimits.ts"
import { logRequestFailed, problemHttpResponse } from "./Respond.ts"

/**
 * Bearer API keys: looked up by their SHA-256 hash; the merchant scopes everything after. The
 * middleware's problems are rendered by HttpApi from its declared problem classes; their words
 * are the errors' own (Problem.ts). The rate limits answer before the key is looked up (a source
 * over its failed authentications) and right after (a merchant over its rate, then over its
 * requests in flight: MerchantInFlight.ts), before any idempotency work: their 429s carry
 * `Retry-After`. The lookup itself is one attempt of the
 * source (RateLimits.ts): counted from its start, so no number of concurrent requests gets more
 * than the limit of keys looked up and refused. The source is the client's address as
 * ClientAddress.ts resolved it (the peer, or behind a trusted proxy the address it forwarded).
 */
export const AuthorizationLive = Layer.effect(
  Authorization,
  Effect.gen(function* () {
    const apiKeys = yield* ApiKeys
    const limits = yield* RateLimits
    const inFlight = yield* MerchantInFlight
    return Authorization.of({
      bearer: Effect.fn("Authorization.bearer")(function* (httpEffect, { credential }) {
        const request = yield* HttpServerRequest.HttpServerRequest
        const source = authenticationSourceOf(Option.getOrElse(request.remoteAddress, () => "unknown"))
        const secret = Redacted.value(credential)
        const lookup = apiKeys.authenticate(secret)
        // Only a key of the right form is an attempt of the source: one that cannot be a key (none
        // sent, or not of the form) is refused by `authenticate` without a lookup; it costs nothing
        // and guesses nothing. Counted, twenty of them (a probe without its key behind a merchant's
        // NAT) locked that address's valid keys out for the window (outside review).
        const attemptOf = isWellFormedApiKey(secret)
          ? limits.authenticationAttempt(source, lookup, (error) => error._tag === "Unauthorized")
          : Effect.map(lookup, (value) => ({ _tag: "LookedUp" as const, value }))
        const attempt = yield* attemptOf.pipe(
          Effect.catchTags({
            Unauthorized: (error) => new UnauthorizedProblem({ detail: problemDocument(error).detail }),
            // Only a database that did not answer is a 503; a refusal of the key's lookup is a bug (Respond.ts).
            SqlError: (error) =>
              sqlFailureKind(error) === "unavailable"
                ? unavailableDuringAuthentication(error)
                : Effect.logError("authentication failed", error).pipe(
                  Effect.andThen(Effect.fail(new InternalErrorProblem({ detail: problemDocument(new InternalError({ failed: "the API key lookup" })).detail })))
                )
          })
        )
        switch (attempt._tag) {
          case "Refused":
            // Told apart from a merchant's 429s on the access line (outside re-test: it had no code).
            yield* annotateRequest({ code: "authentication_rate_limited" })
            return problemHttpResponse(
              new AuthenticationRateLimited({ failures_max: limits.settings.authenticationFailures_max, retry_after_s: attempt.retryAfter_s })
            )
          case "WaitedTooLong":
            // The source's earlier lookups have held every place that long: the database is not answering them.
            return yield* unavailableDuringAuthentication()
          case "LookedUp":
            break
        }
        const authenticated = attempt.value
        // On the access line and the span from here on: a 429 of the merchant's limits names whose
        // it is (outside operator review: the refusals' lines had no merchant).
        yield* annotateRequest({ merchant_id: authenticated.merchantId })
        const rate = yield* limits.merchantRequest(authenticated.merchantId)
        if (!rate.allowed) {
          yield* annotateRequest({ code: "rate_limited", refusal: "merchant_requests" })
          return problemHttpResponse(new RateLimited({
            requests_max: limits.settings.merchantRequests_max,
            window_ms: limits.settings.merchantWindow_ms,
            retry_after_s: rate.retryAfter_s
          }))
        }
        // The body first (RequestBody.ts `receiveBodyFirst`): an upload in progress holds no place.
        yield* receiveBodyFirst(request)
        // The request is served in one of the merchant's places (it waits, bounded, for one):
        // however many it sends at once, it holds at most its share of the pool.
        const served = yield* inFlight.serve(
          authenticated.merchantId,
          Effect.provideService(httpEffect, CurrentMerchant, { merchantId: authenticated.merchantId, apiKeyId: authenticated.apiKeyId })
        )
        if (served._tag === "Served") return served.value
        // The access line says why (outside operator drill): the merchant's burst fills its queue
        // (queue_full), or its requests wait too long behind slow ones (queue_wait: a slow database, a cold start).
        yield* annotateRequest({ code: "rate_limited", refusal: served.reason })
        return problemHttpResponse(concurrencyLimited(inFlight.settings, served.reason))
      })
    })
  })
)

/**
 * The 503 of a key's lookup the database does not answer, with its `request failed` line naming
 * `cause` (the driver's failure; absent: the lookups that waited too long for a place).
 */
const unavailableDuringAuthentication = (cause?: SqlError) => {
  const unavailable = new DatabaseUnavailable({ during: "authentication" })
  return logRequestFailed(503, unavailable.code, cause ?? unavailable).pipe(
    Effect.andThen(Effect.fail(new DatabaseUnavailableProblem({ detail: problemDocument(unavailable).detail })))
  )
}

const concurrencyLimited = (settings: MerchantInFlight["Service"]["settings"], reason: Refusal) =>
  new ConcurrencyLimited({
    reason,
    in_flight_max: settings.inFlight_max,
    queued_max: settings.queued_max,
    wait_ms_max: settings.queueWait_ms_max,
    merchants_max: settings.merchants_max,
    retry_after_s: concurrencyRetryAfter_s
  })
