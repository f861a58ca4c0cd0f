import { type Answer, call as callWith, field, HttpCallError, type RequestOptions } from "@pay/testkit/HttpCall"

export { type Answer, field, HttpCallError }

/** Every scenario request is cut off after this unless the call says otherwise. */
export const requestTimeout_ms = 15_000

export type CallOptions = Omit<RequestOptions, "timeout_ms"> & { readonly timeout_ms?: number }

/** One HTTP call (`@pay/testkit/HttpCall`), bounded by `timeout_ms` or 15 s. */
export const call = (baseUrl: string, method: string, path: string, options: CallOptions = {}) =>
  callWith(baseUrl, method, path, { ...options, timeout_ms: options.timeout_ms ?? requestTimeout_ms })

/** `201 pay_… CREATED`-style one-liner for evidence. */
export const brief = (answer: Answer): string =>
  `${answer.status}${answer.replayed ? " (replayed)" : ""} ${field(answer, "code") || field(answer, "status")} ${field(answer, "id")}`.trim()
