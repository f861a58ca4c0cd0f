import { Clock, Effect } from "effect"
import { lookup as dnsLookup, type LookupAddress } from "node:dns"
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type RequestOptions } from "node:http"
import { Agent as HttpsAgent, request as httpsRequest } from "node:https"
import type { LookupFunction } from "node:net"
import type { Duplex } from "node:stream"
import { RESPONSE_BYTES_READ_MAX, RESPONSE_EXCERPT_BYTES_MAX } from "./Model.ts"
import { checkTargetUrl, isAddressAllowed } from "./TargetUrl.ts"

/** What one attempt got: an HTTP answer (any status), or none (network error, timeout, refused address). */
export type SendResult =
  | {
    readonly _tag: "Answered"
    readonly status: number
    /** `Retry-After` in ms (delta-seconds or an HTTP date), when the receiver sent one. */
    readonly retryAfter_ms: number | undefined
    /** At most 1 KiB of the body, for the attempt's record. */
    readonly excerpt: string
    readonly latency_ms: number
  }
  | { readonly _tag: "Unanswered"; readonly error: string; readonly latency_ms: number }

export interface SendRequest {
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  readonly timeout_ms: number
  readonly allowLoopbackHttp: boolean
}

/**
 * Connections are kept alive between attempts to the same receiver (a TLS handshake per webhook
 * would dominate the cost); a new connection is made (and its address checked) whenever the pool
 * has none. Bounded per receiver, and idle sockets are closed after 5 s.
 */
const SOCKETS_PER_HOST_MAX = 32
const agentOptions = { keepAlive: true, keepAliveMsecs: 1_000, maxSockets: SOCKETS_PER_HOST_MAX, maxFreeSockets: SOCKETS_PER_HOST_MAX, timeout: 5_000 }
const httpAgent = new HttpAgent(agentOptions)
const httpsAgent = new HttpsAgent(agentOptions)
const testHttpAgent = new HttpAgent(agentOptions)
const testHttpsAgent = new HttpsAgent(agentOptions)

/** `Retry-After`: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export const parseRetryAfter_ms = (value: string | undefined, now_ms: number): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  // Delta-seconds of any length (RFC 9110 §10.2.3); past 9 digits it is longer than any cap, which
  // the caller applies (a longer one fell through to a date, NaN, and was ignored: retried at once).
  if (/^\d+$/.test(trimmed)) {
    const digits = trimmed.replace(/^0+(?=\d)/, "")
    return digits.length > 9 ? Number.MAX_SAFE_INTEGER : Number(digits) * 1_000
  }
  const date_ms = Date.parse(trimmed)
  return Number.isNaN(date_ms) ? undefined : Math.max(0, date_ms - now_ms)
}

/**
 * The socket's DNS lookup, guarded: every address a host name resolves to is checked with the
 * registration rule before the connection is made (a name that resolves to 10.0.0.1 or to the
 * metadata address is refused here, even if it resolved elsewhere when it was registered).
 */
const guardedLookup = (allowLoopbackHttp: boolean): LookupFunction => (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses: ReadonlyArray<LookupAddress>) => {
    // The error becomes the attempt's `error`, which the merchant reads through the API: one
    // answer whether the name does not resolve or resolves inside, never which address, so that
    // registering names cannot map ours (which internal names exist, and where they point).
    const notPublic = () => callback(new Error(`refused: ${hostname} does not resolve to a public address`), "", 0)
    if (error !== null) return notPublic()
    const refused = addresses.find((entry) => !isAddressAllowed(entry.address, allowLoopbackHttp))
    const first = addresses[0]
    if (first === undefined || refused !== undefined) return notPublic()
    if (options.all === true) return callback(null, [...addresses])
    return callback(null, first.address, first.family)
  })
}

/**
 * What is kept of an answer: valid UTF-8 text of at most RESPONSE_EXCERPT_BYTES_MAX bytes without
 * NUL (a Postgres text value cannot hold one). Invalid bytes become U+FFFD, which is 3 bytes: the
 * text is cut again by bytes after decoding, and a character cut in two is dropped.
 */
export const excerptOf = (raw: Buffer): string => {
  const decoded = raw.subarray(0, RESPONSE_EXCERPT_BYTES_MAX).toString("utf8").replaceAll("\u0000", "")
  const encoded = Buffer.from(decoded, "utf8")
  if (encoded.length <= RESPONSE_EXCERPT_BYTES_MAX) return decoded
  return encoded.subarray(0, RESPONSE_EXCERPT_BYTES_MAX).toString("utf8").replace(/\uFFFD$/, "")
}

/** Reads at most RESPONSE_BYTES_READ_MAX bytes of the answer, then stops reading. */
const readBounded = (response: IncomingMessage, done: (excerpt: string) => void): (() => string) => {
  const chunks: Array<Buffer> = []
  let read_bytes = 0
  let finished = false
  const soFar = () => excerptOf(Buffer.concat(chunks))
  const finish = () => {
    if (finished) return
    finished = true
    done(soFar())
  }
  response.on("data", (chunk: Buffer) => {
    const room_bytes = RESPONSE_BYTES_READ_MAX - read_bytes
    read_bytes += chunk.length
    chunks.push(chunk.length <= room_bytes ? chunk : chunk.subarray(0, room_bytes))
    if (read_bytes > RESPONSE_BYTES_READ_MAX) {
      // Enough read: the rest is not wanted (the connection is dropped, not drained).
      response.destroy()
      finish()
    }
  })
  response.on("end", finish)
  response.on("error", finish)
  response.on("close", finish)
  return soFar
}

