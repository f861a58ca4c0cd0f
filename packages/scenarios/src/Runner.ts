import { Cause, Effect, Exit } from "effect"
import { makeNarrator, ScenarioFailed } from "./Narrator.ts"
import { makeContext, type Scenario } from "./Scenario.ts"
import { acquireStack, ownerSqlLayer } from "./Stack.ts"

export interface Verdict {
  readonly name: string
  readonly passed: boolean
  readonly reason: string
  readonly elapsed_ms: number
  /** `VERDICT: PASS <name>` or `VERDICT: FAIL <name>: <why>`. */
  readonly line: string
}

const reasonOf = (cause: Cause.Cause<unknown>): string => {
  const failure = cause.reasons.find(Cause.isFailReason)
  if (failure !== undefined) {
    const error = failure.error
    if (error instanceof ScenarioFailed) return error.reason
    if (error instanceof Error) return `${error.name}: ${error.message}`.split("\n").slice(0, 6).join(" | ")
    return String(error)
  }
  return Cause.pretty(cause).split("\n").slice(0, 6).join(" | ")
}

/**
 * Runs one scenario on a stack of its own (database, Redis prefix, topic prefix; everything it
 * started is stopped, and everything it created dropped, when it ends), printing through `sink`.
 * Never fails: the outcome is the verdict.
 */
export const runScenario = (scenario: Scenario, sink: (line: string) => void) =>
  Effect.gen(function* () {
    const started = performance.now()
    const say = makeNarrator(sink)
    sink(`SCENARIO ${scenario.name}: ${scenario.summary}`)
    const exit = yield* Effect.exit(
      Effect.scoped(
        Effect.gen(function* () {
          const stack = yield* acquireStack
          sink(`    stack     database ${stack.database}, Redis prefix ${stack.redisKeyPrefix}, topic ${stack.eventsTopic}`)
          yield* scenario.run(makeContext(stack, say)).pipe(Effect.scoped, Effect.provide(ownerSqlLayer(stack)))
        })
      )
    )
    const elapsed_ms = Math.round(performance.now() - started)
    const passed = Exit.isSuccess(exit)
    const reason = Exit.isSuccess(exit) ? "" : reasonOf(exit.cause)
    const line = passed ? `VERDICT: PASS ${scenario.name}` : `VERDICT: FAIL ${scenario.name}: ${reason}`
    sink(`\n(${(elapsed_ms / 1000).toFixed(1)} s)\n${line}`)
    const verdict: Verdict = { name: scenario.name, passed, reason, elapsed_ms, line }
    return verdict
  })
