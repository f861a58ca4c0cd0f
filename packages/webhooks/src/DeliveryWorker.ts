import { PgClient } from "@effect/sql-pg"
import { Cause, Context, Duration, Effect, Layer, Metric, Option, Queue, type Scope } from "effect"
import { SqlClient } from "effect/sql"
import { claimDeliveries, type ClaimedDelivery, type ClaimSlots, completeAttempt, WEBHOOK_NOTIFY_CHANNEL } from "./DeliveryQueue.ts"
import { answeringStreakOf_ms, merchantReservedSlotsOf, queueAges } from "./QueueAges.ts"
import {
  assertSenderOptions,
  defaultSenderOptions,
  SenderConfig,
  type SenderOptions,
  webhookAttemptFailures,
  webhookAttempts,
  webhookDeliveriesExhausted,
  webhookEndpointsDisabled,
  webhookLatency,
  webhookOldestOverdue,
  webhookOldestPendingAge,
  webhookSecretsUnopenable
} from "./Model.ts"
import { decide } from "./RetryPolicy.ts"
import { resealSecrets, type SecretBox, WebhookSecretBox, WebhookSecretBoxLive } from "./SecretSealing.ts"
import { send } from "./Sender.ts"
import { webhookHeaders } from "./Signing.ts"

/**
 * A sender's lease on a delivery: the request's timeout, plus time to record the result. A sender
 * that dies (or hangs) longer than this loses the delivery to another sender, which sends the same
 * bytes with the same `webhook-id` again (the receiver deduplicates on it).
 */
export const leaseOf_ms = (timeout_ms: number): number => 2 * timeout_ms + 5_000

const METRICS_INTERVAL_MS = 5_000
const LISTEN_RETRY_MS = 1_000
const LISTEN_RETRY_MS_MAX = 30_000
const CLAIM_BACKOFF_MS_MAX = 30_000

/**
 * What one sender has in flight, by endpoint and by merchant: the claim's `ClaimSlots`. Counted
 * from the claim to the recorded outcome (the slot's life, which the lease outlasts).
 */
class InFlight {
  readonly byEndpoint = new Map<string, number>()
  readonly byMerchant = new Map<string, number>()
  /** All of this sender's requests in flight. */
  total = 0
  add(delivery: ClaimedDelivery, change: 1 | -1): void {
    this.total += change
    bump(this.byEndpoint, delivery.endpoint_id, change)
    bump(this.byMerchant, delivery.merchant_id, change)
  }
  /** A copy (the claim reads it while requests finish), with the given caps. */
  slots(caps: Pick<ClaimSlots, "endpointInFlight_max" | "merchantInFlight_max" | "answeringStreak_ms_max">): ClaimSlots {
    return { ...caps, endpointInFlight: new Map(this.byEndpoint), merchantInFlight: new Map(this.byMerchant) }
  }
}

/** A receiver's URL for a log line: scheme, host, port and path (no userinfo, query or fragment). */
export const loggableUrl = (url: string): string => {
  if (!URL.canParse(url)) return "(unparseable)"
  const parsed = new URL(url)
  return `${parsed.origin}${parsed.pathname}`
}

/** The first claim of a round: merchants (and so endpoints) with nothing in flight here, one delivery each. */
const idleMerchantsOnly = { endpointInFlight_max: 1, merchantInFlight_max: 1 } as const

/**
 * Slots a sender keeps for merchants with nothing in flight: a quarter of its concurrency (at
 * least 1, none when it has a single slot). The deliveries of merchants that already have some in
 * flight fill the others by due time.
 */
export const reservedSlotsOf = (concurrency: number): number => Math.min(concurrency - 1, Math.max(1, Math.floor(concurrency / 4)))

const bump = (counts: Map<string, number>, key: string, change: 1 | -1): void => {
  const count = (counts.get(key) ?? 0) + change
  if (count < 0) throw new Error(`webhook in-flight count of ${key} below 0`)
  if (count === 0) counts.delete(key)
  else counts.set(key, count)
}

