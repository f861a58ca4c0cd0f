import { closeSync, openSync, writeSync } from "node:fs"

/** One line of the history: what a client asked and what it got (invoke, then ok / fail / unknown). */
export interface HistoryEvent {
  readonly t_ms: number
  readonly client: number
  readonly op: "create" | "authorize" | "settle" | "cancel" | "refund" | "reuse"
  readonly key: string
  readonly payment_id: string
  readonly phase: "invoke" | "ok" | "fail" | "unknown"
  readonly instance: number
  readonly status?: number
  readonly body?: string
}

/**
 * Decided operation: the answer a client settled on for its key (after retries). Kept in memory
 * for the checker (one per operation, ~10^5..10^6 in a long run), so it holds what the checks need
 * and not the answers themselves: the acknowledged status, how many answers and how many distinct.
 */
export interface Decided {
  readonly op: HistoryEvent["op"]
  readonly key: string
  readonly merchant: number
  readonly payment_id: string
  readonly status: number
  /** The `status` field of the answer (the payment's state for a payment answer), "" when none. */
  readonly acked: string
  /** The start of the first answer (for a violation's message). */
  readonly excerpt: string
  /** How many decided answers this key got (replays, concurrent duplicates) and how many distinct: must be 1. */
  readonly answers: number
  readonly distinct: number
  readonly duplicated: boolean
}

export const decidedOf = (
  fields: Pick<Decided, "op" | "key" | "merchant" | "payment_id" | "status" | "duplicated">,
  answers: ReadonlyArray<string>
): Decided => {
  const first = answers[0] ?? ""
  return {
    ...fields,
    acked: /"status":"([A-Z_]+)"/.exec(first)?.[1] ?? "",
    excerpt: first.slice(0, 160),
    answers: answers.length,
    distinct: new Set(answers).size
  }
}

/** At most this many history bytes wait in memory before a write to the file. */
const buffer_bytes_max = 256 * 1024
/** Examples of 500 answers kept for the report (all are counted). */
const internalExamples_max = 20

/**
 * The history as JSON lines in a file, written in 256 KiB chunks (bounded memory for ~10^6 events);
 * in memory only counts per phase and the first 500 answers (which must not happen).
 */
export const makeHistory = (path: string, started_ms: number) => {
  const fd = openSync(path, "a")
  let pending: Array<string> = []
  let pendingBytes = 0
  let events = 0
  let answers = 0
  const byPhase: Record<string, number> = {}
  const internal: Array<string> = []
  let internalCount = 0
  let closed = false
  const flush = () => {
    if (pending.length === 0 || closed) return
    writeSync(fd, pending.join(""))
    pending = []
    pendingBytes = 0
  }
  return {
    record: (event: Omit<HistoryEvent, "t_ms">) => {
      const full: HistoryEvent = { t_ms: Math.round(performance.now() - started_ms), ...event }
      const line = `${JSON.stringify(full)}\n`
      pending.push(line)
      pendingBytes += line.length
      if (pendingBytes >= buffer_bytes_max) flush()
      events += 1
      if (event.status !== undefined) answers += 1
      byPhase[event.phase] = (byPhase[event.phase] ?? 0) + 1
      if (event.status === 500) {
        internalCount += 1
        if (internal.length < internalExamples_max) internal.push(`${event.op} ${event.key} on instance ${event.instance}: ${event.body?.slice(0, 160) ?? ""}`)
      }
    },
    events: () => events,
    /** History lines that carry an HTTP answer (ok, fail, and unknown with a 5xx or key-in-use status; not invoke lines, not timeouts). */
    answers: () => answers,
    byPhase: (): Readonly<Record<string, number>> => ({ ...byPhase }),
    internal: () => ({ count: internalCount, examples: [...internal] }),
    /** Writes what is buffered and closes the file (the end of the run; once; later events are counted, not written). */
    close: () => {
      flush()
      if (!closed) closeSync(fd)
      closed = true
    }
  }
}

export type History = ReturnType<typeof makeHistory>
