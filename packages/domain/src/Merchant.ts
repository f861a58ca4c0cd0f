import { Schema } from "effect"
import { MerchantId } from "./Ids.ts"

export const MerchantName = Schema.String.check(
  Schema.isBetweenLength(1, 200, { message: "a merchant name is 1 to 200 characters" })
)

/** A merchant: the owner of payments. API keys (a later migration) point at it. */
export class Merchant extends Schema.Class<Merchant>("Merchant")({
  id: MerchantId,
  name: MerchantName,
  created_at: Schema.DateTimeUtcFromString
}) {}
