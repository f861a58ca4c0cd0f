import { generateMerchantId, Merchant, MerchantId, MerchantNotFound } from "@pay/domain"
import { Context, DateTime, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"

const MerchantRow = Schema.Struct({ id: Schema.String, name: Schema.String, created_at: Schema.Date })
const decodeMerchantRow = Schema.decodeUnknownEffect(MerchantRow)
const decodeMerchant = Schema.decodeUnknownEffect(Merchant)

/** Row → Merchant; a row the domain cannot read is a broken invariant (defect). */
const merchantFromRow = (row: unknown): Effect.Effect<Merchant> =>
  decodeMerchantRow(row).pipe(
    Effect.flatMap((decoded) => decodeMerchant({ ...decoded, created_at: decoded.created_at.toISOString() })),
    Effect.mapError((error) => new Error(`merchants row does not satisfy the Merchant schema: ${error.message}`)),
    Effect.orDie
  )

/**
 * Merchants: the owners of payments. Minimal on purpose (create, find); API keys and onboarding
 * come with their own migration.
 */
export class MerchantRepository extends Context.Service<MerchantRepository, {
  /** `name` must satisfy `MerchantName` (1..200 characters); violations are defects. */
  readonly create: (name: string) => Effect.Effect<Merchant, SqlError>
  readonly findById: (merchantId: MerchantId) => Effect.Effect<Merchant, MerchantNotFound | SqlError>
}>()("merchants/MerchantRepository") {
  static readonly layer = Layer.effect(
    MerchantRepository,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient

      const create = Effect.fn("MerchantRepository.create")(function* (name: string) {
        const id = yield* generateMerchantId
        const now = yield* DateTime.now
        const merchant = new Merchant({ id, name, created_at: now })
        yield* sql`INSERT INTO merchants (id, name, created_at)
                   VALUES (${merchant.id}, ${merchant.name}, ${DateTime.toDateUtc(now)}::timestamptz)`
        return merchant
      })

      const findById = Effect.fn("MerchantRepository.findById")(function* (merchantId: MerchantId) {
        const rows = yield* sql`SELECT id, name, created_at FROM merchants WHERE id = ${merchantId}`
        const row = rows[0]
        if (row === undefined) return yield* new MerchantNotFound({ merchantId })
        return yield* merchantFromRow(row)
      })

      return MerchantRepository.of({ create, findById })
    })
  )
}