/**
 * The webhook sender: claims due deliveries (per endpoint and payment, only the earliest pending
 * one is due), sends each with a bounded timeout, records the attempt, and schedules the retry or
 * gives up. At most `concurrency` requests are in flight, of which at most
 * `endpointInFlight_max` to one endpoint and `merchantInFlight_max` to one merchant's endpoints:
 * a free slot is filled at once with the earliest due delivery whose endpoint and merchant are
 * under their caps, so receivers that are slow or never answer hold back only their own merchant's
 * deliveries, never all the others (before the caps, one merchant's hung endpoints could hold every
 * slot for the whole timeout). On shutdown (SIGTERM) the loop stops claiming and
 * the requests in flight finish (bounded by the timeout); a crash instead leaves them to be sent
 * again once their leases expire (at-least-once; same webhook-id).
 */
export class WebhookSender extends Context.Service<WebhookSender, {
  /** Sends one claimed delivery and records its outcome (exported for tests and tools). */
  readonly deliver: (claimed: ClaimedDelivery) => Effect.Effect<void>
  /** Claims and delivers until nothing is due (bounded by `rounds_max`); returns how many were sent. */
  readonly drain: (rounds_max: number) => Effect.Effect<number>
  readonly options: SenderOptions
}>()("webhooks/WebhookSender") {
  static readonly layerWith = (options: SenderOptions) =>
    Layer.effect(WebhookSender, Effect.gen(function* () {
      assertSenderOptions(options)
      const sql = yield* SqlClient.SqlClient
      const box = yield* WebhookSecretBox
      // Secrets stored before WEBHOOK_SECRETS_KEY was set, or under the key being rotated out,
      // are sealed under the current one before the first delivery (bounded; idempotent).
      yield* resealSecrets(box).pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        Effect.catchCause((cause) => Effect.logError("webhook secrets could not be resealed at start; they still sign, retried at the next start", cause))
      )
      const deliver = (claimed: ClaimedDelivery) => deliverOne(options, box, claimed).pipe(Effect.provideService(SqlClient.SqlClient, sql))
      const drain = (rounds_max: number) =>
        Effect.gen(function* () {
          let sent = 0
          for (let round = 0; round < rounds_max; round++) {
            // Each round waits for all it claimed: nothing is in flight when the next one claims.
            const claimed = yield* claimDeliveries(options.batchSize, leaseOf_ms(options.timeout_ms), new InFlight().slots(options))
            if (claimed.length === 0) break
            yield* Effect.forEach(claimed, deliver, { concurrency: options.concurrency, discard: true })
            sent += claimed.length
          }
          return sent
        }).pipe(
          Effect.provideService(SqlClient.SqlClient, sql),
          Effect.catchCause((cause) => Effect.logWarning("webhook drain failed", cause).pipe(Effect.as(0)))
        )
      return WebhookSender.of({ deliver, drain, options })
    }))

  /** Configured from the `WEBHOOK_*` settings (SenderConfig) and `WEBHOOK_SECRETS_KEY` (SecretSealing.ts). */
  static readonly layer = Layer.unwrap(Effect.map(SenderConfig, (options) => WebhookSender.layerWith(options))).pipe(Layer.provide(WebhookSecretBoxLive))
  static readonly defaults = defaultSenderOptions
}

/** The claimed delivery's live secrets as they are, opened from their stored form. */
const openSecrets = (box: SecretBox, claimed: ClaimedDelivery) =>
  Effect.forEach(claimed.secrets, (stored) => Effect.fromResult(box.open(stored, claimed.endpoint_id)))

