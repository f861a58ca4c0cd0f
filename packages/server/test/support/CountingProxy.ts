import { Effect } from "effect"
import { createConnection, createServer, type Server, type Socket } from "node:net"

/**
 * Loopback TCP proxies in front of Postgres and Redis that count what the server sends: the
 * round trips of each protocol, read off the bytes (no mock: the real server talks to the real
 * databases through them). Used to hold the create path to its budget (issue 18).
 *
 * Postgres (frontend/backend protocol 3): after the startup packet every message is a type byte
 * and a length. A round trip ends with `Sync` (extended protocol) or is a `Query` (simple
 * protocol); the statements it carried come from `Parse` (name → text) and `Bind` (name). The
 * backend's `ReadyForQuery` says whether a transaction is still open (`T`) or ended (`I`).
 * Redis (RESP): every command is an array of bulk strings; each counts as one round trip (a
 * pipelined batch would count as several: the count is an upper bound).
 */
export interface PgRoundTrip {
  /** The statements sent in this round trip (texts, whitespace collapsed). */
  readonly statements: ReadonlyArray<string>
  /** The backend's status after it: `I` (no transaction open: one ended) or `T`/`E`. */
  status: string
}

export interface Counters {
  readonly pg: Array<PgRoundTrip>
  readonly redis: Array<string>
}

const sslRequestCode = 80877103
const gssRequestCode = 80877104

/** Per connection: the client → server Postgres stream. */
const pgClientParser = (counters: Counters, pending: Array<PgRoundTrip>) => {
  let buffer = Buffer.alloc(0)
  let startup = true
  const named = new Map<string, string>()
  let current: Array<string> = []
  const cstring = (from: number, payload: Buffer): [string, number] => {
    const end = payload.indexOf(0, from)
    return [payload.subarray(from, end).toString("utf8"), end + 1]
  }
  const finish = () => {
    const roundTrip: PgRoundTrip = { statements: current, status: "?" }
    counters.pg.push(roundTrip)
    pending.push(roundTrip)
    current = []
  }
  return (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk])
    for (;;) {
      if (startup) {
        if (buffer.length < 8) return
        const length = buffer.readInt32BE(0)
        if (buffer.length < length) return
        const code = buffer.readInt32BE(4)
        buffer = buffer.subarray(length)
        if (code !== sslRequestCode && code !== gssRequestCode) startup = false
        continue
      }
      if (buffer.length < 5) return
      const type = String.fromCharCode(buffer[0] ?? 0)
      const length = buffer.readInt32BE(1)
      if (buffer.length < 1 + length) return
      const payload = buffer.subarray(5, 1 + length)
      buffer = buffer.subarray(1 + length)
      if (type === "P") {
        const [name, next] = cstring(0, payload)
        const [text] = cstring(next, payload)
        const statement = text.replace(/\s+/g, " ").trim()
        named.set(name, statement)
        current.push(statement)
      } else if (type === "B") {
        const [, next] = cstring(0, payload)
        const [name] = cstring(next, payload)
        const statement = named.get(name)
        if (statement !== undefined && current.at(-1) !== statement) current.push(statement)
      } else if (type === "Q") {
        current.push(cstring(0, payload)[0].replace(/\s+/g, " ").trim())
        finish()
      } else if (type === "S") {
        finish()
      }
    }
  }
}

/** Per connection: the server → client Postgres stream, for ReadyForQuery's status. */
const pgServerParser = (pending: Array<PgRoundTrip>) => {
  let buffer = Buffer.alloc(0)
  let answeredSsl = false
  return (chunk: Buffer, clientAskedSsl: () => boolean) => {
    buffer = Buffer.concat([buffer, chunk])
    if (!answeredSsl && clientAskedSsl()) {
      buffer = buffer.subarray(1)
      answeredSsl = true
    }
    for (;;) {
      if (buffer.length < 5) return
      const type = String.fromCharCode(buffer[0] ?? 0)
      const length = buffer.readInt32BE(1)
      if (buffer.length < 1 + length) return
      if (type === "Z") {
        const roundTrip = pending.shift()
        if (roundTrip !== undefined) roundTrip.status = String.fromCharCode(buffer[5] ?? 0)
      }
      buffer = buffer.subarray(1 + length)
    }
  }
}