/**
 * One POST, bounded: `timeout_ms` for the whole exchange (connect, send, answer), a bounded read
 * of the answer, no redirects followed (a 3xx is a failed attempt), the target checked at
 * connect time. Never fails: every outcome is a `SendResult`. Interrupting it aborts the request.
 */
export const send = (request: SendRequest): Effect.Effect<SendResult> =>
  // The wall clock a receiver's `Retry-After: <HTTP-date>` is read against is Effect's Clock: the
  // database's in the server (infra DatabaseClock.ts). An outside clock review's sender 10 minutes
  // behind waited 10 min 5 s for a date 5 s ahead.
  Effect.flatMap(Clock.currentTimeMillis, (startedWall_ms) => Effect.callback<SendResult>((resume) => {
    const started_ms = performance.now()
    const elapsed = () => Math.round(performance.now() - started_ms)
    let settled = false
    const settle = (result: SendResult) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resume(Effect.succeed(result))
    }
    const verdict = checkTargetUrl(request.url, request.allowLoopbackHttp)
    if (verdict._tag === "Refused") {
      settle({ _tag: "Unanswered", error: `refused target: ${verdict.reason}`, latency_ms: 0 })
      return Effect.void
    }
    const options: RequestOptions = {
      method: "POST",
      headers: { ...request.headers, "content-length": String(Buffer.byteLength(request.body, "utf8")), "user-agent": "payments-platform-webhooks/1" },
      lookup: guardedLookup(request.allowLoopbackHttp)
    }
    let responded = false
    // The status and headers arrived, the body not finished within the bound (a receiver that
    // trickles it): the status is the answer, the body cut where it was. A 2xx counted as "no
    // answer" was sent again to a merchant whose logs said 200 (outside merchant's engineer).
    let statusLine: { readonly status: number; readonly retryAfter_ms: number | undefined; readonly soFar: () => string } | undefined
    const https = verdict.url.protocol === "https:"
    // One pool per mode: a socket opened under the loopback-allowing rule is never reused under the production rule.
    const agent = request.allowLoopbackHttp ? undefined : https ? httpsAgent : httpAgent
    const outgoing = (https ? httpsRequest : httpRequest)(verdict.url, { ...options, agent: agent ?? (https ? testHttpsAgent : testHttpAgent) }, (response) => {
      responded = true
      const status = response.statusCode ?? 0
      if (status < 100 || status > 599) {
        response.destroy()
        return settle({ _tag: "Unanswered", error: `invalid HTTP status ${status}`, latency_ms: elapsed() })
      }
      const retryAfter_ms = parseRetryAfter_ms(headerValue(response.headers["retry-after"]), startedWall_ms + elapsed())
      const soFar = readBounded(response, (excerpt) => settle({ _tag: "Answered", status, retryAfter_ms, excerpt, latency_ms: elapsed() }))
      statusLine = { status, retryAfter_ms, soFar }
    })
    // The bound holds whatever the request's events do: the attempt ends here even when destroying
    // the request emits nothing (a socket Node already let go of, as after a 101).
    const timer = setTimeout(() => {
      const error = `no answer within ${request.timeout_ms} ms`
      const answered = statusLine
      outgoing.destroy(new Error(error))
      if (answered !== undefined) {
        return settle({ _tag: "Answered", status: answered.status, retryAfter_ms: answered.retryAfter_ms, excerpt: answered.soFar(), latency_ms: elapsed() })
      }
      settle({ _tag: "Unanswered", error, latency_ms: elapsed() })
    }, request.timeout_ms)
    outgoing.on("error", (error) => settle({ _tag: "Unanswered", error: error.message.slice(0, 500), latency_ms: elapsed() }))
    // A 101 Switching Protocols (or any upgrade) is not an answer to a webhook: the socket is
    // dropped and the attempt failed with that status. Without this listener Node destroyed the
    // socket and emitted neither a response nor an error, and the attempt never ended: its slot
    // of the sender was held for good and re-taken by every lease after it (outside attack review).
    outgoing.on("upgrade", (response: IncomingMessage, socket: Duplex) => {
      responded = true
      socket.destroy()
      settle({ _tag: "Answered", status: response.statusCode ?? 101, retryAfter_ms: undefined, excerpt: "", latency_ms: elapsed() })
    })
    // A connection closed before any answer, however it happened, ends the attempt too.
    outgoing.on("close", () => {
      if (!responded) settle({ _tag: "Unanswered", error: "the connection closed without an answer", latency_ms: elapsed() })
    })
    outgoing.end(request.body, "utf8")
    return Effect.sync(() => {
      clearTimeout(timer)
      outgoing.destroy()
    })
  }))

const headerValue = (value: string | ReadonlyArray<string> | undefined): string | undefined =>
  typeof value === "string" ? value : value?.[0]
