import { Schema } from "effect"

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
