import cluster from "node:cluster"
import { NodeHttpServer } from "@effect/platform-node"
import { PaymentsApi } from "@pay/api"
import { type Acquirer, AcquirerSimulator } from "@pay/acquirer"
import { IdempotencyKeys, ParkedKeys } from "@pay/idempotency"
import { ConsumersEnabled, ConsumersLive, consumersWrittenTables } from "@pay/consumers"
import {
  checkDatabaseRole,
  ConsumersPostgresLive,
  DatabaseClockLive,
  DatabaseLive,
  ConsumersDatabasePoolMetricsLive,
  DatabasePoolMetricsLive,
  HttpPort,
  JsonLoggingLive,
  KafkaAdmin,
  KafkaConsumer,
  KafkaProducer,
  MetricsServerLive,
  ProcessMetricsLive,
  PublisherDatabasePoolMetricsLive,
  PublisherPostgresLive,
  Redis,
  TracingLive
} from "@pay/infra"
import { OutboxPublisherLive, OutboxWriter, PublisherRoleCheck } from "@pay/outbox"
import { Ledger } from "@pay/ledger"
import { ApiKeys } from "@pay/merchants"
import { PaymentExpiry, PaymentRepository, PaymentUseCases } from "@pay/payments"
import { FeeSchedules, MerchantBalances, RefundPosting, SettlementPosting } from "@pay/settlement"
import { SenderEnabledConfig, senderWrittenTables, WebhookDeliveries, WebhookEndpoints, WebhookSender, WebhookSenderLoop } from "@pay/webhooks"
import { Config, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { HttpApiBuilder, HttpApiScalar } from "effect/http-api"
import { Readiness } from "./health/Readiness.ts"
import { SystemHandlers } from "./health/http.ts"
import { AuthorizationLive } from "./http/Authorization.ts"
import { EdgeMiddleware } from "./http/Edge.ts"
import { ProblemPagesRoute } from "./http/ProblemPages.ts"
import { MerchantInFlight } from "./http/MerchantInFlight.ts"
import { RateLimits } from "./http/RateLimits.ts"
import { createLimitedServer, SocketLimitsConfig } from "./http/Socket.ts"
import { serveObserved } from "./http/Observability.ts"
import { PaymentsHandlers } from "./payments/http.ts"
import { WebhooksHandlers } from "./webhooks/http.ts"
import { IdempotencyWorkersLive } from "./workers/IdempotencyWorkers.ts"
import { AuthorizationExpiryLive, AuthorizationLifetimeLive } from "./workers/AuthorizationExpiry.ts"
import { LedgerAuditLive } from "./workers/LedgerAudit.ts"
import { LeaseCheckLive } from "./LeaseCheck.ts"

/**
 * The seams where fault-injection tests swap a Layer: the acquirer (captures then fails, answers
 * lost), the settlement posting (fails mid-way), and the dependencies themselves.
 */
export interface AppOptions {
  readonly acquirer?: Layer.Layer<Acquirer, unknown, never> | undefined
  readonly settlement?: Layer.Layer<SettlementPosting, unknown, never> | undefined
  /**
   * The consumers' and webhook sender's own client (the role `pay_consumer`: migrations/0096). The
   * server passes `ConsumersPostgresLive`; absent (tests on a test database as its owner), they
   * share the API's client.
   */
  readonly consumersDatabase?: Layer.Layer<SqlClient.SqlClient, unknown, never> | undefined
  /**
   * The outbox publisher's own client (the role `pay_publisher`: migrations/0108). The server passes
   * `PublisherPostgresLive`; absent (tests on a test database as its owner), it shares the API's client.
   */
  readonly publisherDatabase?: Layer.Layer<SqlClient.SqlClient, unknown, never> | undefined
}

/** The dependencies: a migrated Postgres, Redis and Kafka. */
export const DependenciesLive = Layer.mergeAll(DatabaseLive, Redis.layer, KafkaAdmin.layer, KafkaProducer.layer, KafkaConsumer.layer)

export const ReadinessLive = Readiness.layerWith<SqlClient.SqlClient | Redis | KafkaAdmin>([
  Readiness.postgresProbe,
  Readiness.redisProbe,
  Readiness.kafkaProbe
])

/** Everything the handlers use, above the dependencies. */
const servicesLayer = (options: AppOptions) =>
  Layer.mergeAll(PaymentUseCases.layer, PaymentExpiry.layer, MerchantBalances.layer, ApiKeys.layer, ReadinessLive, RateLimits.layer, MerchantInFlight.layer, WebhookEndpoints.layer, WebhookDeliveries.layer).pipe(
    Layer.provideMerge(Layer.mergeAll(PaymentRepository.layer, IdempotencyKeys.layer, ParkedKeys.layer)),
    Layer.provide(options.acquirer ?? AcquirerSimulator.layer),
    Layer.provide(options.settlement ?? SettlementPosting.layer.pipe(Layer.provide([Ledger.layer, FeeSchedules.layer]))),
    Layer.provide(RefundPosting.layer.pipe(Layer.provide(Ledger.layer))),
    Layer.provide(OutboxWriter.layer),
    Layer.provide(AuthorizationLifetimeLive)
  )

/**
 * The API reference page at `/docs` unless `API_DOCS_PAGE_ENABLED=false`. It is public and heavy
 * (Scalar's script inline: ~3.5 MB and ~40 ms of the server's CPU per request, found by an outside
 * tester as an unauthenticated way to slow everyone down): a deployment that publishes its API
 * reference elsewhere (a docs site, a CDN) turns it off, and `/docs` is then `route_not_found`.
 * `/openapi.json` (what generated clients read, ~0.54 MB) is always served.
 */
const DocsPageLive = Layer.unwrap(
  Effect.map(
    Config.Boolean("API_DOCS_PAGE_ENABLED").pipe(Config.withDefault(true)),
    (enabled) => (enabled ? HttpApiScalar.layer(PaymentsApi, { path: "/docs" }) : Layer.empty)
  )
)

/** The API's routes: the contract, its handlers, `/openapi.json` and a docs page at `/docs`. */
export const apiRoutes =
  Layer.mergeAll(
    HttpApiBuilder.layer(PaymentsApi, { openapiPath: "/openapi.json" }).pipe(
      Layer.provide([SystemHandlers, Layer.mergeAll(PaymentsHandlers, WebhooksHandlers).pipe(Layer.provide(AuthorizationLive))])
    ),
    DocsPageLive,
    // The page each problem `type` resolves to.
    ProblemPagesRoute,
    // Router-level refusals as problem documents, and a Request-Id on every response.
    EdgeMiddleware
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
    const limits = yield* SocketLimitsConfig
    return NodeHttpServer.layer(createLimitedServer(limits), { port, host: "127.0.0.1", ...clusterListenOptions() })
  })
)

