import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { ConsumerHandler } from "./ConsumerModel.ts"
import { eventIdentity, makeConsumerStore } from "./ConsumerStore.ts"
import { makeDeadLetters, recordOf } from "./DeadLetters.ts"
import { decodeRecord, errorText } from "./RecordProcessor.ts"
import { makeSettlementProjection } from "./SettlementProjection.ts"

export class DeadLetterNotFound extends Schema.TaggedError<DeadLetterNotFound>()("DeadLetterNotFound", { id: Schema.String }) {}
export class NoHandler extends Schema.TaggedError<NoHandler>()("NoHandler", { consumer: Schema.String }) {}

export type RedriveOutcome = "applied" | "duplicate" | "stale" | "already_redriven" | "failed"

/** The handler a parked row's consumer name stands for (`settlement.g<N>`). */
export const handlerFor = (sql: SqlClient.SqlClient, consumer: string): ConsumerHandler | undefined => {
  const match = /^settlement\.g([1-9][0-9]{0,8})$/.exec(consumer)
  return match?.[1] === undefined ? undefined : makeSettlementProjection(sql).handler(Number(match[1]))
}

/**
 * Re-drives a parked record after a fix (a new decoder, a fixed handler, a repaired row): in one
 * transaction, decodes it, claims (consumer, event_id) and applies the handler exactly as the
 * consumer would (a record applied meanwhile is a duplicate), and marks the row re-driven. A
 * record that still fails keeps its row, with the new error in `redrive_error`. The stored
 * offsets are not touched (the partition moved on when the record was parked).
 */
export const redrive = (id: bigint) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const deadLetters = makeDeadLetters(sql)
    const store = makeConsumerStore(sql)
    return yield* sql.withTransaction(Effect.gen(function* () {
      const [letter] = yield* deadLetters.find(id)
      if (letter === undefined) return yield* new DeadLetterNotFound({ id: String(id) })
      if (letter.redriven_at !== null) return "already_redriven" as const
      const handler = handlerFor(sql, letter.consumer)
      if (handler === undefined) return yield* new NoHandler({ consumer: letter.consumer })
      const record = recordOf(letter)
      const attempt = Effect.gen(function* () {
        const decoded = yield* decodeRecord(record)
        const claim = yield* store.claim(letter.consumer, eventIdentity(decoded), record)
        if (claim === "new") yield* handler.apply(decoded, record)
        return claim === "new" ? "applied" as const : claim
      })
      // A savepoint: a failed attempt rolls back its own writes, and the failure is recorded.
      const result = yield* Effect.result(sql.withTransaction(attempt))
      if (result._tag === "Failure") {
        yield* deadLetters.markRedriveFailed(id, errorText(result.failure))
        return "failed" as const
      }
      yield* deadLetters.markRedriven(id)
      return result.success
    }))
  })
