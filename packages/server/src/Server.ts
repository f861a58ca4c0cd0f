import { NodeHttpServer } from "@effect/platform-node"
import { PaymentsApi } from "@pay/api"
import { DatabaseLive, HttpPort, Redis } from "@pay/infra"
import { Effect, Layer, Logger } from "effect"
import { HttpRouter } from "effect/http"
import { HttpApiBuilder, HttpApiScalar } from "effect/http-api"
import { createServer } from "node:http"
import { Readiness } from "./health/Readiness.ts"
import { SystemHandlers } from "./health/http.ts"

/** The API's routes: the contract, its handlers, `/openapi.json` and a docs page at `/docs`. */
export const ApiRoutes = Layer.mergeAll(
  HttpApiBuilder.layer(PaymentsApi, { openapiPath: "/openapi.json" }).pipe(Layer.provide(SystemHandlers)),
  HttpApiScalar.layer(PaymentsApi, { path: "/docs" })
)

export const ReadinessLive = Readiness.layerWith([Readiness.postgresProbe, Readiness.redisProbe])

/** The dependencies: a migrated Postgres, Redis. Swapped wholesale by fault-injection tests. */
export const DependenciesLive = Layer.mergeAll(DatabaseLive, Redis.layer)

export const HttpServerLive = Layer.unwrap(
  Effect.gen(function* () {
    const port = yield* HttpPort
    return NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" })
  })
)

/** JSON logs, one event per line. */
export const LoggingLive = Logger.layer([Logger.consoleJson])

export const ServerLive = HttpRouter.serve(ApiRoutes).pipe(
  Layer.provide(ReadinessLive),
  Layer.provide(DependenciesLive),
  Layer.provide(HttpServerLive),
  Layer.provide(LoggingLive)
)
