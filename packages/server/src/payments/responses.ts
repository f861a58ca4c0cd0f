import { type StoredResponse, storedToHttpServerResponse } from "@pay/idempotency"
import { Effect } from "effect"
import { HttpServerResponse } from "effect/http"
import { problem } from "../http/Problem.ts"

/**
 * The exact stored bytes, with `Idempotent-Replayed: true` when they are a replay; a 503 (never
 * stored) also says when to retry.
 */
export const toHttpResponse = (response: StoredResponse, replayed: boolean): HttpServerResponse.HttpServerResponse => {
  const http = storedToHttpServerResponse(response, replayed)
  return response.status === 503 ? HttpServerResponse.setHeader(http, "retry-after", "1") : http
}

interface Tagged {
  readonly _tag: string
  readonly message?: string
}

const isTagged = (error: unknown): error is Tagged =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string"

/**
 * Errors that end a request without a decided outcome, as problems. None of these is stored:
 * the idempotency key is released and a retry with the same key resumes.
 * A database that does not answer is a 503 (a dependency is down); any other unexpected error is
 * a 500 — a bug — and is logged with its cause.
 */
export const errorProblem = (error: unknown): StoredResponse => {
  if (!isTagged(error)) return problem(500, "internal_error", "an unexpected error occurred; it has been logged")
  const message = error.message ?? error._tag
  switch (error._tag) {
    case "IdempotencyKeyReused":
      return problem(422, "idempotency_key_reused", message, "Idempotency-Key")
    case "IdempotencyKeyInUse":
    case "IdempotencyLockLost":
      return problem(409, "idempotency_key_in_use", message, "Idempotency-Key")
    case "AcquirerTimeout":
      return problem(503, "acquirer_timeout", `${message}. Retry with the same Idempotency-Key to finish it.`)
    case "AcquirerUnavailable":
      return problem(503, "acquirer_unavailable", `${message}. Nothing was decided; retry with the same Idempotency-Key.`)
    case "SettlementUnavailable":
      return problem(503, "settlement_unavailable", `${message}. Nothing was committed; retry with the same Idempotency-Key.`)
    case "SqlError":
      return problem(503, "database_unavailable", "the database did not complete the request; retry with the same Idempotency-Key")
    default:
      return problem(500, "internal_error", `an unexpected error occurred (${error._tag}); it has been logged`)
  }
}

/**
 * Answers an error as its problem document; a 5xx is logged at ERROR with what failed (a 503 names
 * a dependency; a 500 is a bug).
 */
export const respondToError = (error: unknown) =>
  Effect.gen(function* () {
    const response = errorProblem(error)
    if (response.status >= 500) {
      yield* Effect.logError("request failed", { status: response.status, error: isTagged(error) ? error._tag : String(error), detail: describe(error) })
    }
    return toHttpResponse(response, false)
  })

/** A defect (a bug) still answers one problem document, and is logged at ERROR with its cause. */
export const answerDefects = <R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, never, R>) =>
  handler.pipe(
    Effect.catchDefect((defect) =>
      Effect.logError("request failed with a defect", defect).pipe(
        Effect.as(toHttpResponse(problem(500, "internal_error", "an unexpected error occurred; it has been logged"), false))
      )
    )
  )

const describe = (error: unknown): string =>
  isTagged(error) && typeof error.message === "string" ? error.message : String(error)
