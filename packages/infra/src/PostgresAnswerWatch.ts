import { Socket } from "node:net"
import { Duplex } from "node:stream"
import { performance } from "node:perf_hooks"

/**
 * The database answer timeout (`DATABASE_ANSWER_TIMEOUT_MS`): a connection that owes an answer
 * and has received nothing for that long is destroyed.
 *
 * Why: a network partition (or a database host that stops answering without closing its sockets)
 * leaves a pooled connection's statement waiting for an answer that never comes. Nothing else
 * bounds that wait: the driver has a connect timeout but no statement timeout, Postgres's own
 * `statement_timeout` runs on the server that cannot be reached, and TCP gives up only after its
 * retransmissions (~15 minutes on Linux). Found by `pnpm scenario postgres-partitioned`: a create
 * waited past 60 s. Destroying the socket turns the partition into a dropped connection, the case
 * the API already answers 503 `database_unavailable` (retry with the same Idempotency-Key) and the
 * pool replaces (`postgres-connections-dropped`).
 *
 * "Owes an answer" is read off the wire protocol (PostgreSQL docs, "Message Flow"): every `Sync`
 * or simple `Query` the client sends, and the startup packet, is answered by exactly one
 * `ReadyForQuery` ('Z'). The watch frames both directions (a type byte and a length; the untyped
 * startup and cancel packets first) and counts them; while more are owed than arrived, any byte
 * from the server is progress (rows of a long answer, a notice) and restarts the clock. An idle
 * connection, or a LISTEN connection waiting for notifications, owes nothing and is never timed
 * out. A legitimately long statement (a lock wait within `lock_timeout`, a report) must answer
 * within the bound, which is why tools that run long statements (the CLI, the migrator,
 * benchmarks) do not use it.
 *
 * Over TLS (`sslmode` other than `disable`) the bytes after the `SSLRequest` are ciphertext: no
 * message can be framed. The socket then watches the rule the protocol still guarantees at the
 * byte level: every client write (a statement, a `Sync`, a handshake flight) is answered by some
 * bytes from the server. It owes from its first write the server has not answered yet, and any byte
 * from the server pays the debt. That catches a statement sent into a partition (the case that
 * hangs: nothing ever comes back) and a handshake that stalls; it cannot see a partition that falls
 * in the middle of a long answer after its first bytes arrived (TCP's own retransmission bound,
 * then, as before). `watchedAddressOf` says which URLs are watched.
 *
 * Time is `performance.now()` (monotonic: a wall-clock step changes nothing). A socket the driver
 * paused (a row stream whose reader is behind) is not silent on the server's account: its clock
 * restarts until it reads again. The check is one shared timer (unref'd) every `answerWatchTick_ms`. A process that was paused
 * (SIGSTOP) or blocked looks like silence to a timer that fires first when it resumes, while the
 * answer sits unread in the socket: the check therefore (1) restarts every clock when a tick comes
 * late, and (2) destroys in `setImmediate`, after the event loop's I/O phase has delivered what was
 * waiting, and only if still nothing arrived.
 */

export const answerTimeoutBounds = { min: 0, max: 600_000 } as const
/** How often owing sockets are looked at; the timeout fires between `timeout_ms` and that plus one tick. */
export const answerWatchTick_ms = 250
/** A tick later than this (the process was paused or blocked) restarts every clock. */
const lateTick_ms = 4 * answerWatchTick_ms

const PROTOCOL_3 = 196_608
const READY_FOR_QUERY = 0x5a // 'Z'
const SYNC = 0x53 // 'S'
const QUERY = 0x51 // 'Q'

/**
 * A stream of protocol messages, framed: `onMessage(type)` per message (the type byte; for the
 * first, untyped packet of a client, its request code). Bytes of a message body are skipped
 * without being copied.
 */