/**
 * In a cluster worker (SERVER_INSTANCES > 1), a listening socket of its own on the shared port
 * (SO_REUSEPORT: the kernel spreads new connections over the instances' sockets) instead of
 * node:cluster's default, where the primary accepts every connection and hands it to a worker in
 * turn: a connection handed to a worker as it died was neither closed nor given to another, and
 * its client waited for ever (outside retrying client's review: about one per kill -9, each also
 * a socket left in CLOSE-WAIT in the primary). A dying worker's own queue is closed with it: its
 * clients see a reset and retry. Linux 3.9+.
 */
const clusterListenOptions = (): { readonly exclusive?: true; readonly reusePort?: true } =>
  // Elsewhere (macOS, Windows: no load-balancing SO_REUSEPORT, and Node refuses the option) the
  // primary's hand-off, with its flaw (docs/scaling.md).
  cluster.isWorker && process.platform === "linux" ? { exclusive: true, reusePort: true } : {}

/**
 * The outbox publisher runs inside the server unless `OUTBOX_PUBLISHER_ENABLED=false` (then run
 * `node packages/outbox/src/main.ts` as its own process, as many as wanted: they share the work),
 * over its own client when one is given (AppOptions.publisherDatabase), whose role's grants are
 * checked first: a wrong PUBLISHER_DATABASE_URL stops the server at start, naming it. A server with
 * the publisher off opens no connection as its role.
 */
const publishingSide = (options: AppOptions) =>
  Layer.unwrap(
    Effect.map(Config.Boolean("OUTBOX_PUBLISHER_ENABLED").pipe(Config.withDefault(true)), (enabled) => {
      const { publisherDatabase } = options
      if (!enabled) return Layer.empty
      if (publisherDatabase === undefined) return OutboxPublisherLive
      return Layer.merge(OutboxPublisherLive, PublisherDatabasePoolMetricsLive).pipe(
        Layer.provide(PublisherRoleCheck.pipe(Layer.provideMerge(publisherDatabase)))
      )
    })
  )

