import type { Payment } from "@pay/domain"
import { Context, Effect, Layer } from "effect"
import type { SqlError } from "effect/sql/SqlError"

/**
 * What a settlement does to the money, inside the settle transaction (after the status change,
 * before the stored response). Its own service so the ledger posting can be swapped for a
 * fault-injecting one in tests.
 */
export class SettlementPosting extends Context.Service<SettlementPosting, {
  readonly post: (payment: Payment) => Effect.Effect<void, SqlError>
}>()("server/SettlementPosting") {
  /** Before the ledger is wired in: settle only transitions the payment. */
  static readonly transitionOnly = Layer.succeed(SettlementPosting, SettlementPosting.of({ post: () => Effect.void }))
}