const deliverOne = (options: SenderOptions, box: SecretBox, claimed: ClaimedDelivery) =>
  Effect.gen(function* () {
    const secrets = yield* openSecrets(box, claimed)
    const headers = webhookHeaders(secrets, claimed.event_id, Number(claimed.webhook_timestamp), claimed.body)
    const result = yield* send({ url: claimed.url, headers, body: claimed.body, timeout_ms: options.timeout_ms, allowLoopbackHttp: options.allowLoopbackHttp })
    yield* Metric.update(webhookAttempts, 1)
    yield* Metric.update(webhookLatency, result.latency_ms / 1_000)
    const decision = decide(result, claimed.round_attempt_count, options, Math.random())
    if (decision._tag !== "Delivered") yield* Metric.update(webhookAttemptFailures, 1)
    if (decision._tag === "Exhausted" || decision._tag === "Gone") yield* Metric.update(webhookDeliveriesExhausted, 1)
    const change = yield* completeAttempt(claimed, result, decision, options.disableAfterFailing_ms)
    // A delivered attempt at DEBUG (the common case); a failed one at INFO and a delivery given up
    // at WARN, both naming the endpoint (annotations below): the metric has no endpoint label, and
    // an operator paged by WebhookDeliveriesLate had nothing naming the endpoint that failed.
    const attempt = {
      outcome: decision._tag,
      status: result._tag === "Answered" ? result.status : null,
      error: result._tag === "Answered" ? null : result.error.slice(0, 200),
      latency_ms: result.latency_ms
    }
    const line = decision._tag === "Delivered"
      ? Effect.logDebug("webhook attempt")
      : decision._tag === "Exhausted" || decision._tag === "Gone"
      ? Effect.logWarning("webhook delivery given up")
      : Effect.logInfo("webhook attempt failed")
    yield* line.pipe(Effect.annotateLogs(attempt))
    if (change._tag === "Disabled") {
      yield* Metric.update(webhookEndpointsDisabled, 1)
      // The receiver's origin and path only: a query or userinfo may carry the merchant's own token.
      yield* Effect.logWarning("webhook endpoint disabled", { reason: change.reason, url: loggableUrl(claimed.url) })
    }
  }).pipe(
    // Nothing was sent: a key missing here is an operator's to fix; the lease brings it back.
    Effect.catchTag("SecretSealingFailed", (error) =>
      Effect.logError("webhook not sent: its endpoint's signing secret does not open here; it is tried again after its lease", { reason: error.message }).pipe(
        Effect.andThen(Metric.update(webhookSecretsUnopenable, 1))
      )
    ),
    // The lease bounds a failure here: the delivery is sent again once it expires.
    Effect.catchCause((cause) =>
      Cause.hasInterruptsOnly(cause) ? Effect.interrupt : Effect.logWarning("webhook attempt could not be recorded; it is resent after its lease", cause)
    ),
    // Outside the handlers above, so that their lines name the delivery too.
    Effect.annotateLogs({ webhook_delivery_id: claimed.id, webhook_endpoint_id: claimed.endpoint_id, merchant_id: claimed.merchant_id, event_id: claimed.event_id, attempt: claimed.attempt_count }),
    Effect.withSpan("webhooks.deliver")
  )

/**
 * Sends a claimed delivery in a fiber of the loop's scope, counted in flight at once (so that the
 * next claim's caps see it) until its outcome is recorded; a finished request drops a token into
 * `finished`. Uninterruptible: on shutdown (SIGTERM) the requests in flight finish (each bounded
 * by timeout_ms) and are recorded, rather than being resent by another sender after the lease.
 */
const startDelivery = (sender: WebhookSender["Service"], inFlightOf: InFlight, finished: Queue.Queue<void>) => (delivery: ClaimedDelivery) =>
  Effect.sync(() => inFlightOf.add(delivery, 1)).pipe(
    Effect.andThen(Effect.forkScoped(sender.deliver(delivery).pipe(
      Effect.uninterruptible,
      Effect.ensuring(Effect.sync(() => inFlightOf.add(delivery, -1)).pipe(Effect.andThen(Queue.offer(finished, undefined))))
    ))),
    Effect.asVoid
  )

/**
 * LISTEN on a connection of its own; each notification drops a token into `wake`. Re-listens after
 * a pause that doubles while it keeps failing (1 s up to 30 s). One WARN when it is lost, one INFO
 * when it is back; the failed attempts in between at DEBUG: a database outage logged a WARN with
 * its stack every second (outside operator review), and polling covers the wait anyway.
 */
