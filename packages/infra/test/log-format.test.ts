// A log call with an object (`Effect.logWarning("completer could not finish a key yet", { key_id,
// retry_in_ms })`) used to print `"message": ["text", {…}]`: the fields were nested in an array
// where a log search by field never finds them, against the one-level JSON line the docs promise
// (docs/observability.md). The text is now the message and the object's fields join the line.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Logger, Schema } from "effect"
import { structuredWithTrace } from "../src/observability/Logging.ts"

class Refused extends Schema.TaggedError<Refused>()("Refused", { message: Schema.String }) {}

const linesOf = (program: Effect.Effect<void>) =>
  Effect.gen(function* () {
    const lines: Array<Record<string, unknown>> = []
    const capture = Logger.map(structuredWithTrace, (line) => {
      lines.push(JSON.parse(line))
    })
    yield* program.pipe(Effect.provide(Logger.layer([capture])))
    return lines.map(({ timestamp: _timestamp, ...rest }) => rest)
  })

describe("the JSON log line", () => {
  it.effect("an object's fields join the line beside the annotations; an error is `error`; the line's own fields are never replaced", () =>
    Effect.gen(function* () {
      const lines = yield* linesOf(Effect.gen(function* () {
        yield* Effect.logWarning("completer backing off", { key_id: "k1", retry_in_ms: 250 })
        yield* Effect.logError("attempt failed", new Refused({ message: "no" }))
        yield* Effect.logInfo("two objects", { a: 1 }, { b: 2 })
        yield* Effect.logInfo("hostile", { level: "DEBUG", message: "forged", correlation_id: "forged" }).pipe(
          Effect.annotateLogs({ correlation_id: "c-1" })
        )
        yield* Effect.logError("with a cause", Cause.fail(new Refused({ message: "down" })))
      }))
      assert.deepStrictEqual(lines.slice(0, 4), [
        { level: "WARN", message: "completer backing off", key_id: "k1", retry_in_ms: 250 },
        { level: "ERROR", message: "attempt failed", error: "Refused: no" },
        { level: "INFO", message: "two objects", a: 1, b: 2 },
        { level: "INFO", message: "hostile", correlation_id: "c-1" }
      ])
      assert.strictEqual(lines[4]?.["message"], "with a cause")
      assert.match(String(lines[4]?.["cause"]), /Refused: down/)
    }))

  it.effect("an API key anywhere in a line (an annotation, a field, a cause) is written redacted", () =>
    Effect.gen(function* () {
      const key = "sk_test_AbCdEfGh12345678AbCdEfGh12345678"
      const lines = yield* linesOf(Effect.logWarning("cached response refused", { idempotency_key: `order-${key}` }).pipe(
        Effect.annotateLogs({ payment_id: key })
      ))
      assert.deepStrictEqual(lines, [{ level: "WARN", message: "cached response refused", payment_id: "sk_test_REDACTED", idempotency_key: "order-sk_test_REDACTED" }])
    }))
})
