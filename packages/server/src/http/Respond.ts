import { DatabaseUnavailable, InternalError, InvariantViolation } from "@pay/api"
import { sqlFailureKind, sqlStateOf } from "@pay/infra"
import { Cause, Effect, Fiber } from "effect"
import { HttpServerResponse } from "effect/http"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import { type ApiError, apiErrorClasses } from "./ApiErrors.ts"
import { RequestPlace } from "./MerchantInFlight.ts"
import { problemResponse } from "./Problem.ts"
import { toHttpResponse } from "./StoredResponse.ts"

/**
 * A database failure as the API's error, by its SQLSTATE (`@pay/infra` SqlFailure.ts): a database
 * that did not complete the statement is 503 `database_unavailable` (a dependency is down or
 * contended; retry with the same key); a write it refused is 500 `invariant_violation` (the code's
 * own check missed it: a bug); any other refusal is 500 `internal_error`.
 */
export const sqlFailureAnswer = (error: SqlError): DatabaseUnavailable | InvariantViolation | InternalError => {
  switch (sqlFailureKind(error)) {
    case "unavailable":
      return new DatabaseUnavailable({ during: "request" })
    case "invariant_violation":
      return new InvariantViolation({})
    case "bug":
      return new InternalError({ failed: "a database statement" })
  }
}

/**
 * Runs a request's idempotent work to its end even when the client goes away: the HTTP server
 * interrupts a request's fiber when its connection closes, and an authorize or settle cut between
 * its statements left its key leased (`409 idempotency_key_in_use` to every retry) until the
 * completer took it over 30 s later. The work runs in a fiber of its own (it keeps the request's
 * context: spans, logs, services) and the request waits for it; an interrupted request stops
 * waiting, the work stores its answer, and the client's retry replays it. Every step of the work
 * is bounded by its own timeouts; a server shutting down ends it like a crash (the completer).
 * The work holds the request's place among its merchant's requests in flight until it ends.
 */
export const finishEvenIfClientLeaves = <A, E, R>(work: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(RequestPlace, (place) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function* () {
        // The work keeps the merchant's place in flight until it ends (MerchantInFlight.ts):
        // hanging up must not free a place while the work still uses the pool.
        const release = yield* place.hold
        const fiber = yield* Effect.forkDetach(Effect.ensuring(work, release))
        return yield* restore(Fiber.join(fiber))
      })
    ))

/**
 * The `request failed` ERROR line of a 5xx (docs/observability.md): its status and code, and what
 * failed (the SQLSTATE and the driver's reason for a database failure). Written wherever a 5xx is
 * answered: here, and by the authorization middleware, whose 503s of a database outage (every
 * request fails at the key's lookup) left only an access line (outside operator review).
 */
export const logRequestFailed = (status: number, code: string, error: { readonly _tag: string; readonly message: string }) =>
  Effect.logError("request failed", {
    status,
    code,
    error: error._tag,
    ...(isSqlError(error) ? { sqlstate: sqlStateOf(error) ?? "none", reason: error.reason._tag } : {}),
    detail: error.message
  })

/**
 * Errors that end a request without a decided outcome, as problems. None of these is stored:
 * the idempotency key is released and a retry with the same key resumes. A 5xx is logged at
 * ERROR with what failed (a database failure with its SQLSTATE).
 */
export const respondToError = (error: ApiError | SqlError) =>
  Effect.gen(function* () {
    const answered = isSqlError(error) ? sqlFailureAnswer(error) : error
    const response = problemHttpResponse(answered)
    if (response.status >= 500) yield* logRequestFailed(response.status, answered.code, error)
    return response
  })

/**
 * `Retry-After` of a `409 idempotency_key_in_use`, in seconds (RFC 9110 §10.2.3 allows it on any
 * status). The key is held while its request's work runs: a create's one statement takes
 * milliseconds, an authorize, settle, cancel or refund one acquirer call (tens to hundreds of
 * milliseconds; past `ACQUIRER_TIMEOUT_MS`, 2 s by default, the run answers 503 and lets the key
 * go). A second covers a normal run, so the retry usually gets the stored answer; a run that died
 * holds its key for its lease (`IDEMPOTENCY_LOCK_TIMEOUT_MS`), and each retry meanwhile is another
 * cheap 409 with the same header. The same second as every 503's `Retry-After`.
 */
export const KEY_IN_USE_RETRY_AFTER_S = 1

/**
 * The HTTP answer of a refusal that is never stored: its problem document, with the headers its
 * code calls for (`Allow` on a 405, `Retry-After` on a 429, on a 409 idempotency_key_in_use and,
 * as for every 503, on a 503).
 */
export const problemHttpResponse = (error: ApiError): HttpServerResponse.HttpServerResponse => {
  const response = toHttpResponse(problemResponse(error), false)
  switch (error._tag) {
    case "MethodNotAllowed":
      return HttpServerResponse.setHeader(response, "allow", error.allow.join(", "))
    case "RateLimited":
    case "ConcurrencyLimited":
    case "AuthenticationRateLimited":
      return HttpServerResponse.setHeader(response, "retry-after", String(error.retry_after_s))
    case "IdempotencyKeyInUse":
    case "IdempotencyLockLost":
      return HttpServerResponse.setHeader(response, "retry-after", String(KEY_IN_USE_RETRY_AFTER_S))
    default:
      return response
  }
}

const isApiError = (defect: unknown): defect is ApiError => apiErrorClasses.some((errorClass) => defect instanceof errorClass)

/**
 * A defect (a bug) still answers one problem document, and is logged at ERROR with its cause.
 * Two kinds of defect are not bugs. effect/sql runs the ROLLBACK of a failed transaction with
 * `orDie`, and when a COMMIT and its cleanup both fail it promotes every failure of the
 * transaction to a defect: with the connection gone (reset mid-transaction), an SqlError or the
 * request's own typed error (e.g. SettlementUnavailable) arrives as a defect. The transaction did
 * not commit; the answer is that error's own (503, retry with the same key), not a 500
 * internal_error. Found by `pnpm scenario postgres-connections-dropped`.
 */
export const answerDefects = <R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, never, R>) =>
  handler.pipe(
    Effect.catchDefect((defect) =>
      isSqlError(defect) || isApiError(defect)
        ? respondToError(defect)
        : Effect.logError("request failed with a defect", defect).pipe(
          Effect.as(toHttpResponse(problemResponse(new InternalError({})), false))
        )
    )
  )

/**
 * Any failure of a handler: answered as its problem, defects included. A typed failure is answered
 * even when the cause also carries a defect: a transaction that failed on a reset connection ends
 * with its own error plus the defect of its ROLLBACK on that dead connection (effect/sql runs the
 * rollback with `orDie`), and the request's outcome is its own error (e.g. 503
 * settlement_unavailable), not a 500.
 */
export const answerErrors = <R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, ApiError | SqlError, R>) =>
  answerDefects(handler.pipe(Effect.catchCause((cause) => {
    const found = Cause.findError(cause)
    return found._tag === "Success" ? respondToError(found.success) : Effect.failCause(found.failure)
  })))
