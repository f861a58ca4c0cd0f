// One clock: the database's (packages/infra/src/DatabaseClock.ts). An outside clock review ran
// servers skewed with faketime: 8 days behind, the expiry job voided an authorization 2 s after it
// was granted while a settle was still captured; 11 minutes ahead, a valid settle was refused
// `authorization_expired` 9.5 minutes early; a day ahead, every write was refused by 0103 (dated
// past the database's clock). Here the app finds a skewed process clock (its `Clock` below the
// app) and still dates everything by the database's, so the authorization lives its lifetime.
import { assert, layer } from "@effect/vitest"
import { decodeRows, offsetClock } from "@pay/infra"
import { Clock, Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { authorizedPayment, describeAnswer, jsonOf, newKey, settle } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

const day_ms = 24 * 60 * 60 * 1_000
const lifetime_ms = 10 * 60 * 1_000

const Dates = Schema.Struct({ updated_ago_s: Schema.Number, expires_in_s: Schema.Number, events_off_s_max: Schema.Number })
const datesOf = (paymentId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* decodeRows(Dates)(sql`
      SELECT extract(epoch FROM clock_timestamp() - p.updated_at)::float8 AS updated_ago_s,
             extract(epoch FROM p.authorization_expires_at - clock_timestamp())::float8 AS expires_in_s,
             (SELECT max(abs(extract(epoch FROM clock_timestamp() - (o.payload ->> 'occurred_at')::timestamptz)))::float8
              FROM outbox_events o WHERE o.aggregate_id = p.id) AS events_off_s_max
      FROM payments p WHERE p.id = ${paymentId}`)
    return row ?? assert.fail(`no payment ${paymentId}`)
  })

for (const [label, offset_ms] of [["8 days behind", -8 * day_ms], ["a day ahead", day_ms], ["11 minutes ahead", 11 * 60 * 1_000]] as const) {
  const app = inProcessAppLayer({
    localClock: offsetClock(Clock.Clock.defaultValue(), { offset_ms }),
    env: { AUTHORIZATION_LIFETIME_MS: String(lifetime_ms) }
  })
  layer(app, { excludeTestServices: true, timeout: "60 seconds" })(`a server whose own clock is ${label} of the database's`, (it) => {
    it.effect("dates the payment, its authorization's expiry and its events by the database's clock; a settle within the lifetime is captured", () =>
      Effect.gen(function* () {
        const merchant = yield* createMerchant(`Clock ${label}`)
        const id = yield* authorizedPayment(merchant, 1_000n, "EUR")
        const authorized = yield* datesOf(id)
        assert.isBelow(Math.abs(authorized.updated_ago_s), 30, "the authorization is dated now, by the database's clock")
        assert.isAbove(authorized.expires_in_s, lifetime_ms / 1_000 - 30, "it expires a lifetime after the database's now")
        assert.isAtMost(authorized.expires_in_s, lifetime_ms / 1_000 + 1)
        const settled = yield* settle(merchant, id, newKey("settle"))
        assert.strictEqual(settled.status, 200, describeAnswer(settled))
        assert.strictEqual(jsonOf(settled)["status"], "SETTLED")
        assert.isBelow((yield* datesOf(id)).events_off_s_max, 30, "every event of the payment is dated by the database's clock")
      }))
  })
}