const listenForever = (pg: PgClient.PgClient, wake: Queue.Queue<void>) => {
  let failures = 0
  return Effect.forever(
    Effect.scoped(Effect.gen(function* () {
      const notifications = yield* pg.listen(WEBHOOK_NOTIFY_CHANNEL)
      if (failures > 0) yield* Effect.logInfo("LISTEN webhook_deliveries is back", { failed_attempts: failures })
      failures = 0
      // Deliveries committed while nobody listened sent their NOTIFY to nobody.
      yield* Queue.offer(wake, undefined)
      while (true) {
        yield* Queue.take(notifications)
        yield* Queue.offer(wake, undefined)
      }
    })).pipe(
      Effect.catchCause((cause) => {
        if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
        failures += 1
        const pause_ms = Math.min(LISTEN_RETRY_MS_MAX, LISTEN_RETRY_MS * 2 ** Math.min(failures - 1, 10))
        const log = failures === 1
          ? Effect.logWarning("LISTEN webhook_deliveries lost; polling until it is back", { reason: Cause.pretty(cause).split("\n")[0] ?? "" })
          : Effect.logDebug("LISTEN webhook_deliveries still lost", { failed_attempts: failures, retry_in_ms: pause_ms })
        return log.pipe(Effect.andThen(Effect.sleep(pause_ms)))
      })
    )
  )
}

/**
 * One round of claims for the free slots: first one delivery each for the merchants with nothing
 * in flight here (any free slot); then, within each merchant, one delivery each for its endpoints
 * that answer and have nothing in flight, up to the merchant's whole cap; then the rest by due
 * time, leaving `reservedSlotsOf(concurrency)` of the sender's slots for merchants with nothing in
 * flight and `merchantReservedSlotsOf(cap)` of each merchant's for its endpoints that answer.
 * Merchants with receivers that hang hold at most `concurrency - reserved` slots together (two
 * merchants at their caps held all 16 before), a merchant's endpoints that never answer at most
 * its cap less its reserve (two held all 8 of one merchant's before).
 */
const claimRound = (
  options: SenderOptions,
  inFlightOf: InFlight,
  start: (delivery: ClaimedDelivery) => Effect.Effect<void, never, Scope.Scope>,
  lease_ms: number
) => {
  const reserved = reservedSlotsOf(options.concurrency)
  const merchantReserved = merchantReservedSlotsOf(options.merchantInFlight_max)
  const claimInto = (room: number, slots: ClaimSlots) =>
    room > 0
      ? claimDeliveries(Math.min(room, options.batchSize), lease_ms, slots).pipe(Effect.tap((claimed) => Effect.forEach(claimed, start, { discard: true })))
      : Effect.succeed([])
  return Effect.gen(function* () {
    const free = options.concurrency - inFlightOf.total
    if (free <= 0) return { claimed: 0, full: true }
    const idle = yield* claimInto(free, inFlightOf.slots(idleMerchantsOnly))
    const idleEndpoints = yield* claimInto(options.concurrency - inFlightOf.total - reserved, inFlightOf.slots({
      endpointInFlight_max: 1,
      merchantInFlight_max: options.merchantInFlight_max,
      answeringStreak_ms_max: answeringStreakOf_ms(options.timeout_ms)
    }))
    const more = yield* claimInto(options.concurrency - inFlightOf.total - reserved, inFlightOf.slots({
      endpointInFlight_max: options.endpointInFlight_max,
      merchantInFlight_max: options.merchantInFlight_max - merchantReserved
    }))
    return { claimed: idle.length + idleEndpoints.length + more.length, full: inFlightOf.total >= options.concurrency, failed: false }
  }).pipe(Effect.catchCause((cause) => Effect.logWarning("webhook claim failed", cause).pipe(Effect.as({ claimed: 0, full: false, failed: true }))))
}

