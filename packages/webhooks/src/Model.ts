import { domainEventTypes } from "@pay/domain"
import { assertWithin, boundedInt, type IntBounds, optionalBoundedInt } from "@pay/infra"
import { Config, Effect, Metric, Option, Schema } from "effect"

/** `we_` + 24 lowercase Crockford base32 characters (120 random bits), like the domain's ids. */
export const webhookEndpointIdPattern = /^we_[0-9a-hjkmnp-tv-z]{24}$/
export const WebhookEndpointId = Schema.String.check(
  Schema.isPattern(webhookEndpointIdPattern, { message: "a webhook endpoint id is \"we_\" followed by 24 lowercase base32 characters" })
).pipe(Schema.brand("WebhookEndpointId"))
export type WebhookEndpointId = typeof WebhookEndpointId.Type

const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

/** A fresh endpoint id (15 random bytes written as 24 base32 symbols). */
export const generateWebhookEndpointId: Effect.Effect<WebhookEndpointId> = Effect.sync(() => {
  const bytes = new Uint8Array(15)
  globalThis.crypto.getRandomValues(bytes)
  let bits = 0
  let buffered = 0
  let body = ""
  for (const byte of bytes) {
    bits = (bits << 8) | byte
    buffered += 8
    while (buffered >= 5) {
      buffered -= 5
      body += alphabet.charAt((bits >> buffered) & 31)
    }
    bits &= (1 << buffered) - 1
  }
  return WebhookEndpointId.make(`we_${body}`)
})

/** What an endpoint may subscribe to: the payment and refund events, or `*` for all of them. */
export const webhookEventTypes = ["*", ...domainEventTypes] as const
export const WebhookEventType = Schema.Literals(webhookEventTypes)
export type WebhookEventType = typeof WebhookEventType.Type

/** Subscriptions per endpoint, and endpoints per merchant (TIGER_STYLE: a limit on everything). */
export const EVENT_TYPES_MAX = 16
export const ENDPOINTS_PER_MERCHANT_MAX = 16
export const URL_LENGTH_MAX = 2_048
export const DESCRIPTION_LENGTH_MAX = 500
/** The largest webhook body; the database checks the same bound. */
export const WEBHOOK_BODY_BYTES_MAX = 65_536
/**
 * How long an endpoint disabled for failing (`disabled_reason: failing`: its receiver was down for
 * days, nobody asked to stop) keeps getting deliveries queued, pending, to go out once it is enabled
 * again: 30 days, so that a merchant who fixes the receiver and enables it misses nothing from the
 * outage, and a receiver abandoned for good stops growing the table. An endpoint disabled by the
 * merchant, or by a 410 (the receiver asked to stop), gets none.
 */
export const FAILING_ENDPOINT_QUEUE_DAYS = 30
/** At most this much of a receiver's answer is read, and 1 KiB of it kept with the attempt. */
export const RESPONSE_BYTES_READ_MAX = 16_384
export const RESPONSE_EXCERPT_BYTES_MAX = 1_024

export type EndpointStatus = "enabled" | "disabled"
export type DisabledReason = "merchant" | "gone" | "failing"

/**
 * The sender's settings.
 *
 * | variable                              | default                                   | bounds |
 * | ------------------------------------- | ----------------------------------------- | ------ |
 * | `WEBHOOK_SENDER_ENABLED`              | true                                      | boolean |
 * | `WEBHOOK_ALLOW_LOOPBACK_HTTP`         | false (true only in local and test mode)  | boolean |
 * | `WEBHOOK_TIMEOUT_MS`                  | 15000                                     | 100..30000 |
 * | `WEBHOOK_CONCURRENCY`                 | 16                                        | 1..256 |
 * | `WEBHOOK_ENDPOINT_IN_FLIGHT_MAX`      | 4                                         | 1..256 |
 * | `WEBHOOK_MERCHANT_IN_FLIGHT_MAX`      | half of `WEBHOOK_CONCURRENCY`, at least 1 | 1..256 |
 * | `WEBHOOK_BATCH_SIZE`                  | 64                                        | 1..1000 |
 * | `WEBHOOK_POLL_INTERVAL_MS`            | 500                                       | 10..60000 |
 * | `WEBHOOK_RETRY_SCHEDULE_MS`           | 0,5s,5min,30min,2h,5h,10h,10h             | 1..20 delays, each 0..48 h |
 * | `WEBHOOK_RETRY_AFTER_MAX_MS`          | 1 h                                       | 0..24 h |
 * | `WEBHOOK_DISABLE_AFTER_FAILING_MS`    | 5 days                                    | 1 s..30 days |
 * | `WEBHOOK_SECRET_OVERLAP_MS`           | 24 h                                      | 0..7 days |
 */
