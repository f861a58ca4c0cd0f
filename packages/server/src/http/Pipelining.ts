import { IncomingMessage, Server, ServerResponse, type ServerOptions } from "node:http"
import type { Socket } from "node:net"

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
 * Here a connection's next request is handed to the handler only when the answer before it has
 * been handed to the operating system (`finish`) or the connection is gone (`close`), so a
 * connection holds at most one answer in memory, and its waiting requests cost only their parsed
 * headers. At most `pipelinedRequests_max` requests wait per connection: one more and the
 * connection is closed (a client that pipelines that deep is not waiting for its answers).
 * A client that does not pipeline (one request, then its answer) sees no difference.
 */
export class OneAnswerAtATimeServer extends Server {
  readonly #turns = new WeakMap<Socket, Turns>()
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
    this.#take(request.socket, response, () => super.emit("request", request, response))
    return true
  }

  /** Whether a request of this connection is being answered (its answer not yet handed to the OS). */
  answering(socket: Socket): boolean {
    return this.#turns.get(socket)?.answering === true
  }

  #take(socket: Socket, response: ServerResponse, dispatch: () => void): void {
    if (socket.destroyed) return
    const turns = this.#turns.get(socket) ?? { answering: false, waiting: [] }
    this.#turns.set(socket, turns)
    const start = () => {
      if (socket.destroyed) {
        turns.waiting.length = 0
        return
      }
      turns.answering = true
      let ended = false
      const next = () => {
        if (ended) return
        ended = true
        turns.answering = false
        turns.waiting.shift()?.()
      }
      response.once("finish", next)
      response.once("close", next)
      dispatch()
    }
    if (!turns.answering) {
      start()
    } else if (turns.waiting.length < this.#pipelinedRequests_max) {
      turns.waiting.push(start)
    } else {
      turns.waiting.length = 0
      socket.destroy()
    }
  }
}

interface Turns {
  answering: boolean
  readonly waiting: Array<() => void>
}

/**
 * A connection whose socket has been silent for the server's `timeout`: closed when its client
 * stopped reading an answer (bytes wait to be written) or when nothing is being answered (idle,
 * or a request that stopped arriving). One whose answer the server is still preparing is kept:
 * the handler has its own bounds. This replaces Node's default for the same event (destroy on
 * any silence), which would cut a request waiting on a slow dependency.
 */
export const closeStalledConnection = (server: OneAnswerAtATimeServer) => (socket: Socket): void => {
  if (socket.writableLength > 0 || !server.answering(socket)) socket.destroy()
}
