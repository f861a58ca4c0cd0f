import { assert, describe, it } from "@effect/vitest"
import { DateTime, Result } from "effect"
import * as fc from "fast-check"
import {
  allowedTransitionPairs,
  commandTarget,
  InvalidTransition,
  isTerminal,
  isTransitionAllowed,
  type Payment,
  type PaymentCommandName,
  paymentCommandNames,
  paymentStatuses,
  type PaymentStatus,
  paymentTransitions,
  terminalStatuses,
  transition
} from "../src/index.ts"
import { commandFor, input, later, paymentIn, t0 } from "./fixtures.ts"
import { createPayment } from "../src/index.ts"

/**
 * The expected rules, written out by hand and independently of `paymentTransitions`: if someone
 * edits the code's table, these tests say exactly which cell of the matrix changed.
 */
const expectedAllowed: ReadonlySet<string> = new Set([
  "CREATED->AUTHORIZED",
  "CREATED->FAILED",
  "CREATED->CANCELED",
  "AUTHORIZED->SETTLED",
  "AUTHORIZED->FAILED",
  "AUTHORIZED->CANCELED",
  "AUTHORIZED->EXPIRED"
])
const expectedCommandOutcome: Readonly<
  Record<PaymentStatus, Readonly<Record<PaymentCommandName, PaymentStatus | "invalid">>>
> = {
  CREATED: { authorize: "AUTHORIZED", decline: "FAILED", settle: "invalid", fail: "invalid", cancel: "CANCELED", expire: "invalid" },
  AUTHORIZED: { authorize: "invalid", decline: "invalid", settle: "SETTLED", fail: "FAILED", cancel: "CANCELED", expire: "EXPIRED" },
  SETTLED: { authorize: "invalid", decline: "invalid", settle: "invalid", fail: "invalid", cancel: "invalid", expire: "invalid" },
  FAILED: { authorize: "invalid", decline: "invalid", settle: "invalid", fail: "invalid", cancel: "invalid", expire: "invalid" },
  CANCELED: { authorize: "invalid", decline: "invalid", settle: "invalid", fail: "invalid", cancel: "invalid", expire: "invalid" },
  EXPIRED: { authorize: "invalid", decline: "invalid", settle: "invalid", fail: "invalid", cancel: "invalid", expire: "invalid" }
}
const expectedEvent: Readonly<Record<string, string>> = {
  AUTHORIZED: "payment_authorized",
  SETTLED: "payment_settled",
  FAILED: "payment_failed",
  CANCELED: "payment_canceled",
  EXPIRED: "payment_expired"
}

const matrix = paymentStatuses.flatMap((from) => paymentStatuses.map((to) => ({ from, to })))

describe("the 6x6 matrix of from/to statuses", () => {
  it.each(matrix)("$from -> $to", ({ from, to }) => {
    const allowed = expectedAllowed.has(`${from}->${to}`)
    assert.strictEqual(isTransitionAllowed(from, to), allowed, "isTransitionAllowed")

    // Every command that leads to `to`, applied to a payment in `from`.
    const commands = paymentCommandNames.filter((name) => commandTarget[name] === to)
    if (to === "CREATED") {
      // Nothing leads back to CREATED: no command can even express it (the database matrix
      // covers the raw-SQL attempt).
      assert.deepStrictEqual(commands, [])
      assert.isFalse(allowed)
      return
    }
    assert.isAbove(commands.length, 0)
    const outcomes = commands.map((name) => ({ name, result: transition(paymentIn(from), commandFor(name), later(60)) }))
    const successes = outcomes.filter((outcome) => Result.isSuccess(outcome.result))
    assert.strictEqual(successes.length, allowed ? 1 : 0, "exactly one command realises an allowed pair, none a forbidden one")
    for (const { name, result } of outcomes) {
      if (Result.isSuccess(result)) {
        assert.strictEqual(result.success.payment.status, to)
        continue
      }
      const error = result.failure
      assert.instanceOf(error, InvalidTransition)
      assert.strictEqual(error._tag, "InvalidTransition")
      assert.strictEqual(error.paymentId, paymentIn(from).id)
      assert.strictEqual(error.from, from)
      assert.strictEqual(error.to, to)
      assert.strictEqual(error.command, name)
    }
  })
})

