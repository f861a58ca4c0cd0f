import { AcquirerOptionsConfig } from "@pay/acquirer"
import { IdempotencyOptionsConfig } from "@pay/idempotency"
import { Config, Effect, Layer } from "effect"

/**
 * A key's lease (`IDEMPOTENCY_LOCK_TIMEOUT_MS`) must outlast the slowest step it covers, the
 * acquirer's call included (`ACQUIRER_TIMEOUT_MS`; docs/idempotency.md). A lease shorter than the
 * call runs out while the call is still waiting: a retry takes the key over and asks the acquirer
 * again (the same reference, so no money moves twice, but the first caller gets 409 and the bank is
 * asked twice; an outside clock review set 500 ms against 3 s and saw both). Said at start, as a
 * WARN: fault-injection scenarios set such pairs on purpose.
 */
export const leaseShorterThanAcquirer = (lease_ms: number, acquirerTimeout_ms: number): string | undefined =>
  lease_ms > acquirerTimeout_ms
    ? undefined
    : `IDEMPOTENCY_LOCK_TIMEOUT_MS=${lease_ms} is not longer than ACQUIRER_TIMEOUT_MS=${acquirerTimeout_ms}: a key's lease can run out while its acquirer call waits, and a retry then asks the acquirer again (docs/idempotency.md)`

export const LeaseCheckLive = Layer.effectDiscard(
  Effect.gen(function* () {
    const { idempotency, acquirer } = yield* Config.all({ idempotency: IdempotencyOptionsConfig, acquirer: AcquirerOptionsConfig })
    const problem = leaseShorterThanAcquirer(idempotency.lockTimeout_ms, acquirer.timeout_ms)
    if (problem !== undefined) yield* Effect.logWarning(problem)
  })
)
