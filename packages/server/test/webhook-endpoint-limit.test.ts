// The per-merchant endpoint limit is a quota, not a bad value: an outside tester got its 17th
// endpoint refused as `400 invalid_request` with `field: "url"`, which reads like a bad URL. It is
// `409 webhook_endpoint_limit_reached` (no field), stored for its key, with its own problem page.
import { assert, layer } from "@effect/vitest"
import { problemContentType } from "@pay/api"
import { ENDPOINTS_PER_MERCHANT_MAX } from "@pay/webhooks"
import { Effect } from "effect"
import { Api, codeOf, describeAnswer, jsonOf, newKey, post, replayed } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const register = (m: Parameters<typeof post>[0], key: string, i: number) =>
  post(m, "/v1/webhook_endpoints", key, { json: { url: `https://merchant.example/hooks/${i}`, event_types: ["*"] } })

layer(inProcessAppLayer(), { excludeTestServices: true, timeout: "60 seconds" })("webhook endpoint limit (in-process app over HTTP)", (it) => {
  it.effect("the 17th endpoint is 409 webhook_endpoint_limit_reached (disabled ones count), replayed for its key; after a delete a new key registers it", () =>
    Effect.gen(function* () {
      const api = yield* Api
      const m = yield* createMerchant("Webhook limit")
      const ids: Array<string> = []
      for (let i = 0; i < ENDPOINTS_PER_MERCHANT_MAX; i++) {
        const created = yield* register(m, newKey("wh"), i)
        assert.strictEqual(created.status, 201, describeAnswer(created))
        ids.push(String(jsonOf(created)["id"]))
      }
      const disabled = yield* post(m, `/v1/webhook_endpoints/${ids[0]}/disable`, newKey("wh"))
      assert.strictEqual(disabled.status, 200, describeAnswer(disabled))
      const key = newKey("wh")
      const over = yield* register(m, key, ENDPOINTS_PER_MERCHANT_MAX)
      assert.deepStrictEqual(
        [over.status, over.headers.get("content-type"), codeOf(over), jsonOf(over)["type"], "field" in jsonOf(over)],
        [409, problemContentType, "webhook_endpoint_limit_reached", "/docs/problems/webhook_endpoint_limit_reached", false],
        describeAnswer(over)
      )
      assert.match(String(jsonOf(over)["detail"]), /at most 16 webhook endpoints per merchant/)
      const again = yield* register(m, key, ENDPOINTS_PER_MERCHANT_MAX)
      assert.deepStrictEqual([again.status, again.text, replayed(again)], [409, over.text, true], "a decided refusal is stored for its key")
      const page = yield* api.request("GET", "/docs/problems/webhook_endpoint_limit_reached")
      assert.strictEqual(page.status, 200, describeAnswer(page))
      assert.include(page.text, "HTTP 409 Conflict")
      const removed = yield* api.request("DELETE", `/v1/webhook_endpoints/${ids[1]}`, { apiKey: m.apiKey })
      assert.strictEqual(removed.status, 200, describeAnswer(removed))
      const afterDelete = yield* register(m, newKey("wh"), ENDPOINTS_PER_MERCHANT_MAX)
      assert.strictEqual(afterDelete.status, 201, describeAnswer(afterDelete))
    }))
})
