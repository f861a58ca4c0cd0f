// The public documents pipelined and never read (an outside limits review): 50 connections × 16
// `GET /docs` took the server from 492 to 953 MB (~9 MB a connection): each answer's body was the
// library's text, which Node encodes into a new 3.5 MB buffer per write (http/DocumentBytes.ts).
// Written from bytes built once, a connection holds references to one buffer. A real server
// process, its resident memory read from /proc.
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { connect, type Socket } from "node:net"
import { TestServer, testServerLayer } from "./support/TestServer.ts"

const residentMb = (pid: number): number => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((entry) => entry.startsWith("VmRSS:"))
  return Number(line?.replace(/\D+/g, "") ?? Number.NaN) / 1024
}

const connections = 30
const pipelined = 12

/** Opens a connection, sends `pipelined` GETs of `path` at once, and never reads. */
const unreadPipeline = (port: number, path: string) =>
  new Promise<Socket>((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" }, () => {
      socket.pause()
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`.repeat(pipelined))
      resolve(socket)
    })
    socket.on("error", reject)
  })

layer(testServerLayer(), { excludeTestServices: true, timeout: "120 seconds" })("the public documents, pipelined and never read (real server process)", (it) => {
  it.effect(`${connections} connections × ${pipelined} GET /docs unread: the server's memory grows by less than 2 MB a connection`, () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const pid = server.process.pid()
      // Warm: the page built once, as any first visitor does.
      const first = yield* server.request("GET", "/docs")
      assert.strictEqual(first.status, 200)
      const before_mb = residentMb(pid)
      const sockets = yield* Effect.promise(() => Promise.all(Array.from({ length: connections }, () => unreadPipeline(server.process.port, "/docs"))))
      yield* Effect.sleep("3 seconds")
      const during_mb = residentMb(pid)
      for (const socket of sockets) socket.destroy()
      const probe = yield* server.request("GET", "/health/live")
      assert.strictEqual(probe.status, 200)
      assert.isBelow(during_mb - before_mb, 2 * connections, `resident ${before_mb.toFixed(0)} → ${during_mb.toFixed(0)} MB`)
    }))
})
