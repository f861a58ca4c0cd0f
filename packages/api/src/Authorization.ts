import { Context } from "effect"
import { HttpApiMiddleware, HttpApiSecurity } from "effect/http-api"
import type { MerchantId } from "@pay/domain"
import { DatabaseUnavailableProblem, InternalErrorProblem, UnauthorizedProblem } from "./Problems.ts"

/** The merchant the request's API key belongs to. Every handler scopes its queries by it. */
export class CurrentMerchant extends Context.Service<CurrentMerchant, {
  readonly merchantId: MerchantId
  readonly apiKeyId: string
}>()("api/CurrentMerchant") {}

/**
 * `Authorization: Bearer <api key>`; 401 problem when missing or unknown, 503 when the database does
 * not answer, 500 when it answers with a refusal (a bug: a missing grant, a schema mismatch).
 */
export class Authorization extends HttpApiMiddleware.Service<Authorization, {
  provides: CurrentMerchant
  requires: never
}>()("api/Authorization", {
  security: { bearer: HttpApiSecurity.bearer },
  error: [UnauthorizedProblem, DatabaseUnavailableProblem, InternalErrorProblem]
}) {}
