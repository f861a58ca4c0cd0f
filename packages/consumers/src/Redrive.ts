import { failureText } from "@pay/infra"
import { makeWebhookConsumerHandler, WEBHOOK_CONSUMER_NAME } from "@pay/webhooks"
import { Cause, Effect, Exit, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { ConsumerHandler } from "./ConsumerModel.ts"
import { eventIdentity, makeConsumerStore } from "./ConsumerStore.ts"
import { makeDeadLetters, recordOf } from "./DeadLetters.ts"
import { decodeRecord } from "./RecordProcessor.ts"
import { makeSettlementProjection } from "./SettlementProjection.ts"

export class DeadLetterNotFound extends Schema.TaggedError<DeadLetterNotFound>()("DeadLetterNotFound", { id: Schema.String }) {}

/** The consumers whose parked records can be re-driven, as an operator reads them. */
export const redrivableConsumers = `settlement.g<N>, ${WEBHOOK_CONSUMER_NAME}`

/** A parked row whose consumer no handler of this deployment stands for: nothing changed. */
export class NoHandler extends Schema.TaggedError<NoHandler>()("NoHandler", { consumer: Schema.String, message: Schema.String }) {}

const settlementGeneration = /^settlement\.g([1-9][0-9]{0,8})$/

/**
 * The handler a parked row's consumer name stands for: every consumer that can park records
 * (ConsumersProcess.ts runs them), i.e. `settlement.g<N>` (that generation's projection) and
 * `webhooks` (queues the event's deliveries). Undefined for any other name.
 */
export const handlerFor = (consumer: string): Effect.Effect<ConsumerHandler | undefined, never, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    if (consumer === WEBHOOK_CONSUMER_NAME) return yield* makeWebhookConsumerHandler
    const generation = settlementGeneration.exec(consumer)?.[1]
    return generation === undefined ? undefined : makeSettlementProjection(yield* SqlClient.SqlClient).handler(Number(generation))
  })

export type RedriveOutcome = "applied" | "duplicate" | "stale" | "already_redriven" | "dismissed" | "failed"

/**
 * Re-drives a parked record after a fix (a new decoder, a fixed handler, a repaired row): in one
 * transaction, decodes it, claims (consumer, event_id) and applies the handler exactly as the
 * consumer would (a record applied meanwhile is a duplicate), and marks the row re-driven. A
 * record that still fails (a refusal, a SQL error, or a defect of the handler, as the consumer
 * counts them: RecordProcessor.ts) keeps its row, with the new error in `redrive_error`. The
 * stored offsets are not touched (the partition moved on when the record was parked).
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
      // An operator decided it must never be applied (`dlq dismiss`).
      if (letter.dismissed_at !== null) return "dismissed" as const
      const handler = yield* handlerFor(letter.consumer)
      if (handler === undefined) {
        return yield* new NoHandler({
          consumer: letter.consumer,
          message: `parked event ${id} belongs to consumer ${letter.consumer}, which no handler of this deployment stands for (re-drivable: ${redrivableConsumers}); nothing re-driven`
        })
      }
      const record = recordOf(letter)
      const attempt = Effect.gen(function* () {
        const decoded = yield* decodeRecord(record)
        const claim = yield* store.claim(letter.consumer, eventIdentity(decoded), record)
        if (claim === "new") yield* handler.apply(decoded, record)
        return claim === "new" ? "applied" as const : claim
      })
      // A savepoint: a failed attempt rolls back its own writes, and the failure is recorded.
      const exit = yield* Effect.exit(sql.withTransaction(attempt))
      if (Exit.isSuccess(exit)) {
        yield* deadLetters.markRedriven(id)
        return exit.value
      }
      // Interrupted (SIGINT): nothing to record, the whole transaction rolls back.
      if (Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.failCause(exit.cause)
      yield* deadLetters.markRedriveFailed(id, failureText(Cause.squash(exit.cause)))
      return "failed" as const
    }))
  })
