/**
 * Operator commands.
 *
 *   pnpm cli merchants create "Acme"     creates a merchant and its first API key; prints both
 *                                        (the key is shown once: only its SHA-256 hash is stored)
 *   pnpm cli keys create <merchant id>   issues another API key for a merchant
 *   pnpm cli keys revoke <api key id>    revokes a key (401 from then on)
 *   pnpm cli fees set <merchant id> <currency> <bps> <fixed minor units>
 *                                        sets the merchant's settlement fee for one currency
 *
 * and the consumers' commands (reconcile, replay, consumers lag|offsets|reset, dlq list|redrive:
 * see ConsumerCommands.ts). Uses DATABASE_URL (and KAFKA_BROKERS, KAFKA_TOPIC_PREFIX) like the
 * server, and applies pending migrations first.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Currency, MerchantId, MerchantName } from "@pay/domain"
import { DatabaseLive } from "@pay/infra"
import { ApiKeys, MerchantRepository } from "@pay/merchants"
import { FeeSchedules } from "@pay/settlement"
import { Console, Effect, Layer, Redacted, Schema } from "effect"
import { consumerCommand, consumerUsage, KafkaClientsLive } from "./ConsumerCommands.ts"

const usage = `usage:
  pnpm cli merchants create "<name>"
  pnpm cli keys create <merchant id>
  pnpm cli keys revoke <api key id>
  pnpm cli fees set <merchant id> <currency> <bps 0-10000> <fixed fee in minor units>
${consumerUsage}`

const FeeBps = Schema.NumberFromString.pipe(Schema.decodeTo(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 10_000 }))))
const FeeFixedMinor = Schema.BigIntFromString.pipe(Schema.decodeTo(Schema.BigInt.check(Schema.isBetweenBigInt({ minimum: 0n, maximum: 99_999_999_999n }))))

class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { message: Schema.String }) {}

const printKey = (merchantId: string, key: { readonly id: string; readonly secret: Redacted.Redacted<string> }) =>
  Console.log(JSON.stringify({ merchant_id: merchantId, api_key_id: key.id, api_key: Redacted.value(key.secret) }, null, 2))

const program = Effect.gen(function* () {
  const [group, command, argument, ...rest] = process.argv.slice(2)
  const consumers = consumerCommand([group, command, argument, ...rest])
  if (consumers !== undefined) return yield* consumers
  const merchants = yield* MerchantRepository
  const apiKeys = yield* ApiKeys
  const fees = yield* FeeSchedules
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
  return yield* new UsageError({ message: usage })
})

program.pipe(
  Effect.provide(
    Layer.mergeAll(MerchantRepository.layer, ApiKeys.layer, FeeSchedules.layer, KafkaClientsLive).pipe(Layer.provideMerge(DatabaseLive))
  ),
  Effect.catchTag("UsageError", (error) => Console.error(error.message).pipe(Effect.andThen(Effect.sync(() => { process.exitCode = 2 })))),
  NodeRuntime.runMain
)
