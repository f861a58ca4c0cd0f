/**
 * The webhook sender as a process of its own: `node packages/webhooks/src/main.ts` (run the
 * server with `WEBHOOK_SENDER_ENABLED=false` then). Several may run: they share the deliveries
 * through leases.
 *
 * Environment: DATABASE_URL, DATABASE_POOL_SIZE and the `WEBHOOK_*` settings of `SenderConfig`
 * (Model.ts). It does not run migrations (the server owns the schema).
 *
 * SIGTERM/SIGINT: no new claims; the requests in flight finish (each bounded by the timeout) and
 * are recorded. A crash (SIGKILL) leaves them leased: once the leases expire, another sender sends
 * them again with the same webhook-id (receivers deduplicate on it).
 */
import { NodeRuntime } from "@effect/platform-node"
import { PostgresLive } from "@pay/infra"
import { Layer, Logger } from "effect"
import { WebhookSender, WebhookSenderLoop } from "./DeliveryWorker.ts"

const SenderProcess = WebhookSenderLoop.pipe(
  Layer.provide(WebhookSender.layer),
  Layer.provide(PostgresLive),
  Layer.provide(Logger.layer([Logger.consoleJson]))
)

Layer.launch(SenderProcess).pipe(NodeRuntime.runMain)
