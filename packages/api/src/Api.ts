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
    servers: [{ url: "http://127.0.0.1:3000", description: "scripts/run.sh on this machine (PORT)" }],
    transform: contractTransform
  }))
{}
