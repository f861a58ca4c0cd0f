import { HttpApi, OpenApi } from "effect/http-api"
import { contractTransform } from "./OpenApiContract.ts"
import { PaymentsGroup } from "./PaymentsApi.ts"
import { SystemApi } from "./SystemApi.ts"
import { WebhooksGroup } from "./WebhooksApi.ts"

/** The platform's HTTP contract. Handlers live in `@pay/server`. */
export class PaymentsApi extends HttpApi.make("payments-api")
  .add(SystemApi)
  .add(PaymentsGroup)
  .add(WebhooksGroup)
  .annotateMerge(OpenApi.annotations({
    title: "Payments and Ledger API",
    version: "1.0.0",
    description: "Create, authorize and settle payments. Every POST requires an Idempotency-Key. " +
      "Errors are RFC 9457 problems (application/problem+json) with a stable `code`; every answer carries a `Request-Id`.",
    // Relative (OpenAPI 3.1 §4.8.5): the server that served this document, whatever its host and
    // port. A fixed URL sent every generated client to one machine's default port (outside
    // integrator review: on this machine, another instance with other keys and data).
    servers: [{ url: "/", description: "The server that served this document" }],
    transform: contractTransform
  }))
{}