export interface SenderOptions {
  /** Per request: connect, send, and read the answer. */
  readonly timeout_ms: number
  /** Requests in flight at once, per sender process. */
  readonly concurrency: number
  /**
   * Requests to one endpoint in flight at once, per sender process (tenant isolation: an endpoint
   * that never answers holds at most this many of the sender's slots, for the timeout each).
   */
  readonly endpointInFlight_max: number
  /**
   * Requests to one merchant's endpoints, all of them together, in flight at once per sender
   * process: a merchant with many slow endpoints leaves `concurrency - merchantInFlight_max` slots
   * to the others (docs/webhooks.md, "Tenant isolation").
   */
  readonly merchantInFlight_max: number
  /** Deliveries claimed per round. */
  readonly batchSize: number
  readonly pollInterval_ms: number
  /** The delay before each attempt: the first is usually 0; its length is the attempt count. */
  readonly retrySchedule_ms: ReadonlyArray<number>
  /** The most a receiver's `Retry-After` may push the next attempt out. */
  readonly retryAfterMax_ms: number
  /** An endpoint whose every attempt failed for this long is disabled. */
  readonly disableAfterFailing_ms: number
  /** `http://` to loopback addresses: local and test mode only. */
  readonly allowLoopbackHttp: boolean
}

export const senderOptionBounds: Readonly<Record<Exclude<keyof SenderOptions, "retrySchedule_ms" | "allowLoopbackHttp">, IntBounds>> = {
  timeout_ms: { min: 100, max: 30_000 },
  concurrency: { min: 1, max: 256 },
  endpointInFlight_max: { min: 1, max: 256 },
  merchantInFlight_max: { min: 1, max: 256 },
  batchSize: { min: 1, max: 1_000 },
  pollInterval_ms: { min: 10, max: 60_000 },
  retryAfterMax_ms: { min: 0, max: 24 * 60 * 60 * 1_000 },
  disableAfterFailing_ms: { min: 1_000, max: 30 * 24 * 60 * 60 * 1_000 }
}
export const retryScheduleBounds = { length: { min: 1, max: 20 }, delay_ms: { min: 0, max: 48 * 60 * 60 * 1_000 } } as const

const second_ms = 1_000
const minute_ms = 60 * second_ms
const hour_ms = 60 * minute_ms

/** The schedule (Svix's, with a last 10 h): immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. */
export const DEFAULT_RETRY_SCHEDULE_MS: ReadonlyArray<number> = [0, 5 * second_ms, 5 * minute_ms, 30 * minute_ms, 2 * hour_ms, 5 * hour_ms, 10 * hour_ms, 10 * hour_ms]

/**
 * A merchant's share of a sender's slots when `WEBHOOK_MERCHANT_IN_FLIGHT_MAX` is not set: half of
 * them, so that one merchant's endpoints, however many or slow, leave the other half to the rest.
 */
export const merchantInFlightDefault = (concurrency: number): number => Math.max(1, Math.floor(concurrency / 2))

/**
 * 4 requests at once per endpoint: below the merchant's share (8 of 16), so one dead endpoint also
 * leaves its own merchant's other endpoints slots; at ~100 ms an answer that is ~40 deliveries/s
 * per endpoint and sender, and a receiver that never answers ties up 4 slots, not 16.
 */
