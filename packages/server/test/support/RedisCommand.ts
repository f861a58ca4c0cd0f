import { Effect, Schema } from "effect"
import { connect } from "node:net"

export class RedisCommandError extends Schema.TaggedError<RedisCommandError>()("RedisCommandError", {
  command: Schema.String,
  message: Schema.String
}) {}

const commandTimeout_ms = 2_000

/**
 * One Redis command over a fresh connection, for commands whose reply is one line (`+OK`, `:3`,
 * `-ERR …`): FLUSHALL, EXISTS, DBSIZE. The server under test has its own client; this one plays the
 * operator (or the failure) that flushes Redis under it. Bounded by a 2 s timeout.
 */
export const redisCommand = (url: string, args: ReadonlyArray<string>) =>
  Effect.callback<string, RedisCommandError>((resume) => {
    const { hostname, port } = new URL(url)
    const command = args.join(" ")
    const socket = connect({ host: hostname, port: Number(port) })
    let reply = ""
    const fail = (message: string) => {
      socket.destroy()
      resume(Effect.fail(new RedisCommandError({ command, message })))
    }
    socket.setTimeout(commandTimeout_ms, () => fail(`no reply within ${commandTimeout_ms} ms`))
    socket.on("error", (error) => fail(error.message))
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString("utf8")
      const end = reply.indexOf("\r\n")
      if (end === -1) return
      socket.end()
      const line = reply.slice(0, end)
      if (line.startsWith("-")) fail(line)
      else resume(Effect.succeed(line.slice(1)))
    })
    socket.on("connect", () => {
      const encoded = args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join("")
      socket.write(`*${args.length}\r\n${encoded}`)
    })
    return Effect.sync(() => socket.destroy())
  })
