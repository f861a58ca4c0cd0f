import { InvalidRequest, MethodNotAllowed, PaymentsApi, problemTypeBase, RouteNotFound, securityHeaders } from "@pay/api"
import { correlationHttpHeader, correlationIdFrom, CurrentCorrelationId } from "@pay/infra"
import { Cause, Effect, Result } from "effect"
import { HttpRouter, HttpServerError, HttpServerRequest, HttpServerResponse } from "effect/http"
import { HttpApiError, OpenApi } from "effect/http-api"
import type { ApiError } from "./ApiErrors.ts"
import { firstIssue } from "./RequestBody.ts"
import { problemHttpResponse } from "./Respond.ts"
import { withSharedBytes } from "./DocumentBytes.ts"

/**
 * The HTTP edge in front of every route: what the router and HttpApi would otherwise answer with
 * an empty body (unknown path or method, a query string or header the endpoint's schema refuses)
 * is a problem document of the catalog, and every response carries a `Request-Id` (the same id as
 * its `X-Request-Id`).
 */

/** Routes served beside the contract (all GET): the document, its page, and each problem type's page. */
const extraRoutes = ["/openapi.json", "/docs", `${problemTypeBase}{code}`]

const methodNames = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

interface RouteEntry {
  readonly pattern: RegExp
  /** Method (upper case) → the query parameters its operation declares (`undefined`: not checked). */
  readonly methods: ReadonlyMap<string, ReadonlyArray<string> | undefined>
}

const queryNamesOf = (operation: unknown): ReadonlyArray<string> => {
  const parameters: unknown = typeof operation === "object" && operation !== null && "parameters" in operation ? operation.parameters : []
  return (Array.isArray(parameters) ? parameters : []).flatMap((parameter: unknown) =>
    typeof parameter === "object" && parameter !== null && "in" in parameter && parameter.in === "query" &&
      "name" in parameter && typeof parameter.name === "string"
      ? [parameter.name]
      : []
  )
}

/** Every path of the contract (from its OpenAPI document) with the methods it takes and their query parameters. */
const routeTable: ReadonlyArray<RouteEntry> = [
  ...Object.entries(OpenApi.fromApi(PaymentsApi).paths).map(([path, item]): RouteEntry => ({
    pattern: new RegExp(`^${path.replace(/\{[^}]+\}/g, "[^/]+")}/?$`),
    methods: new Map(
      Object.entries(item).filter(([key]) => methodNames.includes(key)).map(([method, operation]) => [method.toUpperCase(), queryNamesOf(operation)])
    )
  })),
  ...extraRoutes.map((path): RouteEntry => ({
    pattern: new RegExp(`^${path.replace(".", "\\.").replace(/\{[^}]+\}/g, "[^/]+")}/?$`),
    methods: new Map([["GET", undefined]])
  }))
]

const routesOf = (path: string) => routeTable.filter((route) => route.pattern.test(path))

/** The methods a path takes (HEAD wherever GET is), empty when no route has this path. */
export const allowedMethods = (path: string): ReadonlyArray<string> => {
  const methods = routesOf(path).flatMap((route) => [...route.methods.keys()])
  return methods.includes("GET") ? [...methods, "HEAD"] : methods
}

/** The query parameters the operation at this path and method declares (`undefined`: no such operation, or not checked). */
const declaredQuery = (method: string, path: string): ReadonlyArray<string> | undefined =>
  routesOf(path).map((route) => route.methods.get(method === "HEAD" ? "GET" : method)).find((names) => names !== undefined)

const pathOf = (url: string): string => url.split("?")[0] ?? url

/** No route matched: a path with other methods is a 405 (with `Allow`), anything else a 404. */
const unrouted = (request: HttpServerRequest.HttpServerRequest): ApiError => {
  const path = pathOf(request.url)
  const allow = allowedMethods(path)
  if (allow.length > 0 && !allow.includes(request.method)) return new MethodNotAllowed({ method: request.method, allow })
  return new RouteNotFound({ method: request.method, path: path.slice(0, 200) })
}

/**
 * Headers that mean one thing: sent twice, which one counts depends on who reads them. Named in a
 * problem's `field` as the documents spell them (`Idempotency-Key`, as its own problems do). `Host`
 * twice is a 400 by RFC 9112 §3.2 (Node kept the first; a proxy may route by the other).
 */
const singleValuedHeaders = ["Authorization", "Idempotency-Key", "Content-Type", "Content-Length", "X-Request-Id", "Host"]

/**
 * A query parameter the operation does not declare is refused, like an unknown body member; a query
 * parameter or a single-valued header given twice is refused (a proxy and we might read different values).
 */
