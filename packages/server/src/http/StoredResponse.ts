import type { RunOutcome, StoredResponse } from "@pay/idempotency"
import { HttpServerResponse } from "effect/http"

/** The header that marks a replayed response (Stripe's name; the IETF draft leaves it open). */
export const IDEMPOTENT_REPLAYED_HEADER = "Idempotent-Replayed"

/**
 * The HTTP response for an idempotent request: the stored status, content type and body text,
 * sent as is (never re-encoded), so the first answer and every replay are the same bytes. A
 * replay carries `Idempotent-Replayed: true`.
 */
export const toHttpServerResponse = (outcome: RunOutcome): HttpServerResponse.HttpServerResponse =>
  storedToHttpServerResponse(outcome.response, outcome._tag === "Replayed")

export const storedToHttpServerResponse = (
  response: StoredResponse,
  replayed: boolean
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.text(response.body, {
    status: response.status,
    contentType: response.contentType,
    ...(replayed ? { headers: { [IDEMPOTENT_REPLAYED_HEADER]: "true" } } : {})
  })

/**
 * What the client gets: the exact bytes, marked when they are a replay; a 503 (never stored: the
 * outcome is unknown) also says when to retry.
 */
export const toHttpResponse = (response: StoredResponse, replayed: boolean): HttpServerResponse.HttpServerResponse => {
  const http = storedToHttpServerResponse(response, replayed)
  return response.status === 503 ? HttpServerResponse.setHeader(http, "retry-after", "1") : http
}
