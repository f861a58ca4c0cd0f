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

/** An id as the API mints them (`pay_…`, `re_…`, `we_…`): safe to put in a header as is. */
const createdIdPattern = /^[a-z]{2,4}_[0-9a-z]{1,64}$/

/**
 * The `Location` of a `201` (RFC 9110 §10.2.2): the created resource, i.e. the collection the POST
 * went to (`collectionPath`) and the answer's `id`. Derived from the stored answer, so a replay
 * carries the same header as the first answer; any other status has none.
 */
export const createdLocation = (response: StoredResponse, collectionPath: string): string | undefined => {
  if (response.status !== 201) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(response.body)
  } catch {
    return undefined // a stored 201 is always the JSON we rendered; nothing to point at otherwise
  }
  const id = typeof parsed === "object" && parsed !== null && "id" in parsed ? parsed.id : undefined
  return typeof id === "string" && createdIdPattern.test(id) ? `${collectionPath}/${id}` : undefined
}

/** `toHttpResponse` for an idempotent POST that creates under `collectionPath`: a 201 also says where. */
export const toCreatedHttpResponse = (
  response: StoredResponse,
  replayed: boolean,
  collectionPath: string
): HttpServerResponse.HttpServerResponse => {
  const http = toHttpResponse(response, replayed)
  const location = createdLocation(response, collectionPath)
  return location === undefined ? http : HttpServerResponse.setHeader(http, "location", location)
}
