// The /docs page is public and heavy (Scalar's script inline, ~3.5 MB a request): a deployment
// that publishes its reference elsewhere turns it off with API_DOCS_PAGE_ENABLED=false. Then /docs
// is an unknown path like any other, and /openapi.json is still served.
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Api, codeOf, describeAnswer } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"

layer(inProcessAppLayer({ env: { API_DOCS_PAGE_ENABLED: "false" } }), { excludeTestServices: true, timeout: "60 seconds" })("the /docs page turned off (in-process app over HTTP)", (it) => {
  it.effect("API_DOCS_PAGE_ENABLED=false: GET /docs is 404 route_not_found, GET /openapi.json is 200", () =>
    Effect.gen(function* () {
      const api = yield* Api
      const page = yield* api.request("GET", "/docs")
      assert.strictEqual(page.status, 404, describeAnswer(page))
      assert.strictEqual(codeOf(page), "route_not_found")
      const document = yield* api.request("GET", "/openapi.json")
      assert.strictEqual(document.status, 200, describeAnswer(document))
      assert.isAbove(document.text.length, 1_000)
    }))
})
