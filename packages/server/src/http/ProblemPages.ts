import { problemTypeBase, RouteNotFound } from "@pay/api"
import { errorCatalog, type ErrorCode, errorCodes, type Retry } from "@pay/domain"
import { Effect } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { problemHttpResponse } from "./Respond.ts"

/**
 * Every problem `type` is a URI reference to this API's own page for its code
 * (`/docs/problems/<code>`): what it means, its status, and whether and how to retry, from the
 * error catalog, the same rows as docs/api.md's table.
 */

const retryAdvice: Readonly<Record<Retry, string>> = {
  no: "No: fix the request first; the same request is refused again.",
  same_key: "Yes: send the same request with the same Idempotency-Key; it finishes the work exactly once.",
  same_key_later: "Yes, after a short wait (Retry-After when sent), with the same request and Idempotency-Key.",
  no_stored: "Not with this key: the answer is stored for it. Read the payment; a new key asks again."
}

const escapeHtml = (text: string) =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll("\"", "&quot;")

/** `backticks` become <code>; everything else is escaped. */
const inline = (text: string) => escapeHtml(text).replace(/`([^`]+)`/g, "<code>$1</code>").replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")

export const problemPage = (code: ErrorCode): string => {
  const entry = errorCatalog[code]
  return [
    "<!doctype html>",
    `<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(code)}: ${escapeHtml(entry.title)}</title></head><body>`,
    `<h1><code>${escapeHtml(code)}</code></h1>`,
    `<p>HTTP ${entry.status} ${escapeHtml(entry.title)}</p>`,
    `<p>${inline(entry.meaning)}</p>`,
    `<p><strong>Retry?</strong> ${escapeHtml(retryAdvice[entry.retry])}</p>`,
    `<p><a href="/docs">API reference</a> · <a href="/openapi.json">OpenAPI document</a></p>`,
    "</body></html>"
  ].join("\n")
}

const isErrorCode = (code: string): code is ErrorCode => errorCodes.some((known) => known === code)

export const ProblemPagesRoute = HttpRouter.add(
  "GET",
  `${problemTypeBase}:code`,
  Effect.gen(function* () {
    const params = yield* HttpRouter.params
    const code = params["code"] ?? ""
    return isErrorCode(code)
      ? HttpServerResponse.text(problemPage(code), { contentType: "text/html; charset=utf-8" })
      : problemHttpResponse(new RouteNotFound({ method: "GET", path: `${problemTypeBase}${code.slice(0, 100)}` }))
  })
)
