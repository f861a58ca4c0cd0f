/**
 * The webhook sender as a process of its own: `node packages/webhooks/src/main.ts` (run the
 * server with `WEBHOOK_SENDER_ENABLED=false` then). Several may run: they share the deliveries
 * through leases.
 *
 * Environment: CONSUMERS_DATABASE_URL (the role pay_consumer; derived from DATABASE_URL when unset:
 * infra Config.ts), CONSUMERS_DATABASE_POOL_SIZE and the `WEBHOOK_*` settings of `SenderConfig`
 * (Model.ts), WEBHOOK_SECRETS_KEY (the servers' value: SecretSealing.ts). It does not run
 * migrations (the server owns the schema). Its figures (webhook_*, the runtime's) on `/metrics` at
 * METRICS_PORT when that is set; logs as the server's (JSON with trace ids, LOG_LEVEL), traces to
 * OTEL_EXPORTER_OTLP_ENDPOINT when set.
 *
 * SIGTERM/SIGINT: no new claims; the requests in flight finish (each bounded by the timeout) and
 * are recorded. A crash (SIGKILL) leaves them leased: once the leases expire, another sender sends
 * them again with the same webhook-id (receivers deduplicate on it).
 */
import { checkDatabaseRole, ConsumersDatabasePoolMetricsLive, ConsumersPostgresLive, databaseClockLayer, JsonLoggingLive, MetricsServerWhenConfigured, ProcessMetricsLive, runProcessMain, TracingLive } from "@pay/infra"
import { Layer } from "effect"
import { WebhookSender, WebhookSenderLoop } from "./DeliveryWorker.ts"
import { senderWrittenTables } from "./Model.ts"

const SenderProcess = Layer.mergeAll(WebhookSenderLoop.pipe(Layer.provide(WebhookSender.layer)), MetricsServerWhenConfigured, ProcessMetricsLive, ConsumersDatabasePoolMetricsLive).pipe(
  // Retry-After dates are read against the Clock: the database's (infra DatabaseClock.ts).
  Layer.provide(databaseClockLayer("background")),
  Layer.provide(checkDatabaseRole("CONSUMERS_DATABASE_URL", senderWrittenTables).pipe(Layer.provideMerge(ConsumersPostgresLive))),
  Layer.provide(Layer.merge(JsonLoggingLive, TracingLive("payments-webhook-sender")))
)

Layer.launch(SenderProcess).pipe(runProcessMain("webhook sender"))