const ENDPOINT_IN_FLIGHT_MAX_DEFAULT = 4
const CONCURRENCY_DEFAULT = 16

export const defaultSenderOptions: SenderOptions = {
  timeout_ms: 15_000,
  concurrency: CONCURRENCY_DEFAULT,
  endpointInFlight_max: ENDPOINT_IN_FLIGHT_MAX_DEFAULT,
  merchantInFlight_max: merchantInFlightDefault(CONCURRENCY_DEFAULT),
  batchSize: 64,
  pollInterval_ms: 500,
  retrySchedule_ms: DEFAULT_RETRY_SCHEDULE_MS,
  retryAfterMax_ms: hour_ms,
  disableAfterFailing_ms: 5 * 24 * hour_ms,
  allowLoopbackHttp: false
}

/** Checks options given directly (tests): out of bounds is a bug, a defect at start-up. */
export const assertSenderOptions = (options: SenderOptions): void => {
  assertWithin("webhook sender", options, senderOptionBounds)
  const { length, delay_ms } = retryScheduleBounds
  const schedule = options.retrySchedule_ms
  if (schedule.length < length.min || schedule.length > length.max || schedule.some((d) => !Number.isInteger(d) || d < delay_ms.min || d > delay_ms.max)) {
    throw new RangeError(`webhook sender: retrySchedule_ms must have ${length.min}..${length.max} integer delays of ${delay_ms.min}..${delay_ms.max} ms`)
  }
}

// Each delay within its bound here, so that a value out of range is a ConfigError naming the
// variable like every other setting (outside code review: 9 digits passed the pattern and
// assertSenderOptions then threw a RangeError with a stack trace at start-up).
const RetryScheduleText = Schema.String.check(
  Schema.isPattern(/^\d{1,9}(,\d{1,9}){0,19}$/, { message: "WEBHOOK_RETRY_SCHEDULE_MS must be 1..20 comma-separated delays in ms" }),
  Schema.makeFilter((text: string) =>
    text.split(",").every((delay) => Number(delay) <= retryScheduleBounds.delay_ms.max) ||
    `WEBHOOK_RETRY_SCHEDULE_MS: each delay must be at most ${retryScheduleBounds.delay_ms.max} ms (48 h)`)
)

/** `WEBHOOK_ALLOW_LOOPBACK_HTTP`: local and test mode only (docs/webhooks.md, the SSRF rule). */
export const AllowLoopbackHttpConfig = Config.Boolean("WEBHOOK_ALLOW_LOOPBACK_HTTP").pipe(Config.withDefault(false))

/** `WEBHOOK_MERCHANT_IN_FLIGHT_MAX` when set (within its bounds); unset, it follows `WEBHOOK_CONCURRENCY`. */
const MerchantInFlightMaxConfig = optionalBoundedInt("WEBHOOK_MERCHANT_IN_FLIGHT_MAX", senderOptionBounds.merchantInFlight_max)

