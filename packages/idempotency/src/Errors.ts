import { CodedError } from "@pay/domain"
import { Schema } from "effect"

/**
 * What a client hears when its key cannot be used as asked (docs/idempotency.md). Nothing was
 * executed in any of these cases.
 */

/** Which store gave the answer: Redis (the fast path) or Postgres (the authority). */
export const DecidedBy = Schema.Literals(["redis", "postgres"])
export type DecidedBy = typeof DecidedBy.Type

/** The key was first used for a different request (method, path or canonical body). Nothing was written. */
export class IdempotencyKeyReused extends CodedError<IdempotencyKeyReused>()(
  "idempotency_key_reused",
  "IdempotencyKeyReused",
  { key: Schema.String, decidedBy: DecidedBy },
  () => "this Idempotency-Key was already used for a different request (method, path or body); use a new key for a new request"
) {}

/**
 * A request with this key is still being processed. Retry later with the same key: the retry gets
 * the stored response, or resumes the work if the first run died (its lease expires after the
 * lock timeout).
 */
export class IdempotencyKeyInUse extends CodedError<IdempotencyKeyInUse>()(
  "idempotency_key_in_use",
  "IdempotencyKeyInUse",
  { key: Schema.String, decidedBy: DecidedBy },
  () => "a request with this Idempotency-Key is still in progress; retry later with the same key"
) {}

/**
 * This run's lease expired and another run (a client retry or the completer) took the key over.
 * The write that noticed it matched no row, so the transaction it was part of rolls back: the
 * other run does the work, exactly once. Seen by API users as the same `idempotency_key_in_use`;
 * a distinct tag so operators can count lost leases.
 */
export class IdempotencyLockLost extends CodedError<IdempotencyLockLost>()(
  "idempotency_key_in_use",
  "IdempotencyLockLost",
  { key: Schema.String, recordId: Schema.String },
  () => "this run's lease on the Idempotency-Key expired and another run took over; retry later with the same key"
) {}
