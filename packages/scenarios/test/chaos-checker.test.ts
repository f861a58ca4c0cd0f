import { assert, describe, it } from "@effect/vitest"
import { acknowledged, faultCoverage, processLiveness, replays } from "@pay/scenarios/chaos/Checker"
import { type Decided, decidedOf } from "@pay/scenarios/chaos/History"
import { startReceiver } from "@pay/scenarios/chaos/Receiver"
import { faultKindsWithoutCluster, faultSchedule } from "@pay/scenarios/chaos/Schedule"
import { startFaultProxy } from "@pay/testkit/FaultProxy"
import { Effect } from "effect"
import { createConnection, createServer } from "node:net"
import { Webhook } from "standardwebhooks"

/** The chaos checker's pure checks must find what they are for, and the schedule must follow its seed. */
const decided = (overrides: Partial<Pick<Decided, "op" | "status">>, answers: ReadonlyArray<string> = [`{"id":"pay_1","status":"CREATED"}`]): Decided =>
  decidedOf({ op: "create", key: "k", merchant: 0, payment_id: "pay_1", status: 201, duplicated: false, ...overrides }, answers)

describe("chaos checker", () => {
  it("a replay that differs by one byte is a violation; identical replays are not", () => {
    assert.lengthOf(replays([decided({}, ["a", "a"])]).violations, 0)
    assert.lengthOf(replays([decided({}, ["a", "a "])]).violations, 1)
  })

  it("a used key with another body must have been refused with 422", () => {
    assert.lengthOf(replays([decided({ op: "reuse", status: 422 })]).violations, 0)
    assert.lengthOf(replays([decided({ op: "reuse", status: 201 })]).violations, 1)
  })

  it("an acknowledged state must exist, or a later one; an earlier or missing one is a violation", () => {
    const ack = decided({ op: "settle", status: 200 }, [`{"id":"pay_1","status":"AUTHORIZED"}`])
    assert.lengthOf(acknowledged([ack], new Map([["pay_1", "SETTLED"]])).violations, 0)
    assert.lengthOf(acknowledged([ack], new Map([["pay_1", "CREATED"]])).violations, 1)
    assert.lengthOf(acknowledged([ack], new Map()).violations, 1)
  })

  it("the same seed gives the same fault schedule; another seed another one", () => {
    assert.deepStrictEqual(faultSchedule(42, 120_000), faultSchedule(42, 120_000))
    assert.notDeepEqual(faultSchedule(42, 120_000), faultSchedule(43, 120_000))
    assert.isAtLeast(faultSchedule(42, 120_000).length, 10)
  })

  it("a long run's fault gap spaces the faults: each starts at least the gap after the previous one is healed", () => {
    const spaced = faultSchedule(11, 3_600_000, undefined, 20_000)
    assert.isAtLeast(spaced.length, 20, "an hour still draws the 20 faults the long run needs")
    assert.isBelow(spaced.length, faultSchedule(11, 3_600_000).length / 3)
    spaced.slice(1).forEach((fault, i) => {
      const previous = spaced[i]
      if (previous !== undefined) assert.isAtLeast(fault.at_ms - previous.at_ms - previous.hold_ms, 20_000)
    })
  })
})

describe("chaos verdict: faults really happened, no process died on its own", () => {
  const coverage = { scheduled: 5, applied: 5, failed: 0, skippedTarget: 0, skippedLate: 0, load_s: 30, duration_s: 30, paymentsTarget: undefined }

  it("a run with no fault applied fails, and says what to change (seed 49: --payments 3 stopped the load after 1 s)", () => {
    const none = faultCoverage({ ...coverage, applied: 0, skippedTarget: 5, load_s: 1, paymentsTarget: 3 })
    assert.lengthOf(none.violations, 1)
    assert.include(none.violations[0], "no fault applied of 5 scheduled")
    assert.include(none.violations[0], "--payments")
    assert.include(none.name, "0 of 5 scheduled")
    assert.include(faultCoverage({ ...coverage, applied: 0, failed: 2, skippedLate: 3 }).violations[0], "--duration")
  })

  it("a payments target that cut off more than half of the schedule fails; slow heals that push faults past the load do not", () => {
    assert.lengthOf(faultCoverage({ ...coverage, scheduled: 11, applied: 2, skippedTarget: 9, load_s: 17, duration_s: 90, paymentsTarget: 150 }).violations, 1)
    assert.lengthOf(faultCoverage({ ...coverage, scheduled: 280, applied: 195, skippedTarget: 85, paymentsTarget: 100_000 }).violations, 0)
    assert.lengthOf(faultCoverage({ ...coverage, scheduled: 38, applied: 19, skippedLate: 19 }).violations, 0)
    assert.lengthOf(faultCoverage({ ...coverage, scheduled: 9, applied: 8, skippedLate: 1 }).violations, 0)
  })

  it("a process found dead after the load that no failed fault left down is a violation, even when its restart worked", () => {
    const liveness = { total: 7, deadAfterLoad: [], leftDownByFaults: [], notRestarted: [], deadAtEnd: [] }
    assert.lengthOf(processLiveness(liveness).violations, 0)
    assert.lengthOf(processLiveness({ ...liveness, deadAfterLoad: ["consumers-a"] }).violations, 1)
    assert.lengthOf(processLiveness({ ...liveness, deadAfterLoad: ["consumers-a"], leftDownByFaults: ["consumers-a"] }).violations, 0)
    assert.lengthOf(processLiveness({ ...liveness, deadAfterLoad: ["api-a"], leftDownByFaults: ["api-a"], notRestarted: ["api-a: timeout"] }).violations, 1)
    assert.lengthOf(processLiveness({ ...liveness, deadAtEnd: ["webhook-sender"] }).violations, 1)
  })
})

