// `409 idempotency_key_in_use` says when to retry (`Retry-After`, RFC 9110 allows it on any status),
// whichever store decided it (the Redis fast path or Postgres) and for a run whose lease was taken
// over (IdempotencyLockLost, the same code): every error a handler ends with is answered by
// `respondToError`. Over HTTP: api-idempotency.test.ts (concurrent requests with one key).
import { assert, describe, it } from "@effect/vitest"
import { IdempotencyKeyInUse, IdempotencyKeyReused, IdempotencyLockLost } from "@pay/idempotency"
import { Effect } from "effect"
import { KEY_IN_USE_RETRY_AFTER_S, respondToError } from "../src/http/Respond.ts"

describe("409 idempotency_key_in_use carries Retry-After", () => {
  it.effect("decided by Redis, by Postgres, or a lost lease: 409 with Retry-After: 1; another 4xx about the key has none", () =>
    Effect.gen(function* () {
      assert.strictEqual(KEY_IN_USE_RETRY_AFTER_S, 1)
      const inUse = [
        new IdempotencyKeyInUse({ key: "k", decidedBy: "redis" }),
        new IdempotencyKeyInUse({ key: "k", decidedBy: "postgres" }),
        new IdempotencyLockLost({ key: "k", recordId: "1" })
      ]
      for (const error of inUse) {
        const response = yield* respondToError(error)
        assert.strictEqual(response.status, 409, error._tag)
        assert.strictEqual(response.headers["retry-after"], "1", `${error._tag} ${JSON.stringify(response.headers)}`)
      }
      const reused = yield* respondToError(new IdempotencyKeyReused({ key: "k", decidedBy: "postgres" }))
      assert.strictEqual(reused.status, 422)
      assert.isUndefined(reused.headers["retry-after"], "a reused key is not retried")
    }))
})
