import { InvalidRequest } from "@pay/api"
import { PAGE_LIMIT_MAX, PAGE_LIMIT_MIN, type PageLimit, pageLimitFromText } from "@pay/domain"
import { Effect, Option } from "effect"

/**
 * A list's `limit` query parameter, for every list (payments, webhook endpoints, deliveries):
 * undefined when absent (the list's default applies), a PageLimit when it is decimal digits in
 * bounds (`pageLimitFromText`), else 400 naming it.
 */
export const pageLimitParam = (text: string | undefined): Effect.Effect<PageLimit | undefined, InvalidRequest> => {
  if (text === undefined) return Effect.succeed(undefined)
  return Option.match(pageLimitFromText(text), {
    onNone: () => Effect.fail(new InvalidRequest({ detail: `limit: must be an integer between ${PAGE_LIMIT_MIN} and ${PAGE_LIMIT_MAX}`, field: "limit" })),
    onSome: (limit) => Effect.succeed(limit)
  })
}
