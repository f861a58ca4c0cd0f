import { HeadersTooLarge, InvalidRequest, RequestTimeout, securityHeaders } from "@pay/api"
import { boundedInt, configRefused } from "@pay/infra"
import { IdempotencyKeyInvalid } from "@pay/idempotency"
import { Config, Effect } from "effect"
import type { Server } from "node:http"
import type { Duplex } from "node:stream"
import type { ApiError } from "./ApiErrors.ts"
import { closeStalledConnection, OneAnswerAtATimeServer, responseOn } from "./Pipelining.ts"
import { problemResponse } from "./Problem.ts"

/**
 * The socket's limits, set explicitly instead of left to Node's defaults (TIGER_STYLE: a limit on
 * everything, passed at the call site). Node enforces them before any request reaches Effect:
 *
 * - `headersTimeout_ms`: the headers must arrive within this (a slowloris that trickles header
 *   bytes is cut off here);
 * - `requestTimeout_ms`: the whole request, body included, within this;
 * - `keepAliveTimeout_ms`: an idle keep-alive connection is closed after this;
 * - `headerSize_bytes_max`: headers over this are refused with 431;
 * - `connections_max`: connections over this are refused by the kernel-level accept (closed at once);
 * - `requestsPerSocket_max`: a keep-alive connection serves at most this many requests;
 * - `pipelinedRequests_max`: requests sent ahead of their answers wait, at most this many per
 *   connection (one more closes it); a connection is answered one request at a time (Pipelining.ts);
 * - `writeStall_ms`: a connection whose client stops reading its answer for this long is closed.
 */
export interface SocketLimits {
  readonly headersTimeout_ms: number
  readonly requestTimeout_ms: number
  readonly keepAliveTimeout_ms: number
  readonly headerSize_bytes_max: number
  readonly connections_max: number
  readonly requestsPerSocket_max: number
  readonly pipelinedRequests_max: number
  readonly writeStall_ms: number
}

export const socketLimitBounds = {
  headersTimeout_ms: { min: 1_000, max: 60_000 },
  requestTimeout_ms: { min: 1_000, max: 120_000 },
  keepAliveTimeout_ms: { min: 1_000, max: 120_000 },
  headerSize_bytes_max: { min: 4 * 1024, max: 64 * 1024 },
  connections_max: { min: 1, max: 100_000 },
  requestsPerSocket_max: { min: 1, max: 1_000_000 },
  pipelinedRequests_max: { min: 1, max: 1_000 },
  writeStall_ms: { min: 1_000, max: 600_000 }
} as const

export const socketLimitsDefault: SocketLimits = {
  headersTimeout_ms: 10_000,
  requestTimeout_ms: 30_000,
  keepAliveTimeout_ms: 5_000,
  headerSize_bytes_max: 16 * 1024,
  connections_max: 10_000,
  requestsPerSocket_max: 10_000,
  pipelinedRequests_max: 16,
  writeStall_ms: 30_000
}

