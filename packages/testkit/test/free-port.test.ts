// A port picked for a child that binds it later must be one no outgoing connection can take in
// between: below the kernel's ephemeral range (FreePort.ts). With listen(0) every pick was inside it.
import { assert, describe, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { createConnection } from "node:net"
import { Effect } from "effect"
import { freePort } from "../src/ChildProcess.ts"

const ephemeralStart = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0])

/** Where the kernel put the local end of a fresh outgoing connection (to Postgres on loopback). */
const outgoingLocalPort = Effect.callback<number>((resume) => {
  const socket = createConnection({ host: "127.0.0.1", port: 5432 }, () => {
    const port = socket.localPort ?? 0
    socket.destroy()
    resume(Effect.succeed(port))
  })
  socket.once("error", () => resume(Effect.succeed(0)))
})

describe("freePort", () => {
  it.effect("picks below the kernel's ephemeral range, where outgoing connections take theirs, and never the same port twice in a process", () =>
    Effect.gen(function* () {
      const outgoing = yield* outgoingLocalPort
      assert.isAtLeast(outgoing, ephemeralStart, "an outgoing connection's local port comes from the ephemeral range")
      const picks: Array<number> = []
      for (let i = 0; i < 200; i++) picks.push(yield* freePort)
      for (const port of picks) {
        assert.isAtLeast(port, 1_024)
        assert.isBelow(port, ephemeralStart, `port ${port} is inside the ephemeral range`)
      }
      assert.strictEqual(new Set(picks).size, picks.length, "a port handed out twice")
    }))
})
