import { type Answer, call as callWith, HttpCallError, jsonObjectOf, type RequestOptions as BoundedOptions } from "@pay/testkit/HttpCall"

export { type Answer, HttpCallError }

/** Every request in these tests is cut off after this: a hung server fails the test, never the suite. */
export const requestTimeout_ms = 10_000

export type RequestOptions = Omit<BoundedOptions, "timeout_ms"> & { readonly timeout_ms?: number | undefined }

/** One HTTP call (`@pay/testkit/HttpCall`), bounded by `timeout_ms` or 10 s. */
export const call = (baseUrl: string, method: string, path: string, options: RequestOptions = {}) =>
  callWith(baseUrl, method, path, { ...options, timeout_ms: options.timeout_ms ?? requestTimeout_ms })

/** The body as JSON; a body that is not a JSON object fails the test with the text it got. */
export const jsonOf = (answer: Answer): { readonly [field: string]: unknown } => {
  const body = jsonObjectOf(answer)
  if (body === undefined) throw new Error(`expected a JSON object, got: ${answer.text.slice(0, 500)}`)
  return body
}

export const stringField = (answer: Answer, field: string): string => {
  const value = jsonOf(answer)[field]
  if (typeof value !== "string") throw new Error(`expected "${field}" to be a string in ${answer.text.slice(0, 500)}`)
  return value
}
