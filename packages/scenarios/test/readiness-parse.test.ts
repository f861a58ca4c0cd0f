import { assert, describe, it } from "@effect/vitest"
import { degradedIn, unavailableIn } from "@pay/scenarios/scenarios/Dependencies"

/** redis-down and kafka-down expect `/health/ready` to name the dependency they took away: the parse must find it, and only it. */
describe("readiness answer: the unavailable list", () => {
  it("names what /health/ready lists as unavailable, nothing for a ready answer", () => {
    assert.deepStrictEqual(unavailableIn(`{"detail":"not ready: redis does not answer","code":"dependency_unavailable","unavailable":["redis"],"checks":[]}`), ["redis"])
    assert.deepStrictEqual(unavailableIn(`{"unavailable":["redis","kafka"]}`), ["redis", "kafka"])
    assert.deepStrictEqual(unavailableIn(`{"status":"ready","checks":[{"name":"redis","status":"up"}]}`), [])
    assert.deepStrictEqual(unavailableIn(`{"unavailable":[]}`), [])
  })

  it("names what a 200 /health/ready lists as degraded, nothing when ready", () => {
    assert.deepStrictEqual(degradedIn(`{"status":"degraded","degraded":["redis"],"checks":[{"name":"redis","status":"down"}]}`), ["redis"])
    assert.deepStrictEqual(degradedIn(`{"status":"degraded","degraded":["redis","kafka"],"checks":[]}`), ["redis", "kafka"])
    assert.deepStrictEqual(degradedIn(`{"status":"ready","degraded":[],"checks":[]}`), [])
  })
})
