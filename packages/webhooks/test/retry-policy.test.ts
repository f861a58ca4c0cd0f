import { assert, describe, it } from "@effect/vitest"
import { DEFAULT_RETRY_SCHEDULE_MS } from "../src/Model.ts"
import { decide, JITTER_RATIO } from "../src/RetryPolicy.ts"
import { excerptOf, parseRetryAfter_ms, type SendResult } from "../src/Sender.ts"

const answered = (status: number, retryAfter_ms?: number): SendResult => ({ _tag: "Answered", status, retryAfter_ms, excerpt: "", latency_ms: 1 })
const unanswered: SendResult = { _tag: "Unanswered", error: "ECONNREFUSED", latency_ms: 1 }
const options = { retrySchedule_ms: DEFAULT_RETRY_SCHEDULE_MS, retryAfterMax_ms: 60 * 60 * 1_000 }

describe("retry policy", () => {
  it("2xx delivers, 410 is gone, anything else retries on the schedule (with at most ±10 % jitter), then gives up", () => {
    assert.deepStrictEqual(decide(answered(200), 1, options, 0.5), { _tag: "Delivered" })
    assert.deepStrictEqual(decide(answered(204), 1, options, 0.5), { _tag: "Delivered" })
    assert.deepStrictEqual(decide(answered(410), 1, options, 0.5), { _tag: "Gone" })
    for (const result of [answered(500), answered(404), answered(301), answered(400), unanswered]) {
      for (let attempt = 1; attempt < DEFAULT_RETRY_SCHEDULE_MS.length; attempt++) {
        const scheduled = DEFAULT_RETRY_SCHEDULE_MS[attempt] ?? 0
        for (const random of [0, 0.5, 0.999999]) {
          const decision = decide(result, attempt, options, random)
          assert.strictEqual(decision._tag, "Retry")
          if (decision._tag === "Retry") {
            assert.isAtLeast(decision.delay_ms, Math.floor(scheduled * (1 - JITTER_RATIO)))
            assert.isAtMost(decision.delay_ms, Math.ceil(scheduled * (1 + JITTER_RATIO)))
          }
        }
      }
      assert.deepStrictEqual(decide(result, DEFAULT_RETRY_SCHEDULE_MS.length, options, 0.5), { _tag: "Exhausted" })
    }
  })

  it("the default schedule is the issue's: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (8 attempts, ~27.6 h)", () => {
    assert.deepStrictEqual(DEFAULT_RETRY_SCHEDULE_MS, [0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000])
  })

  it("Retry-After on 429/502/503/504 pushes the retry out, never beyond the bound and never earlier than the schedule; ignored on 500", () => {
    const at = (status: number, retryAfter_ms: number) => decide(answered(status, retryAfter_ms), 1, options, 0.5)
    assert.deepStrictEqual(at(429, 120_000), { _tag: "Retry", delay_ms: 120_000 })
    assert.deepStrictEqual(at(503, 120_000), { _tag: "Retry", delay_ms: 120_000 })
    assert.deepStrictEqual(at(503, 10 * 24 * 60 * 60 * 1_000), { _tag: "Retry", delay_ms: options.retryAfterMax_ms })
    assert.deepStrictEqual(at(429, 1_000), { _tag: "Retry", delay_ms: 5_000 })
    assert.deepStrictEqual(at(500, 120_000), { _tag: "Retry", delay_ms: 5_000 })
  })

  it("Retry-After is delta-seconds or an HTTP date", () => {
    const now_ms = Date.parse("2026-12-02T09:00:00Z")
    assert.strictEqual(parseRetryAfter_ms("120", now_ms), 120_000)
    assert.strictEqual(parseRetryAfter_ms("Wed, 02 Dec 2026 09:01:00 GMT", now_ms), 60_000)
    assert.strictEqual(parseRetryAfter_ms("Wed, 02 Dec 2026 08:00:00 GMT", now_ms), 0)
    assert.strictEqual(parseRetryAfter_ms("soon", now_ms), undefined)
    assert.strictEqual(parseRetryAfter_ms("0000000000120", now_ms), 120_000, "leading zeros are not digits of a longer wait")
    // Longer than 9 digits: longer than any cap, so the cap (it was ignored: retried at once).
    const huge = parseRetryAfter_ms("99999999999999", now_ms)
    assert.isTrue(huge !== undefined && huge >= options.retryAfterMax_ms, String(huge))
    assert.deepStrictEqual(decide(answered(429, huge ?? 0), 1, options, 0.5), { _tag: "Retry", delay_ms: options.retryAfterMax_ms })
    assert.strictEqual(parseRetryAfter_ms(undefined, now_ms), undefined)
  })

  it("the kept excerpt of an answer is at most 1 KiB of valid UTF-8 without NUL, whatever the bytes", () => {
    for (const raw of [
      Buffer.alloc(5_000, 0xff), // invalid bytes: each becomes a 3-byte U+FFFD
      Buffer.from("é".repeat(2_000)), // 2-byte characters cut in the middle
      Buffer.from("a\u0000b".repeat(1_000)),
      Buffer.from("ok")
    ]) {
      const excerpt = excerptOf(raw)
      assert.isAtMost(Buffer.byteLength(excerpt, "utf8"), 1_024)
      assert.notInclude(excerpt, "\u0000")
      assert.strictEqual(Buffer.from(excerpt, "utf8").toString("utf8"), excerpt)
    }
    assert.strictEqual(excerptOf(Buffer.from("ok")), "ok")
  })
})
