import { Effect, Schema } from "effect"

/** A scenario's expectation did not hold: the verdict line carries `reason`. */
export class ScenarioFailed extends Schema.TaggedError<ScenarioFailed>()("ScenarioFailed", {
  reason: Schema.String
}) {}

/**
 * What a scenario prints, step by step: numbered steps, the evidence it read back (HTTP answers,
 * rows, Kafka records, balances) and each expectation it checked. Every line goes to `sink` (the
 * console for `pnpm scenario`, a transcript for the test), so both see the same story.
 */
export interface Narrator {
  readonly step: (text: string) => Effect.Effect<void>
  readonly evidence: (label: string, value: unknown) => Effect.Effect<void>
  readonly note: (text: string) => Effect.Effect<void>
  /** Prints `ok: what` when `condition` holds; otherwise fails the scenario with `what` and `detail`. */
  readonly expect: (condition: boolean, what: string, detail?: unknown) => Effect.Effect<void, ScenarioFailed>
}

/** JSON with bigints as numbers-in-strings and long values cut, for one evidence line. */
export const show = (value: unknown, length_max = 600): string => {
  const text = typeof value === "string" ? value : JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v))
  const rendered = text ?? String(value)
  return rendered.length > length_max ? `${rendered.slice(0, length_max)}… (${rendered.length} chars)` : rendered
}

export const makeNarrator = (sink: (line: string) => void): Narrator => {
  let stepNumber = 0
  return {
    step: (text) =>
      Effect.sync(() => {
        stepNumber += 1
        sink(`\n[step ${stepNumber}] ${text}`)
      }),
    evidence: (label, value) => Effect.sync(() => sink(`    evidence  ${label}: ${show(value)}`)),
    note: (text) => Effect.sync(() => sink(`    note      ${text}`)),
    expect: (condition, what, detail) =>
      condition
        ? Effect.sync(() => sink(`    ok        ${what}`))
        : Effect.sync(() => sink(`    FAILED    ${what}${detail === undefined ? "" : `: ${show(detail)}`}`)).pipe(
          Effect.andThen(Effect.fail(new ScenarioFailed({ reason: detail === undefined ? what : `${what} (${show(detail, 300)})` })))
        )
  }
}
