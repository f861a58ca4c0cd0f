import { offOrBoundedInt } from "@pay/infra"
import { Ledger } from "@pay/ledger"
import { Clock, Effect, Layer, Metric, Schedule } from "effect"

/**
 * Money at risk, as a number Prometheus can page on: the server runs `ledger_verify()` (which
 * recomputes every stored balance and transaction from the entries) every
 * `LEDGER_VERIFY_INTERVAL_MS` and exports what it found. Any discrepancy pages
 * (`LedgerDiscrepancy`); a verification that has not succeeded for an hour opens a ticket
 * (`LedgerVerifyStale`). `0` turns it off (e.g. on all but one replica: it reads the whole ledger).
 *
 * | variable                    | default | bounds                   |
 * | --------------------------- | ------- | ------------------------ |
 * | `LEDGER_VERIFY_INTERVAL_MS` | 300000  | 0 (off), 1000..86400000  |
 */
export const LedgerVerifyInterval = offOrBoundedInt("LEDGER_VERIFY_INTERVAL_MS", { min: 1_000, max: 24 * 60 * 60 * 1_000 }, 5 * 60 * 1_000)

/** The checks `ledger_verify()` makes (migrations/0002_ledger.sql): one series each, 0 when healthy. */
export const ledgerChecks = [
  "balance_mismatch",
  "balance_row_missing",
  "negative_balance",
  "transaction_unbalanced",
  "transaction_too_few_entries",
  "entry_currency_mismatch",
  "trial_balance_nonzero"
] as const

export const ledgerDiscrepancies = Metric.gauge("ledger_verify_discrepancies", {
  description: "Rows ledger_verify() returned at its last successful run, by check (0: the ledger agrees with its entries)"
})
export const ledgerVerifyLastSuccess = Metric.gauge("ledger_verify_last_success_timestamp_seconds", {
  description: "Unix time of the last successful ledger_verify() run"
})
export const ledgerVerifyFailures = Metric.counter("ledger_verify_failures_total", {
  description: "ledger_verify() runs that failed (database unavailable)",
  incremental: true
})

const verifyOnce = (ledger: Ledger["Service"]) =>
  ledger.verify.pipe(
    Effect.flatMap((found) =>
      Effect.gen(function* () {
        const checks = new Set<string>([...ledgerChecks, ...found.map((d) => d.check)])
        for (const check of checks) {
          yield* Metric.update(Metric.withAttributes(ledgerDiscrepancies, { check }), found.filter((d) => d.check === check).length)
        }
        yield* Metric.update(ledgerVerifyLastSuccess, (yield* Clock.currentTimeMillis) / 1_000)
        if (found.length > 0) {
          yield* Effect.logError("ledger_verify() found discrepancies: money at risk, see docs/oncall.md#ledgerdiscrepancy").pipe(
            Effect.annotateLogs({ discrepancies: found.slice(0, 20).map((d) => `${d.check} ${d.subject}`) })
          )
        }
      })
    ),
    Effect.catchTag("LedgerUnavailable", (error) =>
      Metric.update(ledgerVerifyFailures, 1).pipe(Effect.andThen(Effect.logWarning("ledger audit: ledger_verify() failed", error)))
    ),
    Effect.withSpan("LedgerAudit.verify")
  )

/** The audit loop (a no-op when the interval is 0), interrupted with the server. */
export const LedgerAuditLive = Layer.effectDiscard(
  Effect.gen(function* () {
    const interval_ms = yield* LedgerVerifyInterval
    if (interval_ms === 0) return
    if (interval_ms < 1_000) return yield* Effect.die(new Error("LEDGER_VERIFY_INTERVAL_MS must be 0 (off) or at least 1000"))
    const ledger = yield* Ledger
    yield* Metric.update(ledgerVerifyFailures, 0)
    yield* Effect.forkScoped(Effect.repeat(verifyOnce(ledger), Schedule.spaced(interval_ms)))
  })
)
