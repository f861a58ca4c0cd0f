// Pipelined requests and clients that stop reading (http/Pipelining.ts, docs/security.md): a
// connection is answered one request at a time, at most HTTP_PIPELINED_REQUESTS_MAX wait behind
// the one being answered, and a client that stops reading its answer is cut after
// HTTP_WRITE_STALL_TIMEOUT_MS. Over real sockets on loopback, against the server the API runs on.
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { connect, type Socket } from "node:net"
import { createLimitedServer, socketLimitsDefault, type SocketLimits } from "../src/http/Socket.ts"
import { Api } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"

type Handler = (request: IncomingMessage, response: ServerResponse) => void

/** A server with the API's socket limits and the given handler, listening on a loopback port. */
const listening = async (limits: Partial<SocketLimits>, handler: Handler) => {
  const server = createLimitedServer({ ...socketLimitsDefault, ...limits })()
  server.on("request", handler)
  const accepted: Array<Socket> = []
  server.on("connection", (socket: Socket) => accepted.push(socket))
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no port")
  return { accepted, port: address.port, close: () => {
    server.closeAllConnections()
    server.close()
  } }
}

/** A client socket that records what it receives and when the server closed it. */
const client = (port: number, reading: boolean) => {
  const socket: Socket = connect(port, "127.0.0.1")
  const state = { received: "", closed: false }
  socket.on("error", () => undefined)
  socket.on("close", () => { state.closed = true })
  if (reading) socket.on("data", (chunk: Buffer) => { state.received += chunk.toString("latin1") })
  else socket.pause()
  return { socket, state }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const until = async (condition: () => boolean, timeout_ms: number) => {
  const deadline = Date.now() + timeout_ms
  while (!condition() && Date.now() < deadline) await sleep(20)
  return condition()
}

const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`

describe("a connection is answered one request at a time", () => {
  it("pipelined requests reach the handler one after the other, each once the answer before it is sent, answered in order", async () => {
    const held: Array<ServerResponse> = []
    const seen: Array<string> = []
    const { port, close } = await listening({}, (request, response) => {
      seen.push(request.url ?? "")
      held.push(response)
    })
    try {
      const { socket, state } = client(port, true)
      socket.write(get("/a") + get("/b") + get("/c"))
      await sleep(300)
      assert.deepStrictEqual(seen, ["/a"], "the second request waits while the first is being answered")
      held[0]?.end("first")
      assert.isTrue(await until(() => seen.length === 2, 2_000), `then the second: ${seen.join(",")}`)
      held[1]?.end("second")
      assert.isTrue(await until(() => seen.length === 3, 2_000), `then the third: ${seen.join(",")}`)
      held[2]?.end("third")
      assert.isTrue(await until(() => state.received.includes("third"), 2_000), state.received)
      const order = ["first", "second", "third"].map((body) => state.received.indexOf(body))
      assert.deepStrictEqual([...order].sort((a, b) => a - b), order, "answers in the order asked")
      assert.isFalse(state.closed, "the connection stays open")
      socket.destroy()
    } finally {
      close()
    }
  })

  it("one request more than HTTP_PIPELINED_REQUESTS_MAX waiting closes the connection; the handler saw only the first", async () => {
    const seen: Array<string> = []
    const { port, close } = await listening({ pipelinedRequests_max: 3 }, (request) => {
      seen.push(request.url ?? "")
    })
    try {
      const within = client(port, true)
      within.socket.write(get("/1") + get("/2") + get("/3") + get("/4"))
      const over = client(port, true)
      over.socket.write(get("/1") + get("/2") + get("/3") + get("/4") + get("/5"))
      assert.isTrue(await until(() => over.state.closed, 3_000), "one waiting request too many: closed")
      await sleep(200)
      assert.isFalse(within.state.closed, "three waiting is within the limit")
      assert.deepStrictEqual(seen, ["/1", "/1"], "each connection's first request only")
      within.socket.destroy()
    } finally {
      close()
    }
  })
})

describe("a client that stops reading its answer", () => {
  it("is cut after HTTP_WRITE_STALL_TIMEOUT_MS; a client waiting longer than that for a slow answer is not", async () => {
    // 32 MB: more than loopback's socket buffers hold, so bytes stay waiting to be written.
    const large = Buffer.alloc(32 * 1024 * 1024, 0x61)
    const { accepted, port, close } = await listening({ writeStall_ms: 1_000 }, (request, response) => {
      if (request.url === "/large") response.end(large)
      else setTimeout(() => response.end("slow but sent"), 2_500)
    })
    try {
      const stalled = client(port, false)
      stalled.socket.write(get("/large"))
      assert.isTrue(await until(() => accepted.length === 1, 2_000))
      const patient = client(port, true)
      patient.socket.write(get("/slow"))
      // A paused client does not read the close either: the server's side of it is what is closed.
      assert.isTrue(await until(() => accepted[0]?.destroyed === true, 6_000), "the connection that does not read is closed")
      assert.isTrue(await until(() => patient.state.received.includes("slow but sent"), 4_000), patient.state.received)
      assert.isFalse(patient.state.closed, "2.5 s without bytes while the server prepares the answer is not a stall")
      patient.socket.destroy()
      stalled.socket.destroy()
    } finally {
      close()
    }
  })
})

layer(inProcessAppLayer(), { excludeTestServices: true, timeout: "60 seconds" })("pipelining against the API (in-process app over HTTP)", (it) => {
  it.effect("three pipelined requests get their three answers, in order", () =>
    Effect.gen(function* () {
      const api = yield* Api
      const port = Number(new URL(api.baseUrl).port)
      const answers = yield* Effect.promise(async () => {
        const { socket, state } = client(port, true)
        socket.write(get("/health/live") + get("/openapi.json") + get("/nope"))
        await until(() => (state.received.match(/HTTP\/1\.1 \d{3}/g) ?? []).length === 3 && state.received.includes("route_not_found"), 10_000)
        socket.destroy()
        return state.received.match(/HTTP\/1\.1 \d{3}/g) ?? []
      })
      assert.deepStrictEqual(answers, ["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 404"])
    }))
})
