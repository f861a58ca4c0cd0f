import { Option, Schema } from "effect"

/** Page sizes are bounded (TIGER_STYLE: put a limit on everything). */
export const PAGE_LIMIT_MIN = 1
export const PAGE_LIMIT_MAX = 100
export const PAGE_LIMIT_DEFAULT = 10

export const PageLimit = Schema.Int.check(
  Schema.isBetween(
    { minimum: PAGE_LIMIT_MIN, maximum: PAGE_LIMIT_MAX },
    { message: `limit must be an integer between ${PAGE_LIMIT_MIN} and ${PAGE_LIMIT_MAX}` }
  )
).pipe(Schema.brand("PageLimit"))
export type PageLimit = typeof PageLimit.Type

const decodePageLimit = Schema.decodeUnknownOption(PageLimit)

/**
 * A `limit` query parameter: decimal digits only, as the API document says (its pattern is
 * `^[0-9]+$`), within the bounds; `0x10`, `1e1`, `+5`, ` 5` and `5.0` are none. Every list reads it
 * so (payments, webhook endpoints, deliveries).
 */
export const pageLimitFromText = (text: string): Option.Option<PageLimit> =>
  /^[0-9]{1,6}$/.test(text) ? decodePageLimit(Number(text)) : Option.none()
