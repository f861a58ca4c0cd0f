import { HttpBody, HttpServerResponse } from "effect/http"

/**
 * The public documents (`/docs`: Scalar's page, ~3.5 MB; `/openapi.json`, ~0.54 MB) as bytes built
 * once and shared by every answer. The library memoizes their answers as text, and the Node adapter
 * writes a text body as a string, which Node encodes into a new buffer on every write: an outside
 * limits review pipelined 16 `GET /docs` on each of 50 connections without reading and took the
 * server from 492 to 953 MB (~9 MB a connection) while other clients' probes timed out. A body of
 * bytes is written by reference: every answer of a document points at the same buffer.
 * One entry per path (two paths), replaced only if the library's text changes (it does not).
 */
const shared = new Map<string, { readonly text: string; readonly body: HttpBody.Uint8Array }>()

export const documentPaths: ReadonlySet<string> = new Set(["/docs", "/openapi.json"])

export const withSharedBytes = (path: string, response: HttpServerResponse.HttpServerResponse): HttpServerResponse.HttpServerResponse => {
  const body = response.body
  if (!documentPaths.has(path) || body._tag !== "Uint8Array" || body.text === undefined) return response
  let entry = shared.get(path)
  // The library hands out the same string each time: compared by reference first, in O(1).
  if (entry === undefined || entry.text !== body.text) {
    entry = { text: body.text, body: HttpBody.uint8Array(Buffer.from(body.text, "utf8"), body.contentType) }
    shared.set(path, entry)
  }
  return HttpServerResponse.setBody(response, entry.body)
}
