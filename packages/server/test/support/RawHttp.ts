import { Effect, Schema } from "effect"
import { connect } from "node:net"

export class RawHttpError extends Schema.TaggedError<RawHttpError>()("RawHttpError", { message: Schema.String }) {}

export interface RawAnswer {
  /** 0 when the server closed without a status line. */
  readonly status: number
  readonly headers: ReadonlyMap<string, string>
  readonly body: string
  /** The server closed the connection (or it was still open at `wait_ms`: false). */
  readonly closed: boolean
}

const parse = (raw: string, closed: boolean): RawAnswer => {
  const headEnd = raw.indexOf("\r\n\r\n")
  const head = headEnd === -1 ? raw : raw.slice(0, headEnd)
  const [statusLine = "", ...lines] = head.split("\r\n")
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? "0")
  const headers = new Map(lines.flatMap((line) => {
    const colon = line.indexOf(":")
    return colon === -1 ? [] : [[line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const]
  }))
  return { status, headers, body: headEnd === -1 ? "" : raw.slice(headEnd + 4), closed }
}

/** A whole response with a Content-Length has arrived (a keep-alive connection stays open after it). */
const complete = (raw: string): boolean => {
  const answer = parse(raw, false)
  const length = Number(answer.headers.get("content-length") ?? "NaN")
  return answer.status > 0 && Number.isInteger(length) && Buffer.byteLength(answer.body, "utf8") >= length
}

/**
 * Bytes written as they are on a fresh TCP connection (what fetch refuses to send: control
 * characters in headers, duplicated headers, a request that never finishes), the first answer read
 * back. `chunks` are written `interval_ms` apart (a slow client); the answer is whatever arrived
 * when the server closed the connection, or at `wait_ms` (bounded either way).
 */
export const rawRequest = (
  port: number,
  chunks: ReadonlyArray<string | Uint8Array>,
  options: { readonly interval_ms?: number; readonly wait_ms?: number } = {}
) =>
  Effect.callback<RawAnswer, RawHttpError>((resume) => {
    const socket = connect({ host: "127.0.0.1", port })
    const received: Array<Buffer> = []
    let done = false
    const finish = (closed: boolean) => {
      if (done) return
      done = true
      clearTimeout(deadline)
      for (const timer of timers) clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed(parse(Buffer.concat(received).toString("utf8"), closed)))
    }
    const deadline = setTimeout(() => finish(false), options.wait_ms ?? 5_000)
    const timers: Array<ReturnType<typeof setTimeout>> = []
    socket.on("data", (chunk: Buffer) => {
      received.push(chunk)
      if (complete(Buffer.concat(received).toString("utf8"))) finish(false)
    })
    socket.on("close", () => finish(true))
    socket.on("error", (error) => {
      if (received.length > 0) return finish(true)
      if (done) return
      done = true
      clearTimeout(deadline)
      resume(Effect.fail(new RawHttpError({ message: error.message })))
    })
    socket.on("connect", () => {
      chunks.forEach((chunk, index) => {
        timers.push(setTimeout(() => {
          if (!socket.destroyed) socket.write(chunk)
        }, index * (options.interval_ms ?? 0)))
      })
    })
    return Effect.sync(() => finish(false))
  })
