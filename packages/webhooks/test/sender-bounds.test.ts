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

  it.live("a 101 without an Upgrade header, and a receiver that never answers, end at the timeout as unanswered", () =>
    Effect.gen(function* () {
      for (const answer of ["HTTP/1.1 101 Switching Protocols\r\n\r\n", ""]) {
        const receiver = yield* rawReceiver(answer)
        const result = yield* attempt(receiver.port, 600)
        assert.isTrue(result._tag === "Some", `the attempt never ended (${JSON.stringify(answer)})`)
        if (result._tag === "Some" && result.value._tag === "Unanswered") {
          assert.match(result.value.error, /no answer within 600 ms|closed without an answer/)
        } else if (result._tag === "Some" && result.value._tag === "Answered") {
          assert.strictEqual(result.value.status, 101, JSON.stringify(result.value))
        }
      }
    }).pipe(Effect.scoped))
})
