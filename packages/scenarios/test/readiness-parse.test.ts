import { assert, describe, it } from "@effect/vitest"
import { unavailableIn } from "@pay/scenarios/scenarios/Dependencies"

/** redis-down and kafka-down expect `/health/ready` to name the dependency they took away: the parse must find it, and only it. */
describe("readiness answer: the unavailable list", () => {
  it("names what /health/ready lists as unavailable, nothing for a ready answer", () => {
    assert.deepStrictEqual(unavailableIn(`{"detail":"not ready: redis does not answer","code":"dependency_unavailable","unavailable":["redis"],"checks":[]}`), ["redis"])
    assert.deepStrictEqual(unavailableIn(`{"unavailable":["redis","kafka"]}`), ["redis", "kafka"])
    assert.deepStrictEqual(unavailableIn(`{"status":"ready","checks":[{"name":"redis","status":"up"}]}`), [])
    assert.deepStrictEqual(unavailableIn(`{"unavailable":[]}`), [])
  })
})
