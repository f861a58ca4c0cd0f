/**
 * Operator commands.
 *
 *   pnpm cli merchants create "Acme"     creates a merchant and its first API key; prints both
 *                                        (the key is shown once: only its SHA-256 hash is stored)
 *   pnpm cli keys create <merchant id>   issues another API key for a merchant
 *   pnpm cli keys revoke <api key id>    revokes a key (401 from then on)
 *   pnpm cli fees set <merchant id> <currency> <bps> <fixed minor units>
 *                                        sets the merchant's settlement fee for one currency
 *   pnpm cli webhooks failed [limit]     the most recently given-up webhook deliveries (exhausted
 *                                        retries or 410), newest first, as JSON lines (default 50)
 *
 * Uses DATABASE_URL like the server, and applies pending migrations first.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Currency, MerchantId, MerchantName } from "@pay/domain"
import { DatabaseLive } from "@pay/infra"
import { ApiKeys, MerchantRepository } from "@pay/merchants"
import { FeeSchedules } from "@pay/settlement"
import { WebhookDeliveries } from "@pay/webhooks"
import { Console, Effect, Layer, Redacted, Schema } from "effect"

const usage = `usage:
  pnpm cli merchants create "<name>"
  pnpm cli keys create <merchant id>
  pnpm cli keys revoke <api key id>
  pnpm cli fees set <merchant id> <currency> <bps 0-10000> <fixed fee in minor units>
  pnpm cli webhooks failed [limit 1-1000]`

const FeeBps = Schema.NumberFromString.pipe(Schema.decodeTo(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 10_000 }))))
const FeeFixedMinor = Schema.BigIntFromString.pipe(Schema.decodeTo(Schema.BigInt.check(Schema.isBetweenBigInt({ minimum: 0n, maximum: 99_999_999_999n }))))

const FailedLimit = Schema.NumberFromString.pipe(Schema.decodeTo(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1_000 }))))

class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { message: Schema.String }) {}

const printKey = (merchantId: string, key: { readonly id: string; readonly secret: Redacted.Redacted<string> }) =>
  Console.log(JSON.stringify({ merchant_id: merchantId, api_key_id: key.id, api_key: Redacted.value(key.secret) }, null, 2))

const program = Effect.gen(function* () {
  const [group, command, argument, ...rest] = process.argv.slice(2)
  const merchants = yield* MerchantRepository
  const apiKeys = yield* ApiKeys
  const fees = yield* FeeSchedules
  const deliveries = yield* WebhookDeliveries
  if (group === "merchants" && command === "create" && argument !== undefined) {
    const name = yield* Schema.decodeUnknownEffect(MerchantName)(argument)
    const merchant = yield* merchants.create(name)
    const key = yield* apiKeys.create(merchant.id)
    yield* Console.error(`merchant ${merchant.id} created; the API key below is shown once`)
    return yield* printKey(merchant.id, key)
  }
  if (group === "keys" && command === "create" && argument !== undefined) {
    const merchantId = yield* Schema.decodeUnknownEffect(MerchantId)(argument)
    const key = yield* apiKeys.create(merchantId)
    return yield* printKey(merchantId, key)
  }
  if (group === "keys" && command === "revoke" && argument !== undefined) {
    yield* apiKeys.revoke(argument)
    return yield* Console.log(`revoked ${argument}`)
  }
  if (group === "fees" && command === "set" && argument !== undefined && rest.length === 3) {
    const merchantId = yield* Schema.decodeUnknownEffect(MerchantId)(argument)
    const [currencyText, bpsText, fixedText] = rest
    const currency = yield* Schema.decodeUnknownEffect(Currency)(currencyText)
    const fee_bps = yield* Schema.decodeUnknownEffect(FeeBps)(bpsText)
    const fee_fixed_minor = yield* Schema.decodeUnknownEffect(FeeFixedMinor)(fixedText)
    yield* merchants.findById(merchantId)
    yield* fees.set(merchantId, currency, { fee_bps, fee_fixed_minor })
    return yield* Console.log(JSON.stringify({ merchant_id: merchantId, currency, fee_bps, fee_fixed_minor: String(fee_fixed_minor) }))
  }
  if (group === "webhooks" && command === "failed") {
    const limit = yield* Schema.decodeUnknownEffect(FailedLimit)(argument ?? "50")
    const failed = yield* deliveries.failed(limit)
    for (const delivery of failed) yield* Console.log(JSON.stringify(delivery))
    return yield* Console.error(`${failed.length} failed deliveries; redeliver with POST /v1/webhook_endpoints/{id}/deliveries/{delivery_id}/redeliver or …/recover`)
  }
  return yield* new UsageError({ message: usage })
})

program.pipe(
  Effect.provide(Layer.mergeAll(MerchantRepository.layer, ApiKeys.layer, FeeSchedules.layer, WebhookDeliveries.layer).pipe(Layer.provideMerge(DatabaseLive))),
  Effect.catchTag("UsageError", (error) => Console.error(error.message).pipe(Effect.andThen(Effect.sync(() => { process.exitCode = 2 })))),
  NodeRuntime.runMain
)
