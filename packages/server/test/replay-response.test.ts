// The HTTP form of a stored response (packages/server/src/http/StoredResponse.ts): the first answer
// and every replay are the same bytes; only the replay is marked.
import { assert, describe, it } from "@effect/vitest"
import { toHttpServerResponse } from "../src/http/StoredResponse.ts"

describe("HTTP response of an idempotent request", () => {
  const response = { status: 201, contentType: "application/json; charset=utf-8", body: "{\"note\":\"café ✓\"}  \n" }

  it("the first answer and the replay carry the same status, content type and bytes; only the replay is marked", () => {
    const first = toHttpServerResponse({ _tag: "Executed", response, resumed: false })
    const replay = toHttpServerResponse({ _tag: "Replayed", response, decidedBy: "postgres" })
    for (const r of [first, replay]) {
      assert.strictEqual(r.status, 201)
      assert.strictEqual(r.body._tag, "Uint8Array")
      if (r.body._tag === "Uint8Array") {
        assert.isTrue(Buffer.from(r.body.body).equals(Buffer.from(response.body, "utf8")))
        assert.strictEqual(r.body.contentType, response.contentType)
      }
    }
    assert.strictEqual(replay.headers["idempotent-replayed"], "true")
    assert.isUndefined(first.headers["idempotent-replayed"])
  })
})
