import { IncomingMessage, Server, ServerResponse, type ServerOptions } from "node:http"
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"

/**
 * A Node HTTP server that serves one request at a time per connection.
 *
 * HTTP/1.1 lets a client send its next requests before reading the answers (pipelining). Node
 * parses every request in a chunk and hands each to the handler at once; the answers must still
 * go out in order, so Node keeps each one in memory until those before it are sent. A client that
 * pipelines requests for a large answer and never reads made the server hold them all: 100
 * connections each sending 20 `GET /docs` (3.5 MB each) took the process from 298 MB to 1.34 GB
 * and other requests waited 11 s (docs/security.md).
 *
 * Here a request that arrives while an earlier answer on its connection is still being written
 * reaches the handler only when Node hands it the connection, that is once the answer before it
 * has been handed to the operating system (Node's `socket` event on the response). So a connection
 * holds at most one answer in memory, and its waiting requests cost only their parsed headers; a
 * connection that closes first never runs them. At most `pipelinedRequests_max` requests wait per
 * connection: one more and the connection is closed (a client that pipelines that deep is not
 * reading its answers). A request with no answer ahead of it (every client that does not
 * pipeline) goes to the handler at once, with no bookkeeping.
 */
export class OneAnswerAtATimeServer extends Server {
  readonly #waiting = new WeakMap<Socket, number>()
  readonly #pipelinedRequests_max: number

  constructor(options: ServerOptions, pipelinedRequests_max: number) {
    super(options)
    this.#pipelinedRequests_max = pipelinedRequests_max
  }

  override emit(event: string, ...args: Array<unknown>): boolean {
    const [request, response] = args
    if (event !== "request" || !(request instanceof IncomingMessage) || !(response instanceof ServerResponse)) {
      return super.emit(event, ...args)
    }
    // Node gives the connection to a response at once when no earlier one is being written.
    if (response.socket !== null) return super.emit("request", request, response)
    const socket = request.socket
    const waiting = (this.#waiting.get(socket) ?? 0) + 1
    if (waiting > this.#pipelinedRequests_max) {
      socket.destroy()
      return true
    }
    this.#waiting.set(socket, waiting)
    response.once("socket", () => {
      this.#waiting.set(socket, (this.#waiting.get(socket) ?? 1) - 1)
      super.emit("request", request, response)
    })
    return true
  }
}

/**
 * The response Node is writing on this connection (it keeps it on the socket, `_httpMessage`,
 * from the hand-over until the answer is sent), if any. The one place that reads Node's field.
 */
export const responseOn = (socket: Duplex): object | undefined => {
  const message: unknown = "_httpMessage" in socket ? socket._httpMessage : undefined
  return typeof message === "object" && message !== null ? message : undefined
}

/**
 * A connection whose socket has been silent for the server's `timeout`: closed when its client
 * stopped reading an answer (bytes wait to be written) or when nothing is being answered (idle,
 * or a request that stopped arriving). One whose answer the server is still preparing is kept:
 * the handler has its own bounds. This replaces Node's default for the same event (destroy on
 * any silence), which would cut a request waiting on a slow dependency.
 */
export const closeStalledConnection = (socket: Socket): void => {
  if (socket.writableLength > 0 || responseOn(socket) === undefined) socket.destroy()
}