const refusedQueryOrHeaders = (request: HttpServerRequest.HttpServerRequest): ApiError | undefined => {
  const query = request.url.includes("?") ? new URLSearchParams(request.url.slice(request.url.indexOf("?") + 1)) : undefined
  const names = query === undefined ? [] : [...query.keys()]
  const repeated = names.find((name, index) => names.indexOf(name) !== index)
  if (repeated !== undefined) return new InvalidRequest({ detail: `query parameter ${repeated} is given more than once`, field: repeated })
  const declared = declaredQuery(request.method, pathOf(request.url))
  const unknown = declared === undefined ? undefined : names.find((name) => !declared.includes(name))
  if (unknown !== undefined) {
    return new InvalidRequest({ detail: `unknown query parameter ${unknown.slice(0, 100)}`, field: unknown.slice(0, 100) })
  }
  const source: unknown = request.source
  const rawHeaders = typeof source === "object" && source !== null && "rawHeaders" in source && Array.isArray(source.rawHeaders)
    ? source.rawHeaders
    : undefined
  const raw = (rawHeaders ?? []).filter((_, index) => index % 2 === 0).map((name) => String(name).toLowerCase())
  const header = singleValuedHeaders.find((name) => raw.filter((sent) => sent === name.toLowerCase()).length > 1)
  if (header !== undefined) return new InvalidRequest({ detail: `header ${header} is given more than once`, field: header })
  // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400 (outside contract review: it was
  // served). Node's own refusal is a bare 400 outside every hook (Socket.ts turns it off), so here.
  const version = typeof source === "object" && source !== null && "httpVersion" in source ? source.httpVersion : undefined
  // A request with no header at all included (Node gives it `rawHeaders: []`; outside diff review).
  return version === "1.1" && rawHeaders !== undefined && !raw.includes("host")
    ? new InvalidRequest({ detail: "header Host is required in an HTTP/1.1 request", field: "Host" })
    : undefined
}

/** A schema refusal of the query, path or headers (HttpApi's empty 400) as `invalid_request` naming the field. */
const schemaRefusal = (defect: unknown): ApiError | undefined => {
  if (!HttpApiError.HttpApiSchemaError.is(defect)) return undefined
  if (defect.kind !== "Query" && defect.kind !== "Params" && defect.kind !== "Headers") return undefined
  const { field, message } = firstIssue(defect.cause.issue)
  return field === undefined ? new InvalidRequest({ detail: message }) : new InvalidRequest({ detail: `${field}: ${message}`, field })
}

/** The failures the router and HttpApi answer with empty bodies, as problems; anything else unchanged. */
const answerRouterFailure = (request: HttpServerRequest.HttpServerRequest) => <E>(cause: Cause.Cause<E>) => {
  const error = Cause.findErrorOption(cause)
  if (error._tag === "Some" && HttpServerError.isHttpServerError(error.value) && error.value.reason._tag === "RouteNotFound") {
    return Effect.succeed(problemHttpResponse(unrouted(request)))
  }
  const defect = Cause.findDefect(cause)
  const refusal = Result.isSuccess(defect) ? schemaRefusal(defect.success) : undefined
  return refusal === undefined ? Effect.failCause(cause) : Effect.succeed(problemHttpResponse(refusal))
}

/**
 * The request's id: the correlation id `observeRequests` (Observability.ts, the outermost layer)
 * assigned and put in the request's `X-Request-Id` header, so `Request-Id` and `X-Request-Id`
 * answer the same id. Outside that middleware, the same rule (infra's `correlationIdFrom`).
 */
const requestIdOf = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function* () {
    return (yield* CurrentCorrelationId) ?? correlationIdFrom(request.headers[correlationHttpHeader])
  })

/**
 * Headers HttpApi does not add to the answers it renders itself (the authorization middleware's
 * 401 and 503, /health/ready's 503): every 503 says when to retry, and every 401 names the
 * scheme to authenticate with (RFC 9110 §11.6.1), as the document says; and the security headers
 * on every answer.
 */
const withConventionalHeaders = (secured: HttpServerResponse.HttpServerResponse) => {
  const response = HttpServerResponse.setHeaders(secured, securityHeaders)
  if (response.status === 503 && response.headers["retry-after"] === undefined) {
    return HttpServerResponse.setHeader(response, "retry-after", "1")
  }
  if (response.status === 401 && response.headers["www-authenticate"] === undefined) {
    return HttpServerResponse.setHeader(response, "www-authenticate", WWW_AUTHENTICATE)
  }
  return response
}

export const WWW_AUTHENTICATE = "Bearer realm=\"payments-api\""

export const EdgeMiddleware = HttpRouter.middleware(
  (httpEffect) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const requestId = yield* requestIdOf(request)
      const refusal = refusedQueryOrHeaders(request)
      // Nothing is provided around the app here: a `provideService` would restore the fiber's
      // context on exit and drop the router's `RouteContext`, which the observation outside reads
      // for the route label of its metrics and access log.
      const response = refusal !== undefined
        ? problemHttpResponse(refusal)
        : yield* httpEffect.pipe(Effect.catchCause(answerRouterFailure(request)))
      const shared = request.method === "GET" || request.method === "HEAD" ? withSharedBytes(pathOf(request.url), response) : response
      return withConventionalHeaders(HttpServerResponse.setHeader(shared, "request-id", requestId))
    }),
  { global: true }
)