/** Per connection: the client → server Redis stream; one entry per command (its name). */
const redisParser = (counters: Counters) => {
  let text = ""
  return (chunk: Buffer) => {
    text += chunk.toString("latin1")
    for (;;) {
      const command = nextCommand(text)
      if (command === undefined) return
      counters.redis.push(command.name)
      text = text.slice(command.end)
    }
  }
}

/** One RESP array of bulk strings at the start of `text`, or undefined when incomplete. */
const nextCommand = (text: string): { name: string; end: number } | undefined => {
  const header = /^\*(\d+)\r\n/.exec(text)
  if (header === null || header[1] === undefined) return undefined
  let position = header[0].length
  let name = ""
  for (let index = 0; index < Number(header[1]); index++) {
    const bulk = /^\$(\d+)\r\n/.exec(text.slice(position))
    if (bulk === null || bulk[1] === undefined) return undefined
    const start = position + bulk[0].length
    const end = start + Number(bulk[1])
    if (text.length < end + 2) return undefined
    if (index === 0) name = text.slice(start, end).toLowerCase()
    position = end + 2
  }
  return { name, end: position }
}

const listen = (server: Server) =>
  Effect.callback<number, Error>((resume) => {
    server.once("error", (error) => resume(Effect.fail(error)))
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resume(typeof address === "object" && address !== null ? Effect.succeed(address.port) : Effect.fail(new Error("no port")))
    })
  })

/** A proxy to `target` (host:port) on a free loopback port, closed with the scope. */
const proxy = (target: URL, onConnection: (client: Socket, upstream: Socket) => void) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const sockets = new Set<Socket>()
      const server = createServer((client) => {
        const upstream = createConnection({ host: target.hostname, port: Number(target.port) })
        for (const socket of [client, upstream]) {
          sockets.add(socket)
          socket.once("close", () => sockets.delete(socket))
          socket.on("error", () => {
            client.destroy()
            upstream.destroy()
          })
        }
        onConnection(client, upstream)
        client.pipe(upstream)
        upstream.pipe(client)
      })
      const port = yield* listen(server)
      return { server, sockets, port }
    }),
    ({ server, sockets }) => Effect.sync(() => {
      for (const socket of sockets) socket.destroy()
      server.close()
    })
  )

/** Proxies for the Postgres and Redis URLs given; the URLs to hand the server instead, and the counters. */
export const countingProxies = (postgresUrl: string, redisUrl: string) =>
  Effect.gen(function* () {
    const counters: Counters = { pg: [], redis: [] }
    const pgTarget = new URL(postgresUrl)
    const pg = yield* proxy(pgTarget, (client, upstream) => {
      const pending: Array<PgRoundTrip> = []
      let askedSsl = false
      const fromClient = pgClientParser(counters, pending)
      const fromServer = pgServerParser(pending)
      client.on("data", (chunk: Buffer) => {
        if (chunk.length >= 8 && chunk.readInt32BE(4) === sslRequestCode) askedSsl = true
        fromClient(chunk)
      })
      upstream.on("data", (chunk: Buffer) => fromServer(chunk, () => askedSsl))
    })
    const redisTarget = new URL(redisUrl)
    const redis = yield* proxy(redisTarget, (client) => client.on("data", redisParser(counters)))
    const via = (url: URL, port: number) => {
      const copy = new URL(url.toString())
      copy.hostname = "127.0.0.1"
      copy.port = String(port)
      return copy.toString()
    }
    return { counters, postgresUrl: via(pgTarget, pg.port), redisUrl: via(redisTarget, redis.port) }
  })