const framer = (untypedFirst: boolean, onMessage: (type: number) => void) => {
  let untyped = untypedFirst
  const header = Buffer.alloc(8)
  let headerHave = 0
  let bodyLeft = 0
  return (chunk: Buffer) => {
    let at = 0
    while (at < chunk.length) {
      if (bodyLeft > 0) {
        const take = Math.min(bodyLeft, chunk.length - at)
        bodyLeft -= take
        at += take
        continue
      }
      const headerLength = untyped ? 8 : 5
      const take = Math.min(headerLength - headerHave, chunk.length - at)
      chunk.copy(header, headerHave, at, at + take)
      headerHave += take
      at += take
      if (headerHave < headerLength) return
      headerHave = 0
      if (untyped) {
        untyped = false
        bodyLeft = Math.max(0, header.readInt32BE(0) - 8)
        onMessage(header.readInt32BE(4))
      } else {
        bodyLeft = Math.max(0, header.readInt32BE(1) - 4)
        onMessage(header[0] ?? 0)
      }
    }
  }
}

/** A plain TCP connection to Postgres under the answer timeout. */
class WatchedSocket extends Socket {
  owed = 0
  /** When the current wait began, or the last byte arrived during it; undefined while nothing is owed. */
  quietSince_ms: number | undefined = undefined
  readonly timeout_ms: number
  // The startup packet, a Sync or a Query is owed a ReadyForQuery; a CancelRequest (a socket of
  // its own, closed by the server) and every other message are not.
  private readonly sent = framer(true, (type) => {
    if (type === PROTOCOL_3 || type === SYNC || type === QUERY) this.owe()
  })
  private readonly received = framer(false, (type) => {
    if (type === READY_FOR_QUERY && this.owed > 0) this.owed -= 1
  })

  constructor(timeout_ms: number) {
    super()
    this.timeout_ms = timeout_ms
    this.on("data", (chunk: Buffer) => {
      this.received(chunk)
      this.quietSince_ms = this.owed > 0 ? performance.now() : undefined
    })
  }

  private owe() {
    if (this.owed === 0) this.quietSince_ms = performance.now()
    this.owed += 1
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.sent(chunk)
    super._write(chunk, encoding, callback)
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: (error?: Error | null) => void): void {
    for (const { chunk } of chunks) this.sent(chunk)
    super._writev?.(chunks, callback)
  }
}

/**
 * A TLS connection to Postgres under the answer timeout: a Duplex over the TCP socket, which the
 * driver's `tls.connect({ socket })` reads and writes through (a `net.Socket` would be unwrapped to
 * its native handle by Node's TLS, and its JavaScript reads and writes bypassed). Ciphertext: a
 * write is owed some bytes back; any byte from the server pays.
 */
class OpaqueWatchedStream extends Duplex {
  quietSince_ms: number | undefined = undefined
  readonly timeout_ms: number
  private readonly tcp: Socket

  constructor(timeout_ms: number, tcp: Socket) {
    super()
    this.timeout_ms = timeout_ms
    this.tcp = tcp
    tcp.on("data", (chunk: Buffer) => {
      this.quietSince_ms = undefined
      if (!this.push(chunk)) tcp.pause()
    })
    tcp.on("end", () => this.push(null))
    tcp.on("error", (error) => this.destroy(error))
    tcp.on("close", () => this.destroy())
  }

  override _read(): void {
    this.tcp.resume()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.quietSince_ms ??= performance.now()
    this.tcp.write(chunk, callback)
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.tcp.end(callback)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.tcp.destroy()
    callback(error)
  }
}

/** What the timer looks at: either kind of watched connection. */
type Watched = WatchedSocket | OpaqueWatchedStream

const watched = new Set<Watched>()
let timer: ReturnType<typeof setInterval> | undefined
let lastTick_ms = 0
let destroyed = 0

/** How many connections this process destroyed for not answering in time. */
export const answerTimeoutsSoFar = (): number => destroyed

const destroyIfStillQuiet = (socket: Watched, since_ms: number) => () => {
  if (socket.destroyed || socket.quietSince_ms !== since_ms) return
  destroyed += 1
  socket.destroy(new Error(`Postgres did not answer for ${socket.timeout_ms} ms (DATABASE_ANSWER_TIMEOUT_MS): connection closed`))
}