/** `HTTP_HEADERS_TIMEOUT_MS`, `HTTP_REQUEST_TIMEOUT_MS`, … each bounded (README's settings table). */
export const SocketLimitsConfig: Config.Config<SocketLimits> = Config.all({
  headersTimeout_ms: boundedInt("HTTP_HEADERS_TIMEOUT_MS", socketLimitBounds.headersTimeout_ms, socketLimitsDefault.headersTimeout_ms),
  requestTimeout_ms: boundedInt("HTTP_REQUEST_TIMEOUT_MS", socketLimitBounds.requestTimeout_ms, socketLimitsDefault.requestTimeout_ms),
  keepAliveTimeout_ms: boundedInt(
    "HTTP_KEEP_ALIVE_TIMEOUT_MS",
    socketLimitBounds.keepAliveTimeout_ms,
    socketLimitsDefault.keepAliveTimeout_ms
  ),
  headerSize_bytes_max: boundedInt("HTTP_HEADER_BYTES_MAX", socketLimitBounds.headerSize_bytes_max, socketLimitsDefault.headerSize_bytes_max),
  connections_max: boundedInt("HTTP_CONNECTIONS_MAX", socketLimitBounds.connections_max, socketLimitsDefault.connections_max),
  requestsPerSocket_max: boundedInt(
    "HTTP_REQUESTS_PER_SOCKET_MAX",
    socketLimitBounds.requestsPerSocket_max,
    socketLimitsDefault.requestsPerSocket_max
  ),
  pipelinedRequests_max: boundedInt(
    "HTTP_PIPELINED_REQUESTS_MAX",
    socketLimitBounds.pipelinedRequests_max,
    socketLimitsDefault.pipelinedRequests_max
  ),
  writeStall_ms: boundedInt("HTTP_WRITE_STALL_TIMEOUT_MS", socketLimitBounds.writeStall_ms, socketLimitsDefault.writeStall_ms)
}).pipe(Config.mapEffect((limits) =>
  // Node refuses a server whose headers timeout exceeds its request timeout (ERR_OUT_OF_RANGE,
  // when it starts listening): refused here, with the two variables named, like any value out of bounds.
  limits.headersTimeout_ms > limits.requestTimeout_ms
    ? configRefused(
      `HTTP_HEADERS_TIMEOUT_MS (${limits.headersTimeout_ms}) exceeds HTTP_REQUEST_TIMEOUT_MS (${limits.requestTimeout_ms}): the headers are part of the request`
    )
    : Effect.succeed(limits)
))

/** A Node HTTP server with the given limits whose parser-level refusals are problem documents. */
export const createLimitedServer = (limits: SocketLimits) => (): Server => {
  const server = new OneAnswerAtATimeServer({
    maxHeaderSize: limits.headerSize_bytes_max,
    headersTimeout: limits.headersTimeout_ms,
    requestTimeout: limits.requestTimeout_ms,
    keepAliveTimeout: limits.keepAliveTimeout_ms,
    // How often Node checks the two timeouts above: a fifth of the shorter one, at least 250 ms.
    connectionsCheckingInterval: Math.max(250, Math.floor(Math.min(limits.headersTimeout_ms, limits.requestTimeout_ms) / 5)),
    // Node answers an HTTP/1.1 request without Host with a bare 400 (no body, outside any hook):
    // the edge refuses it instead, with the documented problem naming Host (Edge.ts).
    requireHostHeader: false
  }, limits.pipelinedRequests_max)
  // Node's socket inactivity timer, armed on every connection: see closeStalledConnection.
  server.timeout = limits.writeStall_ms
  server.on("timeout", closeStalledConnection)
  server.maxConnections = limits.connections_max
  server.maxRequestsPerSocket = limits.requestsPerSocket_max
  server.on("clientError", (error: Error, socket: Duplex) => answerClientError(error, socket, limits))
  // Node answers these two itself, outside any hook: an `Expect` other than 100-continue with a
  // bare 417, and CONNECT (this is not a proxy) by closing the connection without an answer. Both
  // are refusals of the request as sent: the documented problem, like every other answer.
  server.on("checkExpectation", (_request: unknown, response: { readonly socket: Duplex | null }) => {
    if (response.socket !== null) {
      writeProblemAndClose(response.socket, new InvalidRequest({ detail: "Expect: only 100-continue is supported", field: "Expect" }))
    }
  })
  server.on("connect", (_request: unknown, socket: Duplex) =>
    writeProblemAndClose(socket, new InvalidRequest({ detail: "CONNECT is not supported: this server is not a proxy" })))
  return server
}

interface ParserError extends Error {
  readonly code?: unknown
  /** llhttp's words for the refusal (`Content-Length can't be present with Transfer-Encoding`). */
  readonly reason?: unknown
  readonly rawPacket?: unknown
  readonly bytesParsed?: unknown
}

