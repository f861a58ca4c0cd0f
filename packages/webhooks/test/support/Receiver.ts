import { Deferred, Effect } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"

/** One request as the receiver got it: the raw body bytes and the three Standard Webhooks headers. */
export interface Received {
  readonly id: string
  readonly timestamp: string
  readonly signature: string
  readonly body: string
  /** How many requests with this webhook-id arrived before this one. */
  readonly seenBefore: number
}

/** What to answer: a status (with headers and body), or hold the request open without answering. */
export type Answer =
  | { readonly status: number; readonly headers?: Record<string, string>; readonly body?: string; readonly delay_ms?: number }
  | "hold"

export interface Receiver {
  readonly url: string
  /** Every request, in arrival order. */
  readonly received: Array<Received>
  /** Completes when a request is being held or delayed (the first one). */
  readonly holding: Deferred.Deferred<void>
}

const maxBody_bytes = 1024 * 1024

/**
 * A real HTTP receiver on loopback, started by the test (a merchant's endpoint): it keeps the
 * exact bytes it got and answers what `answer` says. Closed (with the connections it holds) when
 * the scope closes.
 */
export const startReceiver = (answer: (request: Received) => Answer) =>
  Effect.gen(function* () {
    const received: Array<Received> = []
    const holding = yield* Deferred.make<void>()
    const held: Array<ServerResponse> = []
    const handle = (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Array<Buffer> = []
      let size = 0
      req.on("data", (chunk: Buffer) => {
        size += chunk.length
        if (size <= maxBody_bytes) chunks.push(chunk)
      })
      req.on("end", () => {
        const header = (name: string) => String(req.headers[name] ?? "")
        const id = header("webhook-id")
        const request: Received = {
          id,
          timestamp: header("webhook-timestamp"),
          signature: header("webhook-signature"),
          body: Buffer.concat(chunks).toString("utf8"),
          seenBefore: received.filter((r) => r.id === id).length
        }
        received.push(request)
        const decided = answer(request)
        if (decided === "hold") {
          held.push(res)
          Deferred.doneUnsafe(holding, Effect.void)
          return
        }
        const respond = () => {
          res.writeHead(decided.status, decided.headers ?? {})
          res.end(decided.body ?? "")
        }
        if (decided.delay_ms === undefined) respond()
        else {
          Deferred.doneUnsafe(holding, Effect.void)
          setTimeout(respond, decided.delay_ms)
        }
      })
    }
    const server = createServer(handle)
    yield* Effect.acquireRelease(
      Effect.callback<void>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.void))
      }),
      () => Effect.sync(() => {
        for (const res of held) res.destroy()
        server.closeAllConnections()
        server.close()
      })
    )
    const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
    const receiver: Receiver = { url: `http://127.0.0.1:${port}/hooks`, received, holding }
    return receiver
  })

/** Polls `condition` every 20 ms, at most `bound_ms` (generous: a loaded machine is slow). */
export const eventually = (what: string, condition: () => boolean, bound_ms = 20_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + bound_ms
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for: ${what}`))
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))
    }
  })
