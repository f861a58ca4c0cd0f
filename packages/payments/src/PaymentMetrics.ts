import type { AcquirerError, AcquirerOutcome } from "@pay/acquirer"
import type { Payment, PaymentStatus } from "@pay/domain"
import { Effect, Exit, Metric } from "effect"

/**
 * The payments' figures for operators, in Prometheus' conventions (`_total` counters, seconds,
 * money as counters of minor units with the currency as a label: never a float amount). Counted
 * after the transaction commits (a rolled-back change counts nothing).
 */
export const paymentTransitions = Metric.counter("payment_transitions_total", {
  description: "Committed payment state changes, by from_status (none for a creation), to_status and currency",
  incremental: true
})

/** bigint: an amount in minor units can exceed 2^53 over a process' life. */
export const paymentSettledAmount = Metric.counter("payment_settled_amount_minor_total", {
  description: "Gross amount of settled payments, in minor units of the currency label",
  bigint: true,
  incremental: true
})

export const acquirerCalls = Metric.counter("acquirer_calls_total", {
  description: "Calls to the acquirer by operation and outcome (approved, declined, timeout, unavailable)",
  incremental: true
})

export const acquirerCallDuration = Metric.histogram("acquirer_call_duration_seconds", {
  description: "Time to the acquirer's answer (or to our timeout), in seconds, by operation and outcome",
  boundaries: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
})

/** Counts one committed change of `payment` from `from` (`null`: created). */
export const countTransition = (payment: Payment, from: PaymentStatus | null): Effect.Effect<void> =>
  Effect.gen(function* () {
    yield* Metric.update(
      Metric.withAttributes(paymentTransitions, { from_status: from ?? "none", to_status: payment.status, currency: payment.currency }),
      1
    )
    if (payment.status === "SETTLED") {
      yield* Metric.update(Metric.withAttributes(paymentSettledAmount, { currency: payment.currency }), payment.amount_minor)
    }
  })

const acquirerOutcomeLabel = (exit: Exit.Exit<AcquirerOutcome, AcquirerError>): string => {
  if (Exit.isSuccess(exit)) return exit.value._tag === "Approved" ? "approved" : "declined"
  const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  if (failure === undefined) return "defect"
  return failure.error._tag === "AcquirerTimeout" ? "timeout" : "unavailable"
}

/** Measures one acquirer call, whatever the implementation behind the port. */
export const measureAcquirerCall =
  (operation: "authorize" | "capture" | "void" | "refund") =>
  (call: Effect.Effect<AcquirerOutcome, AcquirerError>): Effect.Effect<AcquirerOutcome, AcquirerError> =>
    Effect.gen(function* () {
      const started_ns = process.hrtime.bigint()
      const exit = yield* Effect.exit(call)
      const attributes = { operation, outcome: acquirerOutcomeLabel(exit) }
      yield* Metric.update(Metric.withAttributes(acquirerCalls, attributes), 1)
      yield* Metric.update(Metric.withAttributes(acquirerCallDuration, attributes), Number(process.hrtime.bigint() - started_ns) / 1e9)
      return yield* exit
    })
