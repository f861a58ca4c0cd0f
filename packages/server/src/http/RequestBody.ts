import { REQUEST_BODY_MAX_BYTES } from "@pay/api"
import type { StoredResponse } from "@pay/idempotency"
import { ByteSize, Effect, Result, Schema, SchemaIssue } from "effect"
import { HttpServerRequest } from "effect/http"
import { problem } from "./Problem.ts"

/**
 * Reads the body, bounded: a declared Content-Length over the limit is refused before reading;
 * a chunked body is cut off at the limit. Answers a problem (never stored: nothing executed yet).
 */
export const readJsonBody = (
  request: HttpServerRequest.HttpServerRequest
): Effect.Effect<Schema.Json | undefined, StoredResponse> =>
  Effect.gen(function* () {
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > REQUEST_BODY_MAX_BYTES) {
      return yield* Effect.fail(problem(413, "body_too_large", `the body is ${declared} bytes; at most ${REQUEST_BODY_MAX_BYTES} are accepted`))
    }
    const contentType = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? ""
    // A chunked body has no Content-Length to refuse up front: the read stops at MaxBodySize and
    // fails with reason BodyTooLarge, which is the client's 413, not an unreadable body.
    const text = yield* request.text.pipe(
      Effect.mapError((error) =>
        error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
          ? problem(413, "body_too_large", `the body is over ${REQUEST_BODY_MAX_BYTES} bytes`)
          : problem(400, "body_unreadable", "the request body could not be read")
      )
    )
    if (Buffer.byteLength(text, "utf8") > REQUEST_BODY_MAX_BYTES) {
      return yield* Effect.fail(problem(413, "body_too_large", `the body is over ${REQUEST_BODY_MAX_BYTES} bytes`))
    }
    if (text.trim() === "") return undefined
    if (contentType !== "application/json") {
      return yield* Effect.fail(problem(415, "unsupported_media_type", `send the body as application/json (got ${JSON.stringify(contentType)})`))
    }
    const parsed = decodeJsonText(text)
    if (Result.isFailure(parsed)) {
      return yield* Effect.fail(problem(400, "malformed_json", "the body is not valid JSON"))
    }
    return parsed.success
  }).pipe(Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.bytes(REQUEST_BODY_MAX_BYTES)))

const decodeJsonText = Schema.decodeUnknownResult(Schema.fromJsonString(Schema.Json))

/**
 * Decodes a value with a schema: unknown fields are errors, and the first issue names the field
 * and the reason (`amount: must be an integer …`).
 */
export const decodeBody = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, value: unknown) =>
  Schema.decodeUnknownEffect(schema)(value, { onExcessProperty: "error" }).pipe(
    Effect.mapError((error) => {
      const { field, message } = firstIssue(error.issue)
      return problem(400, "invalid_request", field === undefined ? message : `${field}: ${message}`, field)
    })
  )

const firstIssue = (issue: SchemaIssue.Issue): { readonly field: string | undefined; readonly message: string } => {
  const formatted = SchemaIssue.makeFormatterStandardSchemaV1()(issue).issues[0]
  if (formatted === undefined) return { field: undefined, message: String(issue) }
  const path = (formatted.path ?? []).map((segment) => String(typeof segment === "object" && segment !== null && "key" in segment ? segment.key : segment))
  return { field: path.length === 0 ? undefined : path.join("."), message: formatted.message }
}
