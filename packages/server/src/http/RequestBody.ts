import { BodyTooLarge, BodyUnreadable, InvalidRequest, MalformedJson, REQUEST_BODY_BYTES_MAX, UnsupportedMediaType } from "@pay/api"
import { ByteSize, Effect, Result, Schema, SchemaIssue } from "effect"
import { HttpServerRequest } from "effect/http"

export type BodyError = BodyTooLarge | BodyUnreadable | UnsupportedMediaType | MalformedJson

/**
 * Reads the body, bounded: a declared Content-Length over the limit is refused before reading;
 * a chunked body is cut off at the limit. A refusal is answered, never stored (nothing executed yet).
 */
export const readJsonBody = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<Schema.Json | undefined, BodyError> =>
  Effect.gen(function* () {
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > REQUEST_BODY_BYTES_MAX) {
      return yield* new BodyTooLarge({ limit_bytes: REQUEST_BODY_BYTES_MAX, declared_bytes: declared })
    }
    const contentType = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? ""
    // A chunked body has no Content-Length to refuse up front: the read stops at MaxBodySize and
    // fails with reason BodyTooLarge, which is the client's 413, not an unreadable body.
    const text = yield* request.text.pipe(
      Effect.mapError((error) =>
        error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
          ? new BodyTooLarge({ limit_bytes: REQUEST_BODY_BYTES_MAX })
          : new BodyUnreadable()
      )
    )
    if (Buffer.byteLength(text, "utf8") > REQUEST_BODY_BYTES_MAX) return yield* new BodyTooLarge({ limit_bytes: REQUEST_BODY_BYTES_MAX })
    if (text.trim() === "") return undefined
    if (contentType !== "application/json") return yield* new UnsupportedMediaType({ contentType })
    const parsed = decodeJsonText(text)
    if (Result.isFailure(parsed)) return yield* new MalformedJson()
    return parsed.success
  }).pipe(Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.bytes(REQUEST_BODY_BYTES_MAX)))

const decodeJsonText = Schema.decodeUnknownResult(Schema.fromJsonString(Schema.Json))

/**
 * Decodes a value with a schema: unknown fields are errors, and the first issue names the field
 * and the reason (`amount: must be an integer …`).
 */
export const decodeBody = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, value: unknown) =>
  Schema.decodeUnknownEffect(schema)(value, { onExcessProperty: "error" }).pipe(
    Effect.mapError((error) => {
      const { field, message } = firstIssue(error.issue)
      return field === undefined
        ? new InvalidRequest({ detail: message })
        : new InvalidRequest({ detail: `${field}: ${message}`, field })
    })
  )

export const firstIssue = (issue: SchemaIssue.Issue): { readonly field: string | undefined; readonly message: string } => {
  const formatted = SchemaIssue.makeFormatterStandardSchemaV1()(issue).issues[0]
  if (formatted === undefined) return { field: undefined, message: String(issue) }
  const path = (formatted.path ?? []).map((segment) => String(typeof segment === "object" && segment !== null && "key" in segment ? segment.key : segment))
  return { field: path.length === 0 ? undefined : path.join("."), message: formatted.message }
}
