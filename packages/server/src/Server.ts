import { NodeHttpServer } from "@effect/platform-node"
import { PaymentsApi } from "@pay/api"
import { type Acquirer, AcquirerSimulator } from "@pay/acquirer"
import { IdempotencyKeys } from "@pay/idempotency"
import { DatabaseLive, HttpPort, KafkaAdmin, KafkaProducer, Redis } from "@pay/infra"
import { OutboxPublisherLive, OutboxWriter } from "@pay/outbox"
import { Ledger } from "@pay/ledger"
import { ApiKeys } from "@pay/merchants"
import { PaymentRepository, PaymentUseCases } from "@pay/payments"
import { FeeSchedules, MerchantBalances, SettlementPosting } from "@pay/settlement"
import { SenderEnabledConfig, WebhookDeliveries, WebhookEndpoints, WebhookSender, WebhookSenderLoop } from "@pay/webhooks"
import { Config, Effect, Layer, Logger } from "effect"
import { HttpRouter } from "effect/http"
import { SqlClient } from "effect/sql"
import { HttpApiBuilder, HttpApiScalar } from "effect/http-api"
import { PrometheusMetrics } from "effect/observability"
import { createServer } from "node:http"
import { Readiness } from "./health/Readiness.ts"
import { SystemHandlers } from "./health/http.ts"
import { AuthorizationLive } from "./http/Authorization.ts"
import { PaymentsHandlers } from "./payments/http.ts"
import { WebhooksHandlers } from "./webhooks/http.ts"
import { IdempotencyWorkersLive } from "./workers/IdempotencyWorkers.ts"

/**
 * The seams where fault-injection tests swap a Layer: the acquirer (captures then fails, answers
 * lost), the settlement posting (fails mid-way), and the dependencies themselves.
 */
export interface AppOptions {
  readonly acquirer?: Layer.Layer<Acquirer, unknown, never> | undefined
  readonly settlement?: Layer.Layer<SettlementPosting, unknown, never> | undefined
}

/** The dependencies: a migrated Postgres, Redis and Kafka. */
export const DependenciesLive = Layer.mergeAll(DatabaseLive, Redis.layer, KafkaAdmin.layer, KafkaProducer.layer)

export const ReadinessLive = Readiness.layerWith([Readiness.postgresProbe, Readiness.redisProbe, Readiness.kafkaProbe])

/** Everything the handlers use, above the dependencies. */
const servicesLayer = (options: AppOptions) =>
  Layer.mergeAll(PaymentUseCases.layer, MerchantBalances.layer, ApiKeys.layer, ReadinessLive, WebhookEndpoints.layer, WebhookDeliveries.layer).pipe(
    Layer.provideMerge(Layer.mergeAll(PaymentRepository.layer, IdempotencyKeys.layer)),
    Layer.provide(options.acquirer ?? AcquirerSimulator.layer),
    Layer.provide(options.settlement ?? SettlementPosting.layer.pipe(Layer.provide([Ledger.layer, FeeSchedules.layer]))),
    Layer.provide(OutboxWriter.layer)
  )

/** The API's routes: the contract, its handlers, `/openapi.json` and a docs page at `/docs`. */
export const apiRoutes =
  Layer.mergeAll(
    HttpApiBuilder.layer(PaymentsApi, { openapiPath: "/openapi.json" }).pipe(
      Layer.provide([SystemHandlers, Layer.mergeAll(PaymentsHandlers, WebhooksHandlers).pipe(Layer.provide(AuthorizationLive))])
    ),
    HttpApiScalar.layer(PaymentsApi, { path: "/docs" }),
    // Operators: every Effect metric (outbox backlog and age, publish counters, latencies) in the
    // Prometheus text format.
    PrometheusMetrics.layerHttp({ path: "/metrics" })
  )

/**
 * The listening socket. It asks for the dependencies before it listens, so it is built after
 * them: a connection accepted while migrations or broker connections are still in progress would
 * otherwise sit unanswered (the socket listens before any request handler is attached).
 */
export const HttpServerLive = Layer.unwrap(
  Effect.gen(function* () {
    yield* SqlClient.SqlClient
    yield* Redis
    yield* KafkaProducer
    const port = yield* HttpPort
    return NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" })
  })
)

/**
 * The outbox publisher runs inside the server unless `OUTBOX_PUBLISHER_ENABLED=false` (then run
 * `node packages/outbox/src/main.ts` as its own process, as many as wanted: they share the work).
 */
export const PublisherLive = Layer.unwrap(
  Effect.map(
    Config.Boolean("OUTBOX_PUBLISHER_ENABLED").pipe(Config.withDefault(true)),
    (enabled) => (enabled ? OutboxPublisherLive : Layer.empty)
  )
)

/**
 * The webhook sender runs inside the server unless `WEBHOOK_SENDER_ENABLED=false` (then run
 * `node packages/webhooks/src/main.ts`, as many as wanted: they share the work by leases).
 */
export const WebhookSenderLive = Layer.unwrap(
  Effect.map(SenderEnabledConfig, (enabled) => (enabled ? WebhookSenderLoop.pipe(Layer.provide(WebhookSender.layer)) : Layer.empty))
)

/** JSON logs, one event per line. */
export const LoggingLive = Logger.layer([Logger.consoleJson])

/**
 * The HTTP app and its background workers (idempotency completer and reaper) on top of given
 * dependencies (tests pass a test database and prefixes). One instance of each service is shared.
 */
export const appLayer = (options: AppOptions = {}) =>
  Layer.mergeAll(HttpRouter.serve(apiRoutes), IdempotencyWorkersLive, PublisherLive, WebhookSenderLive).pipe(
    Layer.provide(servicesLayer(options))
  )

export const ServerLive = appLayer().pipe(
  Layer.provide(HttpServerLive),
  Layer.provideMerge(DependenciesLive),
  Layer.provide(LoggingLive)
)
