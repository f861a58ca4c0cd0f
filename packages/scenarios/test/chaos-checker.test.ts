import { assert, describe, it } from "@effect/vitest"
import { acknowledged, replays } from "@pay/scenarios/chaos/Checker"
import type { Decided } from "@pay/scenarios/chaos/History"
import { faultSchedule } from "@pay/scenarios/chaos/Schedule"

/** The chaos checker's pure checks must find what they are for, and the schedule must follow its seed. */
const decided = (overrides: Partial<Decided>): Decided => ({
  op: "create", key: "k", merchant: 0, payment_id: "pay_1", status: 201, body: `{"id":"pay_1","status":"CREATED"}`,
  answers: [`{"id":"pay_1","status":"CREATED"}`], duplicated: false, ...overrides
})

describe("chaos checker", () => {
  it("a replay that differs by one byte is a violation; identical replays are not", () => {
    assert.lengthOf(replays([decided({ answers: ["a", "a"] })]).violations, 0)
    assert.lengthOf(replays([decided({ answers: ["a", "a "] })]).violations, 1)
  })

  it("a used key with another body must have been refused with 422", () => {
    assert.lengthOf(replays([decided({ op: "reuse", status: 422 })]).violations, 0)
    assert.lengthOf(replays([decided({ op: "reuse", status: 201 })]).violations, 1)
  })

  it("an acknowledged state must exist, or a later one; an earlier or missing one is a violation", () => {
    const ack = decided({ op: "settle", status: 200, body: `{"id":"pay_1","status":"AUTHORIZED"}` })
    assert.lengthOf(acknowledged([ack], new Map([["pay_1", "SETTLED"]])).violations, 0)
    assert.lengthOf(acknowledged([ack], new Map([["pay_1", "CREATED"]])).violations, 1)
    assert.lengthOf(acknowledged([ack], new Map()).violations, 1)
  })

  it("the same seed gives the same fault schedule; another seed another one", () => {
    assert.deepStrictEqual(faultSchedule(42, 120_000), faultSchedule(42, 120_000))
    assert.notDeepEqual(faultSchedule(42, 120_000), faultSchedule(43, 120_000))
    assert.isAtLeast(faultSchedule(42, 120_000).length, 10)
  })
})
