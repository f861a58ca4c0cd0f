import { problemContentType, problemTypeBase, type ProblemBody } from "@pay/api"
import type { StoredResponse } from "@pay/idempotency"

const titles: Readonly<Record<number, string>> = {
  400: "Invalid request",
  401: "Unauthorized",
  404: "Not found",
  409: "Conflict",
  413: "Request body too large",
  415: "Unsupported media type",
  422: "Unprocessable request",
  500: "Internal error",
  503: "Service unavailable"
}

/**
 * One problem document (RFC 9457), rendered once to the exact bytes that are sent and, after
 * execution started, stored for replay. `type` is derived from the stable `code`.
 */
export const problem = (status: number, code: string, detail: string, field?: string): StoredResponse => {
  const body: ProblemBody = {
    type: `${problemTypeBase}${code}`,
    title: titles[status] ?? "Error",
    status,
    detail,
    code,
    ...(field === undefined ? {} : { field })
  }
  return { status, contentType: problemContentType, body: JSON.stringify(body) }
}

export const json = (status: number, value: unknown): StoredResponse => ({
  status,
  contentType: "application/json",
  body: JSON.stringify(value)
})
