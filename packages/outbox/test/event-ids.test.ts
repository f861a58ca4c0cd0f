// Outbox event ids are UUIDs version 7 (RFC 9562 §5.7): time-ordered, so the primary keys that hold
// them (outbox_events, processed_events) grow at their right edge (docs/consumers.md § Performance,
// eleventh round). Still UUIDs every reader accepts (the domain's uuidPattern, Postgres' uuid).
import { assert, describe, it } from "@effect/vitest"
import { uuidPattern } from "@pay/domain"
import { newOutboxEventId } from "../src/EventIds.ts"

describe("outbox event ids", () => {
  it("are UUIDs version 7 with the RFC 9562 variant, their first 48 bits the time in ms, in order even within a millisecond", () => {
    const before_ms = Date.now()
    const ids = Array.from({ length: 2_000 }, () => newOutboxEventId())
    const after_ms = Date.now()
    for (const id of ids) {
      assert.isTrue(uuidPattern.test(id), id)
      assert.strictEqual(id[14], "7", `version: ${id}`)
      assert.include("89ab", id[19] ?? "", `variant: ${id}`)
      const time_ms = Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16)
      assert.isAtLeast(time_ms, before_ms)
      assert.isAtMost(time_ms, after_ms)
    }
    assert.deepStrictEqual([...ids].sort(), ids, "ids made later sort later")
    assert.strictEqual(new Set(ids).size, ids.length)
  })
})
