// Webhook endpoints as the application role (`pay_app`, migrations/0012 and 0030), the way the
// server runs: the other endpoint tests run as the schema owner, which hid a row lock on
// `merchants` that pay_app may not take (found by the chaos run: every creation answered 503).
import { assert, layer } from "@effect/vitest"
import { postgresLayer } from "@pay/infra"
import { acquireTestDatabase } from "@pay/testkit"
import { Effect, Layer, Redacted } from "effect"
import { WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"
import { SqlClient } from "effect/sql"
import { WebhookEndpoints } from "../src/Endpoints.ts"
import { ENDPOINTS_PER_MERCHANT_MAX } from "../src/Model.ts"
import { createMerchant } from "./support/Fixtures.ts"

const AppRoleDatabase = Layer.unwrap(
  Effect.gen(function* () {
    const info = yield* acquireTestDatabase
    const url = new URL(info.url)
    url.username = "pay_app"
    url.password = ""
    return postgresLayer({ url: Redacted.make(url.toString()), maxConnections: 8, applicationName: "pay-test-webhooks-app-role" })
  })
)

const AppRoleLayer = WebhookEndpoints.layerWith({ allowLoopbackHttp: true }).pipe(Layer.provideMerge(AppRoleDatabase))

layer(AppRoleLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true, timeout: "60 seconds" })("webhook endpoints as the application role (pay_app)", (it) => {
  it.effect("pay_app creates and rotates endpoints; concurrent creations still stop at the per-merchant limit", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [me] = yield* sql<{ user: string }>`SELECT current_user AS user`
      assert.strictEqual(me?.user, "pay_app")
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      const { endpoint } = yield* endpoints.create(merchantId, { url: "https://merchant.example/hooks", event_types: ["*"] })
      const rotated = yield* endpoints.rotateSecret(merchantId, endpoint.id, 0)
      assert.notStrictEqual(rotated.secret, "")
      // More concurrent creations than the limit allows: the lock serializes them, so exactly the limit succeeds.
      const attempts = yield* Effect.forEach(
        Array.from({ length: ENDPOINTS_PER_MERCHANT_MAX + 4 }, (_, i) => i),
        (i) => Effect.result(endpoints.create(merchantId, { url: `https://merchant.example/${i}`, event_types: ["*"] })),
        { concurrency: 8 }
      )
      const created = attempts.filter((attempt) => attempt._tag === "Success").length
      const refused = attempts.filter((attempt) => attempt._tag === "Failure" && attempt.failure._tag === "WebhookEndpointLimitReached").length
      assert.deepStrictEqual([created, refused], [ENDPOINTS_PER_MERCHANT_MAX - 1, 5])
    }))
})