describe("every command from every status", () => {
  const cases = paymentStatuses.flatMap((from) => paymentCommandNames.map((command) => ({ from, command })))
  it.each(cases)("$command on a $from payment", ({ from, command }) => {
    const before = paymentIn(from)
    const result = transition(before, commandFor(command), later(60))
    const expected = expectedCommandOutcome[from][command]
    if (expected === "invalid") {
      assert.isTrue(Result.isFailure(result), `${command} must be refused from ${from}`)
      if (Result.isFailure(result)) {
        assert.strictEqual(result.failure._tag, "InvalidTransition")
        if (result.failure._tag !== "InvalidTransition") return
        assert.deepStrictEqual(
          { from: result.failure.from, to: result.failure.to, command: result.failure.command },
          { from, to: commandTarget[command], command }
        )
      }
      return
    }
    assert.isTrue(Result.isSuccess(result), `${command} must be allowed from ${from}`)
    if (Result.isFailure(result)) return
    const { payment: after, event } = result.success
    assert.strictEqual(after.status, expected)
    assert.strictEqual(after.version, before.version + 1)
    assert.isTrue(DateTime.isGreaterThanOrEqualTo(after.updated_at, before.updated_at))
    assert.strictEqual(DateTime.toEpochMillis(after.created_at), DateTime.toEpochMillis(before.created_at))
    // Nothing but status, failure details, version and updated_at changes.
    assert.deepStrictEqual(
      [after.id, after.merchant_id, after.amount_minor, after.currency, after.payment_method, after.description, after.metadata],
      [before.id, before.merchant_id, before.amount_minor, before.currency, before.payment_method, before.description, before.metadata]
    )
    assert.strictEqual(after.failure_code !== null, expected === "FAILED")
    assert.strictEqual(after.failure_message !== null, expected === "FAILED")
    assert.strictEqual(event.type, expectedEvent[expected])
    assert.strictEqual(event.payment_id, after.id)
    assert.strictEqual(event.version, after.version)
    assert.strictEqual(event.previous_status, from)
    assert.strictEqual(event.status, after.status)
    assert.strictEqual(event.amount_minor, before.amount_minor)
    if (event.type === "payment_failed") {
      const command_ = commandFor(command)
      assert.isTrue(command_._tag === "decline" || command_._tag === "fail")
      if (command_._tag === "decline" || command_._tag === "fail") {
        assert.strictEqual(event.failure_code, command_.failure_code)
        assert.strictEqual(event.failure_message, command_.failure_message)
      }
    }
  })
})

describe("the table drives everything", () => {
  it("holds exactly the seven allowed pairs", () => {
    assert.deepStrictEqual(
      new Set(allowedTransitionPairs.map(([from, to]) => `${from}->${to}`)),
      expectedAllowed
    )
    assert.strictEqual(paymentTransitions.length, 7)
  })

  it("derives SETTLED, FAILED, CANCELED and EXPIRED as the terminal statuses", () => {
    assert.deepStrictEqual([...terminalStatuses].sort(), ["CANCELED", "EXPIRED", "FAILED", "SETTLED"])
    assert.isTrue(isTerminal("SETTLED") && isTerminal("FAILED") && isTerminal("CANCELED") && isTerminal("EXPIRED"))
    assert.isFalse(isTerminal("CREATED") || isTerminal("AUTHORIZED"))
  })

  it("gives each command exactly one target status", () => {
    assert.deepStrictEqual(commandTarget, {
      authorize: "AUTHORIZED",
      decline: "FAILED",
      settle: "SETTLED",
      fail: "FAILED",
      cancel: "CANCELED",
      expire: "EXPIRED"
    })
  })

  it("explains why each transition exists", () => {
    for (const rule of paymentTransitions) assert.isAbove(rule.why.length, 20)
  })
})

