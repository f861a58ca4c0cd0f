// The server's whole output, at its most verbose (LOG_LEVEL=Debug, an access line per request),
// over a run that exercises every route and the error paths, never contains a secret the test
// created or sent: API keys (valid, revoked-looking, wrong), nor the Authorization header.
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { createMerchant, createPayment, newKey, TestServer, testServerLayer } from "./support/TestServer.ts"

const Live = testServerLayer({ env: { LOG_LEVEL: "Debug", HTTP_ACCESS_LOG: "all" } })

layer(Live, { excludeTestServices: true, timeout: "60 seconds" })("logs carry no secrets (real server process)", (it) => {
  it.effect("every secret created or sent is absent from the server's output", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const merchants = [yield* createMerchant("Secrets A"), yield* createMerchant("Secrets B")]
      const wrongKey = `sk_test_${"Z".repeat(32)}`
      for (const m of merchants) {
        const created = yield* createPayment(m, newKey(), { amount: 777, currency: "EUR", payment_method: "pm_card_visa" })
        assert.strictEqual(created.status, 201, created.text)
        const id = String(JSON.parse(created.text).id)
        for (const step of ["authorize", "settle"]) {
          assert.strictEqual((yield* server.request("POST", `/v1/payments/${id}/${step}`, { apiKey: m.apiKey, idempotencyKey: newKey() })).status, 200)
        }
        assert.strictEqual((yield* server.request("GET", `/v1/payments/${id}`, { apiKey: m.apiKey })).status, 200)
        assert.strictEqual((yield* server.request("GET", "/v1/payments?limit=5", { apiKey: m.apiKey })).status, 200)
        assert.strictEqual((yield* server.request("GET", "/v1/balance", { apiKey: m.apiKey })).status, 200)
        // Error paths: malformed body, a foreign payment, an unknown route.
        assert.strictEqual((yield* createPayment(m, newKey(), undefined, { rawBody: "{not json" })).status, 400)
        assert.strictEqual((yield* server.request("GET", "/v1/payments/pay_doesnotexist", { apiKey: m.apiKey })).status, 404)
      }
      assert.strictEqual((yield* server.request("GET", "/v1/payments", { apiKey: wrongKey })).status, 401)
      assert.strictEqual((yield* server.request("GET", "/v1/payments", { headers: { authorization: `Basic ${wrongKey}` } })).status, 401)

      // Give the last access lines time to be written, then read the whole output.
      yield* Effect.sleep(500)
      const output = server.process.output()
      assert.include(output, "Listening on", "the output kept is complete (from the start)")
      assert.include(output, '"level":"DEBUG"', "the run was at its most verbose")
      for (const secret of [...merchants.map((m) => m.apiKey), wrongKey]) {
        assert.notInclude(output, secret)
        assert.notInclude(output, secret.slice("sk_test_".length))
      }
      assert.notMatch(output, /authorization|bearer/i)
    }))
})
