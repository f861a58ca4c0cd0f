import { Effect } from "effect"
import { ApiKeys } from "./ApiKeys.ts"
import { MerchantRepository } from "./MerchantRepository.ts"

/**
 * A new merchant and its first API key, as `pnpm cli merchants create` makes them (the key's
 * secret is in `key.secret`, shown once). The operator's CLI, the failure drills and the server
 * tests all onboard a merchant this way.
 */
export const createMerchantWithKey = (name: string) =>
  Effect.gen(function* () {
    const merchant = yield* (yield* MerchantRepository).create(name)
    const key = yield* (yield* ApiKeys).create(merchant.id)
    return { merchant, key }
  })
