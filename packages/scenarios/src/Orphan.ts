import { Effect } from "effect"

/** How often the parent's pid is looked at. */
const parentCheckInterval_ms = 500

/**
 * When the process that started this one goes away, this one stops as if it had received SIGTERM:
 * the runtime interrupts the run, its scopes close, and what it started (API processes, throwaway
 * brokers, Postgres and Redis instances, databases, topics) is stopped and removed. Without it,
 * `timeout 60 pnpm scenario …` left the scenario running as an orphan with everything it had
 * started: pnpm exits on SIGTERM without passing it on (found by the outside fault audit). Polls
 * `process.ppid` (the kernel re-parents an orphan) on a timer that does not keep the process alive.
 */
export const stopWhenOrphaned: Effect.Effect<void> = Effect.sync(() => {
  const parent = process.ppid
  const timer = setInterval(() => {
    if (process.ppid === parent) return
    clearInterval(timer)
    process.kill(process.pid, "SIGTERM")
  }, parentCheckInterval_ms)
  timer.unref()
})