describe("transition is pure", () => {
  it("does not touch its input and returns equal results for equal inputs", () => {
    const before = paymentIn("AUTHORIZED")
    const snapshot = JSON.stringify({ ...before, amount_minor: String(before.amount_minor) })
    const first = transition(before, commandFor("settle"), later(90))
    const second = transition(before, commandFor("settle"), later(90))
    assert.strictEqual(JSON.stringify({ ...before, amount_minor: String(before.amount_minor) }), snapshot)
    assert.isTrue(Result.isSuccess(first) && Result.isSuccess(second))
    if (Result.isSuccess(first) && Result.isSuccess(second)) {
      assert.deepStrictEqual(first.success.event, second.success.event)
      assert.strictEqual(first.success.payment.version, second.success.payment.version)
    }
  })

  it("never moves updated_at backwards when the caller's clock is behind", () => {
    const authorized = paymentIn("AUTHORIZED") // updated at t0 + 1 s
    const result = transition(authorized, commandFor("settle"), DateTime.subtract(t0, { hours: 1 }))
    assert.isTrue(Result.isSuccess(result))
    if (Result.isSuccess(result)) {
      assert.strictEqual(
        DateTime.toEpochMillis(result.success.payment.updated_at),
        DateTime.toEpochMillis(authorized.updated_at)
      )
    }
  })

  it("creates a CREATED payment at version 1 with its payment_created event", () => {
    const { payment, event } = createPayment(input, { id: paymentIn("CREATED").id, now: t0 })
    assert.strictEqual(payment.status, "CREATED")
    assert.strictEqual(payment.version, 1)
    assert.strictEqual(event.type, "payment_created")
    assert.strictEqual(event.version, 1)
    assert.strictEqual(event.amount_minor, 1250n)
  })
})

// ---------------------------------------------------------------------------------------------
// Properties: random command sequences.
// ---------------------------------------------------------------------------------------------

const commandArbitrary = fc.oneof(
  fc.constant(commandFor("authorize")),
  fc.constant(commandFor("settle")),
  fc.record({
    _tag: fc.constantFrom("decline" as const, "fail" as const),
    failure_code: fc.stringMatching(/^[a-z][a-z0-9_]{0,20}$/),
    failure_message: fc.string({ minLength: 1, maxLength: 50 })
  })
)

describe("random command sequences (fast-check)", () => {
  it("never produce a status or a move outside the table, never leave a terminal state", () => {
    fc.assert(
      fc.property(fc.array(commandArbitrary, { maxLength: 25 }), fc.array(fc.integer({ min: -3600, max: 3600 }), { minLength: 25, maxLength: 25 }), (commands, offsets) => {
        let payment: Payment = createPayment(input, { id: paymentIn("CREATED").id, now: t0 }).payment
        let successes = 0
        commands.forEach((command, index) => {
          const before = payment
          const result = transition(before, command, later(offsets[index] ?? 0))
          if (isTerminal(before.status)) {
            // A terminal payment refuses everything, and stays exactly as it was.
            assert.isTrue(Result.isFailure(result), `${command._tag} accepted on terminal ${before.status}`)
          }
          if (Result.isFailure(result)) {
            assert.instanceOf(result.failure, InvalidTransition)
            assert.strictEqual(result.failure.from, before.status)
            assert.isFalse(expectedCommandOutcome[before.status][command._tag] !== "invalid")
            return
          }
          const after = result.success.payment
          assert.include(paymentStatuses, after.status)
          assert.isTrue(expectedAllowed.has(`${before.status}->${after.status}`), `${before.status}->${after.status}`)
          assert.strictEqual(after.version, before.version + 1)
          assert.isTrue(DateTime.isGreaterThanOrEqualTo(after.updated_at, before.updated_at))
          assert.strictEqual(after.status === "FAILED", after.failure_code !== null && after.failure_message !== null)
          payment = after
          successes++
        })
        // The longest path through the table is two moves (CREATED -> AUTHORIZED -> SETTLED|FAILED).
        assert.isAtMost(successes, 2)
        assert.strictEqual(payment.version, 1 + successes)
      }),
      { numRuns: 500 }
    )
  })

  it("accepts a command exactly when the table has a rule for (command, current status)", () => {
    fc.assert(
      fc.property(fc.constantFrom(...paymentStatuses), commandArbitrary, (status, command) => {
        const result = transition(paymentIn(status), command, later(60))
        const expected = expectedCommandOutcome[status][command._tag]
        assert.strictEqual(Result.isSuccess(result), expected !== "invalid")
        if (Result.isSuccess(result)) assert.strictEqual(result.success.payment.status, expected)
      }),
      { numRuns: 200 }
    )
  })
})