/**
 * The sender's loop, as a scoped layer (inside the server, or `node packages/webhooks/src/main.ts`):
 * keeps `concurrency` requests in flight (within the per-endpoint and per-merchant caps), polls
 * every `pollInterval_ms` when nothing is due, and refreshes the queue-age gauges. Needs
 * `WebhookSender` and `SqlClient`.
 */
export const WebhookSenderLoop = Layer.effectDiscard(Effect.gen(function* () {
  const sender = yield* WebhookSender
  // Exported from the start (at 0), so that the first disable (or unopenable secret) is an
  // increase Prometheus can see.
  yield* Metric.update(webhookEndpointsDisabled, 0)
  yield* Metric.update(webhookSecretsUnopenable, 0)
  const sql = yield* SqlClient.SqlClient
  const { options } = sender
  const inFlightOf = new InFlight()
  // A token whenever a request finishes (a slot is free, and the next event of its payment may
  // have become due) or deliveries were queued (NOTIFY). A sliding queue of one: a burst wakes
  // the loop once.
  const finished = yield* Queue.sliding<void>(1)
  const lease_ms = leaseOf_ms(options.timeout_ms)
  const round = claimRound(options, inFlightOf, startDelivery(sender, inFlightOf, finished), lease_ms)
  const loop = Effect.gen(function* () {
    let failures = 0
    while (true) {
      const { claimed, full, failed } = yield* round
      failures = failed ? failures + 1 : 0
      // The database does not answer: back off (bounded) instead of logging every poll.
      if (failed) yield* Effect.sleep(Duration.millis(Math.min(CLAIM_BACKOFF_MS_MAX, options.pollInterval_ms * 2 ** Math.min(failures - 1, 10))))
      // Every slot busy: wait for one. Nothing due, or nothing under its endpoint's and merchant's
      // caps: wait for a completion (it frees a share too) or the poll interval. Claimed some: claim
      // again at once (a claim trimmed by the caps leaves the rest for the next).
      else if (full) yield* Queue.take(finished)
      else if (claimed === 0) yield* Queue.take(finished).pipe(Effect.timeoutOption(Duration.millis(options.pollInterval_ms)))
    }
  })
  // LISTEN for new deliveries (a trigger NOTIFYs on commit): a queued event goes out at once
  // instead of at the next poll. Needs a Postgres client; polling covers a lost connection.
  const pg = yield* Effect.serviceOption(PgClient.PgClient)
  if (Option.isSome(pg)) yield* Effect.forkScoped(listenForever(pg.value, finished))
  const refreshGauge = queueAges(sql, options).pipe(
    Effect.flatMap((ages) => Effect.andThen(
      Metric.update(webhookOldestPendingAge, ages.oldestPending_s),
      Metric.update(webhookOldestOverdue, ages.oldestOverdue_s)
    )),
    Effect.catchCause((cause) => Effect.logWarning("webhook gauge refresh failed", cause))
  )
  yield* Effect.forkScoped(Effect.forever(refreshGauge.pipe(Effect.andThen(Effect.sleep(METRICS_INTERVAL_MS)))))
  yield* Effect.forkScoped(loop.pipe(Effect.provideService(SqlClient.SqlClient, sql)))
  yield* Effect.logInfo("webhook sender started", {
    concurrency: options.concurrency,
    endpoint_in_flight_max: options.endpointInFlight_max,
    merchant_in_flight_max: options.merchantInFlight_max,
    timeout_ms: options.timeout_ms
  })
  // Within bounds but with less isolation: one merchant's hung endpoints can hold every slot but
  // the reserved ones (reservedSlotsOf), which merchants with nothing in flight share.
  if (options.merchantInFlight_max >= options.concurrency - reservedSlotsOf(options.concurrency) && options.concurrency > 1) {
    yield* Effect.logWarning("WEBHOOK_MERCHANT_IN_FLIGHT_MAX is not below WEBHOOK_CONCURRENCY minus the reserved slots: one merchant's slow endpoints can hold every slot of this sender but the reserved ones")
  }
}))
