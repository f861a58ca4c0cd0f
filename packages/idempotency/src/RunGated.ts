import { cteName } from "@pay/infra"
import { Effect, Exit, Option, Result, Schema } from "effect"
import type { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { randomUUID } from "node:crypto"
import { toBeginRequest } from "./BeginRequest.ts"
import { countRefusal, countRun } from "./IdempotencyMetrics.ts"
import type { IdempotencyKeyInUse, IdempotencyKeyReused, IdempotencyLockLost } from "./Errors.ts"
import type { KeyStore } from "./KeyStore.ts"
import {
  type Execution,
  type Finished,
  type FinishFrom,
  type GatedStart,
  type GatedWork,
  type GateRow,
  type IdempotencyOptions,
  type IdempotencyRecord,
  type IdempotentRequest,
  type KeyGate,
  RECOVERY_POINT_FINISHED,
  RECOVERY_POINT_STARTED,
  recoveryPointPattern,
  type RunOutcome,
  type StoredResponse
} from "./Model.ts"
import type { RedisFastPath } from "./RedisFastPath.ts"

type Work<A, E, R> = (execution: Execution<A>) => Effect.Effect<Finished<A>, E, R>

/** What runGated uses of IdempotencyKeys.ts (given, not imported: that module builds this one). */
interface Writes {
  readonly advance: (record: IdempotencyRecord, recoveryPoint: string, data: Schema.JsonObject) => Effect.Effect<IdempotencyRecord, IdempotencyLockLost | SqlError>
  readonly finishWith: <A>(record: IdempotencyRecord, outcome: A, response: StoredResponse, marker?: boolean) => Effect.Effect<Finished<A>, IdempotencyLockLost | SqlError>
  readonly finishFrom: <A>(record: IdempotencyRecord, outcome: A, response: StoredResponse, marker?: boolean) => FinishFrom<A>
}
type Run = <A, E, R>(
  request: IdempotentRequest<A>,
  work: Work<A, E, R>
) => Effect.Effect<RunOutcome, E | IdempotencyKeyReused | IdempotencyKeyInUse | SqlError, R>

interface Parts {
  readonly sql: SqlClient.SqlClient
  readonly store: KeyStore
  readonly fast: RedisFastPath
  readonly writes: Writes
  readonly run: Run
  readonly releaseAfterFailure: (record: IdempotencyRecord) => Effect.Effect<void>
  readonly options: IdempotencyOptions
}

const decodeJsonText = Schema.decodeUnknownResult(Schema.fromJsonString(Schema.Json))

/** The body as the key stores it (the canonical text, as jsonb), as `run`'s record reads it back. */
const storedBody = (canonical: string | undefined): Effect.Effect<Schema.Json | null> => {
  if (canonical === undefined || canonical === "") return Effect.succeed(null)
  const decoded = decodeJsonText(canonical)
  // canonicalBody always renders JSON: anything else is a bug.
  return Result.isSuccess(decoded) ? Effect.succeed(decoded.success) : Effect.die(new Error("runGated: the canonical body is not JSON"))
}

/**
 * `IdempotencyKeys.runGated` (issue 18). `run` takes the key (one commit), reads, then records the
 * recovery point before the acquirer is asked (a second commit), and sets and deletes an in-flight
 * marker in Redis. Here the key is inserted already leased at that recovery point, in the same
 * autocommitted statement as the read that allows the step: one round trip, one commit. What
 * `run` guarantees holds: a key executes at most once (the INSERT … ON CONFLICT DO NOTHING gate;
 * a concurrent request with the key finds its row leased: 409), the recovery point is committed
 * before the acquirer is asked (a crash resumes there, through the completer or a retry), every
 * later write needs the lease token, a failure releases the key keeping its point. No in-flight
 * marker: Postgres answers a concurrent request (409) instead of Redis.
 */
export const makeRunGated = ({ sql, store, fast, writes, run, releaseAfterFailure, options }: Parts) =>
  <A, P, E, R, ES, RS>(request: IdempotentRequest<A>, start: GatedStart<P, ES, RS>, continueWork: GatedWork<A, P, E, R>, work: Work<A, E, R>) =>
    Effect.gen(function* () {
      // Inside a caller's transaction the recovery point would not be committed before the call.
      if (Option.isSome(yield* Effect.serviceOption(sql.transactionService))) {
        return yield* Effect.die(new Error("IdempotencyKeys.runGated must not run inside a transaction: its statement commits on its own"))
      }
      const beginRequest = toBeginRequest(request)
      const lease_ms = request.lockTimeout_ms ?? options.lockTimeout_ms
      yield* Effect.annotateCurrentSpan({ merchant_id: request.merchantId, idempotency_key: request.key })
      const cached = yield* countRefusal(fast.lookup(beginRequest))
      if (Option.isSome(cached) && cached.value._tag === "Replay") {
        return yield* countRun(Effect.succeed({ _tag: "Replayed", response: cached.value.response, decidedBy: cached.value.decidedBy } satisfies RunOutcome))
      }
      const requestBody = yield* storedBody(beginRequest.canonicalBody)
      const id = randomUUID()
      const token = randomUUID()
      const checkPoint = (source: string, recoveryPoint: string) => {
        if (!cteName.test(source)) throw new Error(`runGated: ${JSON.stringify(source)} is not a CTE name`)
        if (!recoveryPointPattern.test(recoveryPoint) || recoveryPoint === RECOVERY_POINT_STARTED || recoveryPoint === RECOVERY_POINT_FINISHED) {
          throw new Error(`runGated: ${JSON.stringify(recoveryPoint)} is not an operation recovery point`)
        }
      }
      const gate: KeyGate = {
        insertLeasedFrom: (source, recoveryPoint, data) => {
          checkPoint(source, recoveryPoint)
          return store.insertLeasedFrom(id, beginRequest, token, lease_ms, { source, recoveryPoint, data })
        },
        recordOf: (row: GateRow, recoveryPoint: string, data: Schema.JsonObject): IdempotencyRecord => ({
          id: row.id,
          merchantId: beginRequest.merchantId,
          key: beginRequest.key,
          method: beginRequest.method,
          path: beginRequest.path,
          fingerprint: beginRequest.fingerprint,
          requestBody,
          operation: request.operation ?? null,
          recoveryPoint,
          recoveryData: data,
          runCount: 1,
          lockToken: token,
          lockExpiresAt: row.lock_expires_at,
          lockTimeout_ms: lease_ms,
          createdAt: row.created_at
        })
      }
      const started = yield* start(gate)
      // The key existed, or the step may not go ahead: nothing was written; decide as `run` does.
      if (Option.isNone(started)) return yield* run(request, work)
      const record = started.value.record
      if (record.id !== id || record.lockToken !== token) return yield* Effect.die(new Error("runGated: the start returned another key's record"))
      const execution: Execution<A> = {
        record,
        resumed: false,
        advance: (recoveryPoint, data) => writes.advance(record, recoveryPoint, data),
        // No in-flight marker was set: after commit, only the response is cached.
        finish: (outcome) => writes.finishWith(record, outcome, request.render(outcome), false),
        finishFrom: (outcome) => writes.finishFrom(record, outcome, request.render(outcome), false)
      }
      return yield* countRun(
        continueWork(execution, started.value.payload).pipe(
          Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : releaseAfterFailure(record))),
          Effect.flatMap((finished) =>
            finished.recordId === record.id
              ? Effect.succeed({ _tag: "Executed", response: finished.response, resumed: false } satisfies RunOutcome)
              : Effect.die(new Error("runGated: the work returned the Finished of another key"))
          )
        )
      )
    }).pipe(Effect.withSpan("IdempotencyKeys.runGated"))