/**
 * The consumers (the settlement projection, docs/consumers.md) run inside the server unless
 * `CONSUMERS_ENABLED=false` (then run `node packages/consumers/src/main.ts`, as many as wanted:
 * they share the partitions of the group). Their lag is the `consumer_lag_records` gauge on /metrics.
 */
export { ConsumersLive }

/**
 * The webhook sender runs inside the server unless `WEBHOOK_SENDER_ENABLED=false` (then run
 * `node packages/webhooks/src/main.ts`, as many as wanted: they share the work by leases).
 */
export const WebhookSenderLive = Layer.unwrap(
  Effect.map(SenderEnabledConfig, (enabled) => (enabled ? WebhookSenderLoop.pipe(Layer.provide(WebhookSender.layer)) : Layer.empty))
)

/**
 * JSON logs, one event per line, with trace and span ids and the request's correlation id
 * (`LOG_LEVEL`); spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
 */
export const LoggingLive = Layer.merge(JsonLoggingLive, TracingLive("payments-api"))

/**
 * A path id up to this many characters reaches its handler (which answers `payment_not_found` for
 * anything that is not a payment id); a longer segment is `route_not_found`. Paths match as the
 * document writes them: `/V1/Payments` or `/v1//payments` name no route (the router's defaults
 * folded case and doubled slashes, which the document does not; outside API review).
 */
const routerConfig = { maxParamLength: 500, caseSensitive: true, ignoreDuplicateSlashes: false }

/**
 * The consumers and the webhook sender, over their own client when one is given
 * (AppOptions.consumersDatabase) and at least one of them runs here: a server with both off
 * (CONSUMERS_ENABLED=false, WEBHOOK_SENDER_ENABLED=false) opens no connection as their role. Its
 * role's grants are checked first (checkDatabaseRole): a wrong CONSUMERS_DATABASE_URL stops the
 * server at start, naming it.
 */
const consumingSide = (options: AppOptions) => {
  const workers = Layer.mergeAll(ConsumersLive, WebhookSenderLive)
  const { consumersDatabase } = options
  if (consumersDatabase === undefined) return workers
  return Layer.unwrap(
    Effect.map(Config.all([ConsumersEnabled, SenderEnabledConfig]), ([consumers, sender]) =>
      consumers || sender
        ? Layer.merge(workers, ConsumersDatabasePoolMetricsLive).pipe(Layer.provide(checkDatabaseRole("CONSUMERS_DATABASE_URL", [
          ...(consumers ? consumersWrittenTables : []),
          ...(sender ? senderWrittenTables : [])
        ]).pipe(Layer.provideMerge(consumersDatabase))))
        : workers)
  )
}

/**
 * The HTTP app and its background workers (idempotency completer and reaper) on top of given
 * dependencies (tests pass a test database and prefixes). One instance of each service is shared.
 */
export const appLayer = (options: AppOptions = {}) =>
  Layer.mergeAll(serveObserved(apiRoutes, { routerConfig }), IdempotencyWorkersLive, publishingSide(options), consumingSide(options), ProcessMetricsLive, DatabasePoolMetricsLive).pipe(
    Layer.merge(LedgerAuditLive.pipe(Layer.provide(Ledger.layer))),
    Layer.merge(AuthorizationExpiryLive),
    Layer.merge(LeaseCheckLive),
    Layer.provide(servicesLayer(options)),
    // Every instant this app writes or compares is the database's (infra DatabaseClock.ts).
    Layer.provide(DatabaseClockLive)
  )

export const ServerLive = appLayer({ consumersDatabase: ConsumersPostgresLive, publisherDatabase: PublisherPostgresLive }).pipe(
  // The database clock's first reading before the socket listens (the same layer as appLayer's,
  // built once): connections queued on a restarted instance's socket wait for nothing but the
  // handlers (a kill -9 amid new connections left 5 of 1,771 waiting over 8 s on a loaded machine).
  Layer.provide(HttpServerLive.pipe(Layer.provide(DatabaseClockLive))),
  Layer.merge(MetricsServerLive),
  Layer.provideMerge(DependenciesLive),
  Layer.provide(LoggingLive)
)
