// Head sampling of traces (OTEL_TRACES_SAMPLED_PERMILLE): decided at a trace's first span, children
// follow, a caller's sampled flag is honoured. The OTLP tracer exports only sampled spans, so the
// flag on each span is what is tested here, through a real tracer (Effect's own) underneath.
import { assert, describe, it } from "@effect/vitest"
import { continueFromRecord, sampleRoots } from "@pay/infra"
import { Effect, Tracer } from "effect"

/** Effect's native tracer, recording each span's sampled flag by name. */
const recording = () => {
  const seen: Array<{ readonly name: string; readonly sampled: boolean }> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = Tracer.nativeTracer.span(options)
      seen.push({ name: options.name, sampled: span.sampled })
      return span
    }
  })
  return { tracer, seen }
}

const trace = Effect.void.pipe(Effect.withSpan("child"), Effect.withSpan("root"))

describe("trace sampling", () => {
  it.effect("0 per mille: roots and their children unsampled; 1000: all sampled", () =>
    Effect.gen(function* () {
      const none = recording()
      yield* trace.pipe(Effect.withTracer(sampleRoots(none.tracer, 0)))
      assert.deepStrictEqual(none.seen, [{ name: "root", sampled: false }, { name: "child", sampled: false }])
      const all = recording()
      yield* trace.pipe(Effect.withTracer(sampleRoots(all.tracer, 1_000)))
      assert.deepStrictEqual(all.seen, [{ name: "root", sampled: true }, { name: "child", sampled: true }])
    }))

  it.effect("a caller's sampled traceparent is kept even at 0 per mille; an unsampled one is not exported", () =>
    Effect.gen(function* () {
      const kept = recording()
      yield* trace.pipe(
        continueFromRecord("consume", { traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-01` }),
        Effect.withTracer(sampleRoots(kept.tracer, 0))
      )
      assert.isTrue(kept.seen.every((span) => span.sampled), JSON.stringify(kept.seen))
      const dropped = recording()
      yield* trace.pipe(
        continueFromRecord("consume", { traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-00` }),
        Effect.withTracer(sampleRoots(dropped.tracer, 1_000))
      )
      assert.isTrue(dropped.seen.every((span) => !span.sampled), JSON.stringify(dropped.seen))
    }))

  it.effect("500 per mille keeps about half of 2000 traces, each whole", () =>
    Effect.gen(function* () {
      const half = recording()
      yield* Effect.forEach(Array.from({ length: 2_000 }), () => trace, { discard: true }).pipe(Effect.withTracer(sampleRoots(half.tracer, 500)))
      const roots = half.seen.filter((span) => span.name === "root")
      const kept = roots.filter((span) => span.sampled).length
      // Binomial(2000, 0.5): 800..1200 is more than 8 standard deviations each side.
      assert.isAtLeast(kept, 800)
      assert.isAtMost(kept, 1_200)
      for (let i = 0; i < half.seen.length; i += 2) assert.strictEqual(half.seen[i]?.sampled, half.seen[i + 1]?.sampled)
    }))
})
