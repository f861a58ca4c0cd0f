/**
 * The database's side of a partition (ADR 0015, "Consequences"). The answer watch
 * (PostgresAnswerWatch.ts) frees this process from a silent connection; it cannot reach the
 * backend on the other side, which keeps its session, its open transaction and every row lock in
 * it until its own TCP gives up (two hours of keepalive idle by default on Linux, or never while a
 * middlebox answers for the peer). Meanwhile every other instance that can still reach the
 * database waits on those locks. These settings, sent in every service connection's startup
 * packet (so they hold whatever the server's configuration says, and a pooler must pass them or
 * set them on the role: docs/scaling.md), bound how long such a backend lives:
 *
 * - `idle_in_transaction_session_timeout`: a session that sits inside a transaction waiting for
 *   its client (what a partition makes of every transaction in flight) is ended and rolled back,
 *   its locks released. Above the longest wait the code itself has inside a transaction: the
 *   outbox publisher sends to Kafka inside its claim's transaction (bounded by the producer's 20 s
 *   operation timeout); a publisher cut there rolls back and sends again later (a duplicate the
 *   consumers absorb), never loses an event.
 * - server TCP keepalives: an idle session (or one idle in a transaction) whose client is gone is
 *   found by probes after `idle + interval × count` (15 + 5 × 3 s) instead of two hours, so a
 *   partition does not leave a pool's worth of dead sessions holding `max_connections` slots.
 * - `tcp_user_timeout`: a backend that is sending (rows, an error) to a client that no longer
 *   acknowledges gives up after 30 s instead of retransmitting for ~15 minutes.
 * - `client_connection_check_interval`: a statement still running (a lock wait, a long query)
 *   checks every 5 s whether its client has closed, and is cancelled when it has: the answer
 *   watch's close then ends the backend's work too, instead of leaving it queued for a lock that
 *   it would take, and hold, for nobody.
 */
import type { IntBounds } from "./BoundedConfig.ts"

/** 0: off; otherwise at least a second (a bound shorter than a statement's pause between its parts would cut healthy work) and at most an hour. */
export const idleInTransactionTimeoutBounds: IntBounds = { min: 1_000, max: 3_600_000 }

/**
 * A service's default: above the outbox publisher's Kafka send bound (20 s) inside its claim's
 * transaction, so a healthy slow send is never cut; the locks of a partitioned transaction are
 * released within this.
 */
export const defaultIdleInTransactionTimeout_ms = 30_000

/** The server's TCP settings for a session, fixed (seconds, and milliseconds where the name says). */
export const serverTcpBounds = {
  keepalivesIdle_s: 15,
  keepalivesInterval_s: 5,
  keepalivesCount: 3,
  userTimeout_ms: 30_000,
  clientConnectionCheckInterval_ms: 5_000
} as const

/**
 * The startup parameters of a service connection (names as Postgres spells them; values in its
 * units). An idle-in-transaction timeout of 0 is not sent: the server's (or the role's) applies.
 */
export const sessionStartupParameters = (idleInTransactionTimeout_ms: number): Readonly<Record<string, string>> => ({
  ...(idleInTransactionTimeout_ms > 0 ? { idle_in_transaction_session_timeout: String(idleInTransactionTimeout_ms) } : {}),
  tcp_keepalives_idle: String(serverTcpBounds.keepalivesIdle_s),
  tcp_keepalives_interval: String(serverTcpBounds.keepalivesInterval_s),
  tcp_keepalives_count: String(serverTcpBounds.keepalivesCount),
  tcp_user_timeout: String(serverTcpBounds.userTimeout_ms),
  client_connection_check_interval: String(serverTcpBounds.clientConnectionCheckInterval_ms)
})
