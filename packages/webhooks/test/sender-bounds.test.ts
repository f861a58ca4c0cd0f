// One attempt always ends within its bound, whatever the receiver answers (outside attack review):
// a receiver that answered `101 Switching Protocols` and kept the socket made the attempt wait for
// ever (Node let the socket go and emitted neither a response nor an error, and the 15 s timer's
// destroy emitted nothing either), so the sender's slot was held for good and every lease after it
// took another: six merchants' endpoints stopped every merchant's webhooks, and SIGTERM never ended.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createServer, type Socket } from "node:net"
import { send } from "../src/Sender.ts"

/** A raw TCP receiver on loopback that writes `answer` to every connection and then holds it open. */
const rawReceiver = (answer: string) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly port: number; readonly sockets: Set<Socket>; readonly close: () => void }>((resume) => {
      const sockets = new Set<Socket>()
      const server = createServer((socket) => {
        sockets.add(socket)
        socket.on("error", () => undefined)
        socket.once("data", () => {
          if (answer !== "") socket.write(answer)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        resume(Effect.succeed({
          port,
          sockets,
          close: () => {
            for (const socket of sockets) socket.destroy()
            server.close()
          }
        }))
      })
    }),
    (receiver) => Effect.sync(() => receiver.close())
  )

const attempt = (port: number, timeout_ms: number) =>
  send({ url: `http://127.0.0.1:${port}/hook`, headers: { "content-type": "application/json" }, body: "{}", timeout_ms, allowLoopbackHttp: true }).pipe(
    // Far above the bound: a hang fails the test instead of holding it until vitest's timeout.
    Effect.timeoutOption(10_000)
  )

describe("the webhook sender: every attempt ends within its bound", () => {
  it.live("a 101 Switching Protocols with the socket kept open is a failed attempt with that status, at once, and the socket is dropped", () =>
    Effect.gen(function* () {
      const receiver = yield* rawReceiver("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
      const started_ms = Date.now()
      const result = yield* attempt(receiver.port, 2_000)
      assert.isTrue(result._tag === "Some", "the attempt never ended")
      if (result._tag !== "Some") return
      assert.strictEqual(result.value._tag, "Answered")
      if (result.value._tag === "Answered") assert.strictEqual(result.value.status, 101)
      assert.isBelow(Date.now() - started_ms, 1_500, "ended by the timer, not by the answer")
      // Our side let the connection go: the receiver sees it closed.
      yield* Effect.sleep("100 millis")
      assert.isTrue([...receiver.sockets].every((socket) => socket.destroyed || socket.readableEnded), "the upgraded socket is still open")
    }).pipe(Effect.scoped))

  it.live("a 101 without an Upgrade header is the same failed attempt at once; a receiver that never answers ends at the timeout, unanswered", () =>
    Effect.gen(function* () {
      const bare = yield* rawReceiver("HTTP/1.1 101 Switching Protocols\r\n\r\n")
      const bareStarted_ms = Date.now()
      const upgraded = yield* attempt(bare.port, 2_000)
      assert.deepStrictEqual(upgraded._tag === "Some" && upgraded.value._tag === "Answered" ? upgraded.value.status : upgraded, 101)
      assert.isBelow(Date.now() - bareStarted_ms, 1_500, "ended by the timer, not by the answer")
      const silent = yield* rawReceiver("")
      const silentStarted_ms = Date.now()
      const unanswered = yield* attempt(silent.port, 600)
      assert.deepStrictEqual(unanswered._tag === "Some" && unanswered.value._tag === "Unanswered" ? unanswered.value.error : unanswered, "no answer within 600 ms")
      assert.isAtLeast(Date.now() - silentStarted_ms, 550, "ended before its timeout")
    }).pipe(Effect.scoped))

  it.live("a status line whose body does not finish within the bound is answered with that status (a 200 is delivered, not sent again), the body cut where it was", () =>
    Effect.gen(function* () {
      // Content-Length 100, 10 bytes, then silence: the receiver said 200 and processed the event.
      for (const [status, reason] of [[200, "OK"], [503, "Service Unavailable"]] as const) {
        const trickle = yield* rawReceiver(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: 100\r\n\r\n0123456789`)
        const started_ms = Date.now()
        const result = yield* attempt(trickle.port, 600)
        assert.isTrue(result._tag === "Some", "the attempt never ended")
        if (result._tag !== "Some") return
        assert.deepInclude(result.value, { _tag: "Answered", status, excerpt: "0123456789" }, JSON.stringify(result.value))
        assert.isAtLeast(Date.now() - started_ms, 550, "ended by the bound, not before")
      }
    }).pipe(Effect.scoped))
})
