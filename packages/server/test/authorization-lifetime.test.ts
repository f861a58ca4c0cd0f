// A configurable authorization lifetime and the warning before it ends (issue 19), over HTTP on the
// in-process app: with AUTHORIZATION_LIFETIME_MS = 1 h an authorization answers
// authorization_expires_at one hour after it was approved, and the server's expiry job (every
// second, lead 2 h) writes payment_expiring for it once. Out-of-bounds settings are refused at
// start-up with a message naming the variable.
import { assert, describe, layer, it } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { type Config, ConfigProvider, DateTime, Duration, Effect, Result, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { AuthorizationLifetimeConfig, ExpiryInterval, ExpiryWarningLead } from "../src/workers/AuthorizationExpiry.ts"
import { authorizedPayment, get, jsonOf } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const hour_ms = 3_600_000

const env = { AUTHORIZATION_LIFETIME_MS: String(hour_ms), EXPIRY_WARNING_LEAD_MS: String(2 * hour_ms), EXPIRY_INTERVAL_MS: "1000" }

const warningsOf = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* decodeRows(Schema.Struct({ event_type: Schema.String }))(sql`
      SELECT event_type FROM outbox_events WHERE aggregate_id = ${paymentId} AND event_type = 'payment_expiring'`)
  })

layer(inProcessAppLayer({ env }), { excludeTestServices: true, timeout: "90 seconds" })("authorization lifetime (in-process app over HTTP)", (it) => {
  it.effect("AUTHORIZATION_LIFETIME_MS = 1 h: the authorization expires an hour after it was approved; the job warns once (payment_expiring)", () =>
    Effect.gen(function* () {
      const merchant = yield* createMerchant("Lifetime")
      const before = yield* DateTime.now
      const id = yield* authorizedPayment(merchant, 1_500n, "EUR")
      const after = yield* DateTime.now
      const answer = yield* get(merchant, `/v1/payments/${id}`)
      const expiresAt = Date.parse(String(jsonOf(answer)["authorization_expires_at"]))
      assert.isAtLeast(expiresAt, before.epochMilliseconds + hour_ms)
      assert.isAtMost(expiresAt, after.epochMilliseconds + hour_ms)
      // The job runs every second: wait (bounded) for its warning, then for one more run.
      let warnings = 0
      for (let attempt = 0; attempt < 60 && warnings === 0; attempt++) {
        yield* Effect.sleep(Duration.millis(500))
        warnings = (yield* warningsOf(id)).length
      }
      assert.strictEqual(warnings, 1, "warned")
      yield* Effect.sleep(Duration.millis(2_500))
      assert.strictEqual((yield* warningsOf(id)).length, 1, "once per payment, whatever the runs")
    }))
})

const refusal = <A>(config: Config.Config<A>, values: Record<string, string>) =>
  Effect.gen(function* () {
    const result = yield* Effect.result(config.parse(ConfigProvider.fromEnv({ env: values })))
    return Result.isFailure(result) ? String(result.failure) : assert.fail(`accepted ${JSON.stringify(values)}`)
  })

describe("authorization lifetime settings", () => {
  it.effect("defaults 7 days and 24 h; out-of-bounds values are refused with the variable's name and bounds", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* AuthorizationLifetimeConfig.parse(ConfigProvider.fromEnv({ env: {} })), 7 * 24 * hour_ms)
      assert.strictEqual(yield* ExpiryWarningLead.parse(ConfigProvider.fromEnv({ env: {} })), 24 * hour_ms)
      assert.include(yield* refusal(AuthorizationLifetimeConfig, { AUTHORIZATION_LIFETIME_MS: "59999" }), "AUTHORIZATION_LIFETIME_MS must be an integer between 60000 and 2592000000")
      assert.include(yield* refusal(AuthorizationLifetimeConfig, { AUTHORIZATION_LIFETIME_MS: "2592000001" }), "AUTHORIZATION_LIFETIME_MS must be an integer between")
      assert.include(yield* refusal(ExpiryWarningLead, { EXPIRY_WARNING_LEAD_MS: "-1" }), "EXPIRY_WARNING_LEAD_MS must be an integer between 0 and 2592000000")
      // 1..999 ms used to pass the configuration and kill the server when the loop started.
      assert.include(yield* refusal(ExpiryInterval, { EXPIRY_INTERVAL_MS: "500" }), "EXPIRY_INTERVAL_MS must be 0 (off) or an integer between 1000 and 86400000")
      assert.include(yield* refusal(ExpiryInterval, { EXPIRY_INTERVAL_MS: "86400001" }), "EXPIRY_INTERVAL_MS must be 0 (off)")
      assert.strictEqual(yield* ExpiryInterval.parse(ConfigProvider.fromEnv({ env: { EXPIRY_INTERVAL_MS: "0" } })), 0)
      assert.strictEqual(yield* ExpiryInterval.parse(ConfigProvider.fromEnv({ env: {} })), 60_000)
    }))
})