/**
 * A header's name as `field` names it: the documented spelling, each word capitalized
 * (`Idempotency-Key`, `Content-Length`, `X-Request-Id`), whoever refused it. The parser's refusals
 * named it in lower case and the edge's capitalized (outside contract fuzz: `authorization` for a
 * bad character, `Authorization` for a second copy).
 */
export const headerFieldName = (name: string): string =>
  name.toLowerCase().split("-").map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join("-")

/** The header whose line the parser stopped in (lower case), when the error says where. */
export const offendingHeader = (error: ParserError): string | undefined => {
  if (!Buffer.isBuffer(error.rawPacket) || typeof error.bytesParsed !== "number") return undefined
  const raw = error.rawPacket
  const lineStart = raw.subarray(0, error.bytesParsed).lastIndexOf(0x0a) + 1
  if (lineStart === 0) return undefined
  const colon = raw.indexOf(0x3a, lineStart)
  const lineEnd = raw.indexOf(0x0a, lineStart)
  if (colon === -1 || (lineEnd !== -1 && colon > lineEnd)) return undefined
  const name = raw.subarray(lineStart, colon).toString("latin1").trim().toLowerCase()
  return /^[!#$%&'*+.^_`|~0-9a-z-]{1,64}$/.test(name) ? name : undefined
}

/**
 * Which of Node's two timers fired: both report `ERR_HTTP_REQUEST_TIMEOUT`. Node cuts a request
 * whose headers are incomplete at `headersTimeout` (it refuses `headersTimeout > requestTimeout`,
 * so that one is always first), and one whose headers arrived (its parser holds the incoming
 * message, body incomplete) at `requestTimeout`.
 */
export type TimerFired = "headers" | "request"

/** The parser's incoming message, once its headers were parsed and while its body is incomplete. */
export const timerFiredOn = (socket: Duplex): TimerFired => {
  const parser: unknown = "parser" in socket ? socket.parser : undefined
  const incoming: unknown = typeof parser === "object" && parser !== null && "incoming" in parser ? parser.incoming : undefined
  const bodyPending = typeof incoming === "object" && incoming !== null && "complete" in incoming && incoming.complete === false
  return bodyPending ? "request" : "headers"
}

/**
 * Which header limit fired: both are one code. The whole connection has read less than the size
 * limit: the lines. Else it cannot tell (the parser's `bytesParsed` counts from the failing chunk's
 * start, which may hold earlier pipelined requests, or from a later chunk of the same headers):
 * both (outside re-tests: a 20 KB header in 4 KB writes was told "lines"; 1,100 short lines
 * pipelined after three requests were told "bytes").
 */
const overflowOf = (limits: SocketLimits, connectionBytesRead: number): "lines" | "bytes_or_lines" =>
  connectionBytesRead < limits.headerSize_bytes_max ? "lines" : "bytes_or_lines"

/** What a refusal by Node's HTTP parser (or its timers) says, as a catalog error. */
export const clientErrorProblem = (error: ParserError, limits: SocketLimits, fired: TimerFired, connectionBytesRead = Number.POSITIVE_INFINITY): ApiError => {
  switch (error.code) {
    case "HPE_HEADER_OVERFLOW":
      return new HeadersTooLarge({ limit_bytes: limits.headerSize_bytes_max, over: overflowOf(limits, connectionBytesRead) })
    case "ERR_HTTP_REQUEST_TIMEOUT":
      // The limit that actually fired, so the detail says the time the client really had.
      return new RequestTimeout({ limit_ms: fired === "request" ? limits.requestTimeout_ms : limits.headersTimeout_ms })
    // The message's framing (RFC 9112 §6): said as the body reader says it, naming the header, not
    // as "a character HTTP does not allow" (outside integrator review).
    case "HPE_INVALID_TRANSFER_ENCODING":
    case "HPE_UNEXPECTED_CONTENT_LENGTH":
    case "HPE_INVALID_CONTENT_LENGTH":
      return framingProblem(error.code, typeof error.reason === "string" ? error.reason : "")
    default: {
      const header = offendingHeader(error)
      if (header === "idempotency-key") {
        return new IdempotencyKeyInvalid({ reason: "control_character", detail: "the header has a character HTTP does not allow" })
      }
      return header === undefined
        ? new InvalidRequest({ detail: "the request is not valid HTTP/1.1" })
        : new InvalidRequest({ detail: `header ${headerFieldName(header)}: a character HTTP does not allow`, field: headerFieldName(header) })
    }
  }
}

/**
 * llhttp's framing refusals, in words (its `reason`, stable within Node's major version, tells the
 * cases one code covers apart): both headers, in either order; a Content-Length twice, too large or
 * not digits; a Transfer-Encoding other than one `chunked` (a coding, or `chunked` twice).
 */
const framingProblem = (code: string, reason: string): ApiError => {
  if (reason.includes("can't be present with")) {
    return new InvalidRequest({ detail: "Content-Length: not allowed with Transfer-Encoding (RFC 9112 §6.3)", field: "Content-Length" })
  }
  if (code === "HPE_UNEXPECTED_CONTENT_LENGTH") return new InvalidRequest({ detail: "header Content-Length is given more than once", field: "Content-Length" })
  if (code === "HPE_INVALID_CONTENT_LENGTH") {
    return new InvalidRequest({ detail: reason.includes("overflow") ? "Content-Length: too large" : "Content-Length: must be decimal digits", field: "Content-Length" })
  }
  return new InvalidRequest({ detail: "Transfer-Encoding: only chunked is supported, given once", field: "Transfer-Encoding" })
}

const reasonPhrases: Readonly<Record<number, string>> = { 400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large" }

/** Node keeps the response being written on the socket; once its head is sent, nothing more can be said. */
const responseStarted = (socket: Duplex): boolean => {
  const message = responseOn(socket)
  return message !== undefined && "headersSent" in message && message.headersSent === true
}

/**
 * Node's default answers these with a bare status line and no body; we answer the same status
 * with the problem document, then close the connection (the parser's state is unusable). A socket
 * whose response has started, or that is gone, is only destroyed.
 */
const answerClientError = (error: ParserError, socket: Duplex, limits: SocketLimits) => {
  if (error.code === "ECONNRESET" || !socket.writable || responseStarted(socket)) {
    socket.destroy()
    return
  }
  const bytesRead = "bytesRead" in socket && typeof socket.bytesRead === "number" ? socket.bytesRead : Number.POSITIVE_INFINITY
  writeProblemAndClose(socket, clientErrorProblem(error, limits, timerFiredOn(socket), bytesRead))
}

/**
 * A refusal written straight to the socket, then the connection closed. The request's own
 * X-Request-Id is not read (the parser gave up, or the request never reached a route): a new id,
 * under both names like every other answer (docs/api.md). Written by hand, outside Effect's server
 * and Node's response: the Date Node adds to its responses and the security headers Edge.ts adds
 * to every other answer are added here, from the same definition.
 */
const writeProblemAndClose = (socket: Duplex, error: ApiError) => {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const problem = problemResponse(error)
  const requestId = crypto.randomUUID()
  const head = [
    `HTTP/1.1 ${problem.status} ${reasonPhrases[problem.status] ?? "Bad Request"}`,
    `Date: ${new Date().toUTCString()}`,
    `Content-Type: ${problem.contentType}`,
    `Content-Length: ${Buffer.byteLength(problem.body, "utf8")}`,
    `Request-Id: ${requestId}`,
    `X-Request-Id: ${requestId}`,
    ...Object.entries(securityHeaders).map(([name, value]) => `${name}: ${value}`),
    "Connection: close"
  ].join("\r\n")
  socket.end(`${head}\r\n\r\n${problem.body}`)
}