describe("chaos run parts", () => {
  it("without a cluster of the run's own, the schedule never draws a broker fault; with one it does", () => {
    const without = faultSchedule(5, 600_000, faultKindsWithoutCluster)
    assert.isAtLeast(without.length, 50)
    assert.isFalse(without.some((fault) => fault.kind === "kill-broker" || fault.kind === "pause-broker"))
    assert.isTrue(faultSchedule(5, 600_000).some((fault) => fault.kind === "kill-broker" || fault.kind === "pause-broker"))
  })

  it.live("the receiver verifies signatures (a forged one is refused), applies a webhook-id once and counts redeliveries", () =>
    Effect.gen(function* () {
      const receiver = yield* startReceiver(1)
      const secret = `whsec_${Buffer.from("0123456789abcdef0123456789abcdef").toString("base64")}`
      receiver.setSecret(0, secret)
      const signer = new Webhook(secret)
      const post = (id: string, body: string, signature?: string) =>
        Effect.promise(() => {
          const timestamp = new Date()
          return fetch(receiver.urlFor(0), {
            method: "POST",
            body,
            headers: {
              "webhook-id": id,
              "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1_000)),
              "webhook-signature": signature ?? signer.sign(id, timestamp, body)
            }
          }).then((response) => response.status)
        })
      const body = JSON.stringify({ id: "evt-1", type: "payment_created", data: { payment_id: "pay_1" } })
      assert.strictEqual(yield* post("evt-1", body, "v1,Zm9yZ2Vk"), 400)
      // Until it is applied (a seeded share of first attempts answers 503, like a busy receiver).
      let status = 503
      for (let attempt = 0; attempt < 5 && status === 503; attempt++) status = yield* post("evt-1", body)
      assert.strictEqual(status, 200)
      assert.strictEqual(yield* post("evt-1", body), 200)
      assert.strictEqual(receiver.applied.size, 1)
      assert.strictEqual(receiver.redeliveries(), 1)
      assert.strictEqual(receiver.refusedSignatures(), 1)
      assert.deepStrictEqual(receiver.appliedTwice, [])
      // The same event under another webhook-id is applied twice: the checker's violation.
      let other = 503
      for (let attempt = 0; attempt < 5 && other === 503; attempt++) other = yield* post("evt-1-copy", body)
      assert.deepStrictEqual(receiver.appliedTwice, ["evt-1"])
    }).pipe(Effect.scoped))

  it.live("the fault proxy's latency keeps every byte and their order, both ways", () =>
    Effect.gen(function* () {
      const echo = createServer((socket) => socket.pipe(socket))
      yield* Effect.promise(() => new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", () => resolve())))
      const address = echo.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const proxy = yield* startFaultProxy("127.0.0.1", port)
      yield* proxy.setLatency(30)
      const sent = Array.from({ length: 50 }, (_, i) => `chunk-${i};`)
      const received = yield* Effect.promise(() => new Promise<string>((resolve) => {
        const socket = createConnection({ host: "127.0.0.1", port: proxy.port })
        let text = ""
        socket.on("data", (chunk) => {
          text += chunk.toString("utf8")
          if (text.length >= sent.join("").length) {
            socket.destroy()
            resolve(text)
          }
        })
        sent.forEach((part, i) => setTimeout(() => {
          // Latency dropped half way: what was held must still leave first.
          if (i === 25) Effect.runSync(proxy.setLatency(0))
          socket.write(part)
        }, i))
      }))
      assert.strictEqual(received, sent.join(""))
      yield* Effect.promise(() => new Promise<void>((resolve) => echo.close(() => resolve())))
    }).pipe(Effect.scoped))
})