const tick = () => {
  const now_ms = performance.now()
  const late = now_ms - lastTick_ms > lateTick_ms
  lastTick_ms = now_ms
  for (const socket of watched) {
    if (socket.destroyed) {
      watched.delete(socket)
      continue
    }
    const since_ms = socket.quietSince_ms
    if (since_ms === undefined) continue
    // Paused by the driver (a stream whose reader is behind: it stops reading at 512 buffered
    // rows): the silence is ours, not the server's.
    if (late || socket.isPaused()) socket.quietSince_ms = now_ms
    else if (now_ms - since_ms >= socket.timeout_ms) setImmediate(destroyIfStillQuiet(socket, since_ms))
  }
  if (watched.size === 0 && timer !== undefined) {
    clearInterval(timer)
    timer = undefined
  }
}

const watch = <S extends Watched>(socket: S): S => {
  watched.add(socket)
  socket.once("close", () => watched.delete(socket))
  if (timer === undefined) {
    lastTick_ms = performance.now()
    timer = setInterval(tick, answerWatchTick_ms)
    timer.unref()
  }
  return socket
}

/** The `sslmode` values @effect/sql-pg accepts (PgConnection.js); any other fails its connect. */
const driverSslModes: ReadonlySet<string> = new Set(["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])

/** Where a `postgres://` URL points: a TCP host and port, or a Unix socket (`?host=/dir`). */
export type PostgresAddress = { readonly host: string; readonly port: number } | { readonly path: string }

/**
 * The address of `url` as the driver reads it (`parseUrl` and `resolveConfig` in @effect/sql-pg
 * 4.0.5's PgConnection.js): the authority's host (percent-decoded; `[…]` an IPv6 literal) and
 * port, then the query parameters in order, the last of each winning (`host`, `port`, `sslmode`);
 * `localhost` and 5432 by default; a host that starts with `/` is a Unix socket directory. It is
 * `undefined`, and the driver connects on its own, unwatched (`PostgresLive` logs that the bound is
 * off), for several hosts, or a URL the driver will refuse itself (a bad escape or port, an unknown
 * `sslmode`), whose error is then the driver's. A TLS `sslmode` is watched, opaquely (above): the
 * driver negotiates TLS over the watched socket.
 */
export const watchedAddressOf = (url: string): WatchedAddress | undefined => {
  if (!URL.canParse(url)) return undefined
  const parsed = new URL(url)
  let host = "localhost"
  let port = 5432
  let sslmode = "disable"
  try {
    if (parsed.hostname !== "") {
      host = parsed.hostname.startsWith("[") && parsed.hostname.endsWith("]") ? parsed.hostname.slice(1, -1) : decodeURIComponent(parsed.hostname)
    }
  } catch {
    return undefined
  }
  if (parsed.port !== "") port = Number(parsed.port)
  for (const [key, value] of parsed.searchParams) {
    if (key === "host") host = value
    else if (key === "port") port = Number(value)
    else if (key === "sslmode") sslmode = value
  }
  if (!driverSslModes.has(sslmode) || !Number.isInteger(port) || port < 1 || port > 65_535 || host.includes(",")) return undefined
  return {
    address: host.startsWith("/") ? { path: `${host}/.s.PGSQL.${port}` } : { host, port },
    // `prefer` and `allow` may end plain (the server says N): watched opaquely all the same.
    tls: sslmode !== "disable"
  }
}

/** A URL's address, and whether the driver asks for TLS on it (then the watch is opaque). */
export interface WatchedAddress {
  readonly address: PostgresAddress
  readonly tls: boolean
}

const connected = (socket: Socket, address: PostgresAddress): Socket =>
  "path" in address ? socket.connect({ path: address.path }) : socket.setNoDelay(true).connect({ host: address.host, port: address.port })

/**
 * A socket factory for the driver's `stream` option: a connection under the answer timeout. Over
 * TLS the driver sends its SSLRequest and negotiates TLS over the stream this returns.
 */
export const watchedSocketFactory = (watchedAddress: WatchedAddress, timeout_ms: number) => (): Duplex =>
  watchedAddress.tls
    ? watch(new OpaqueWatchedStream(timeout_ms, connected(new Socket(), watchedAddress.address)))
    : connected(watch(new WatchedSocket(timeout_ms)), watchedAddress.address)
