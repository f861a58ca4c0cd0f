import { appendFileSync } from "node:fs"

/** One line of the history: what a client asked and what it got (invoke, then ok / fail / unknown). */
export interface HistoryEvent {
  readonly t_ms: number
  readonly client: number
  readonly op: "create" | "authorize" | "settle" | "reuse"
  readonly key: string
  readonly payment_id: string
  readonly phase: "invoke" | "ok" | "fail" | "unknown"
  readonly instance: number
  readonly status?: number
  readonly body?: string
}

/** Decided operation: the answer a client settled on for its key (after retries). */
export interface Decided {
  readonly op: HistoryEvent["op"]
  readonly key: string
  readonly merchant: number
  readonly payment_id: string
  readonly status: number
  readonly body: string
  /** Every decided answer this key got (replays, concurrent duplicates): all must be byte-identical. */
  readonly answers: ReadonlyArray<string>
  readonly duplicated: boolean
}

export const makeHistory = (path: string, started_ms: number) => {
  const events: Array<HistoryEvent> = []
  return {
    events,
    record: (event: Omit<HistoryEvent, "t_ms">) => {
      const full: HistoryEvent = { t_ms: Math.round(performance.now() - started_ms), ...event }
      events.push(full)
      appendFileSync(path, `${JSON.stringify(full)}\n`)
    }
  }
}

export type History = ReturnType<typeof makeHistory>
