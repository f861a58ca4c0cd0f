// The part of autocannon 8's programmatic API that bench/api uses (the package ships no types).
// Shapes follow its README and lib/run.js; latencies are milliseconds.
declare module "autocannon" {
  namespace autocannon {
    interface RequestParams {
      method?: string
      path?: string
      headers?: Record<string, string>
      body?: string | Buffer
    }

    interface Request extends RequestParams {
      /** Called before every request on a connection; returns the request to send. */
      setupRequest?: (request: RequestParams, context: Record<string, unknown>) => RequestParams
    }

    interface Options {
      url: string
      connections?: number
      duration?: number
      pipelining?: number
      timeout?: number
      method?: string
      headers?: Record<string, string>
      body?: string
      requests?: ReadonlyArray<Request>
      /** Responses whose body differs are counted in `mismatches`. */
      expectBody?: string
    }

    interface Histogram {
      average: number
      mean: number
      stddev: number
      min: number
      max: number
      total: number
      p50: number
      p90: number
      p97_5: number
      p99: number
      p99_9: number
    }

    interface Result {
      title?: string
      url: string
      connections: number
      duration: number
      start: Date
      finish: Date
      errors: number
      timeouts: number
      mismatches: number
      non2xx: number
      resets: number
      "2xx": number
      requests: Histogram & { sent: number }
      latency: Histogram
      throughput: Histogram
      statusCodeStats: Record<string, { count: number }>
    }

    interface Instance extends PromiseLike<Result> {
      stop(): void
    }
  }

  function autocannon(options: autocannon.Options): autocannon.Instance
  function autocannon(options: autocannon.Options, callback: (error: Error | null, result: autocannon.Result) => void): autocannon.Instance

  export = autocannon
}