export const SenderConfig: Config.Config<SenderOptions> = Config.all({
  timeout_ms: boundedInt("WEBHOOK_TIMEOUT_MS", senderOptionBounds.timeout_ms, defaultSenderOptions.timeout_ms),
  concurrency: boundedInt("WEBHOOK_CONCURRENCY", senderOptionBounds.concurrency, defaultSenderOptions.concurrency),
  endpointInFlight_max: boundedInt(
    "WEBHOOK_ENDPOINT_IN_FLIGHT_MAX",
    senderOptionBounds.endpointInFlight_max,
    defaultSenderOptions.endpointInFlight_max
  ),
  merchantInFlight_max: MerchantInFlightMaxConfig,
  batchSize: boundedInt("WEBHOOK_BATCH_SIZE", senderOptionBounds.batchSize, defaultSenderOptions.batchSize),
  pollInterval_ms: boundedInt("WEBHOOK_POLL_INTERVAL_MS", senderOptionBounds.pollInterval_ms, defaultSenderOptions.pollInterval_ms),
  retrySchedule_ms: Config.schema(RetryScheduleText, "WEBHOOK_RETRY_SCHEDULE_MS").pipe(
    Config.map((text) => text.split(",").map(Number)),
    Config.withDefault(defaultSenderOptions.retrySchedule_ms)
  ),
  retryAfterMax_ms: boundedInt("WEBHOOK_RETRY_AFTER_MAX_MS", senderOptionBounds.retryAfterMax_ms, defaultSenderOptions.retryAfterMax_ms),
  disableAfterFailing_ms: boundedInt(
    "WEBHOOK_DISABLE_AFTER_FAILING_MS",
    senderOptionBounds.disableAfterFailing_ms,
    defaultSenderOptions.disableAfterFailing_ms
  ),
  allowLoopbackHttp: AllowLoopbackHttpConfig
}).pipe(Config.map(({ merchantInFlight_max, ...settings }) => ({
  ...settings,
  merchantInFlight_max: Option.getOrElse(merchantInFlight_max, () => merchantInFlightDefault(settings.concurrency))
})))

/** `WEBHOOK_SENDER_ENABLED=false` runs the sender as its own process (`node packages/webhooks/src/main.ts`). */
/** Tables the sender writes, whose INSERT grant its database role is checked for at start (checkDatabaseRole). */
export const senderWrittenTables = ["webhook_attempts"] as const

export const SenderEnabledConfig = Config.Boolean("WEBHOOK_SENDER_ENABLED").pipe(Config.withDefault(true))

/** How long a rotated-out secret keeps signing (0: it stops at once). */
export const SECRET_OVERLAP_MS_MAX = 7 * 24 * hour_ms
export const SECRET_OVERLAP_MS_DEFAULT = 24 * hour_ms

/** Figures for operators (exported with the other Effect metrics at /metrics). */
export const webhookAttempts = Metric.counter("webhook_attempts_total", { description: "Webhook requests sent (every attempt)" })
export const webhookAttemptFailures = Metric.counter("webhook_attempt_failures_total", {
  description: "Webhook attempts that did not get a 2xx (network error, timeout, non-2xx)"
})
export const webhookDeliveriesExhausted = Metric.counter("webhook_deliveries_failed_total", {
  description: "Deliveries given up (retries exhausted, or 410 Gone)"
})
export const webhookEndpointsDisabled = Metric.counter("webhook_endpoints_disabled_total", {
  description: "Endpoints disabled by the sender (410 Gone, or failing for longer than the configured period)"
})
export const webhookSecretsUnopenable = Metric.counter("webhook_secrets_unopenable_total", {
  description: "Deliveries not sent because no configured WEBHOOK_SECRETS_KEY opens their endpoint's signing secret"
})
/** In seconds, Prometheus' base unit (promtool refuses abbreviated units such as `_ms` in a name). */
export const webhookOldestPendingAge = Metric.gauge("webhook_oldest_pending_age_seconds", {
  description: "Age of the oldest pending webhook delivery of an enabled endpoint, in seconds (0 when none)"
})
/**
 * How long the most overdue delivery the sender could send now has been waiting past its
 * `next_attempt_at` (due, not leased, endpoint enabled, no earlier event of its payment pending:
 * what the claim would take), in seconds; 0 when none. Above a few seconds: the senders are down
 * or not keeping up. Unlike the oldest pending age, a merchant's failing endpoint does not raise
 * it (its retries wait for their time).
 */
export const webhookOldestOverdue = Metric.gauge("webhook_oldest_overdue_seconds", {
  description: "How long the most overdue sendable webhook delivery has waited past its next attempt time, in seconds (0 when none)"
})
export const webhookLatency = Metric.histogram("webhook_attempt_duration_seconds", {
  description: "Webhook request latency, in seconds",
  boundaries: [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30]
})
