import { decodeRows } from "@pay/infra"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomBytes } from "node:crypto"
import { apiEnvironment, startApi } from "../ApiProcess.ts"
import { startReceiver } from "../chaos/Receiver.ts"
import { countOf } from "../Evidence.ts"
import { authorizedPayment, checkBooks } from "../Flows.ts"
import { call, field } from "../Http.ts"
import { newKey, type Scenario } from "../Scenario.ts"

/** The sender's counter of deliveries it could not sign, from its own /metrics. */
const unopenableCount = (metricsUrl: string) =>
  Effect.map(call(metricsUrl, "GET", ""), (answer) => Number(/^webhook_secrets_unopenable_total (\S+)$/m.exec(answer.text)?.[1] ?? Number.NaN))

/** Polls `condition` every 200 ms, at most `bound_ms`; whether it came true. */
const eventually = (condition: () => boolean, bound_ms: number) =>
  Effect.gen(function* () {
    for (let waited = 0; waited < bound_ms && !condition(); waited += 200) yield* Effect.sleep(200)
    return condition()
  })

export const webhookSecretsKeyMissing: Scenario = {
  name: "webhook-secrets-key-missing",
  summary: "signing secrets sealed under WEBHOOK_SECRETS_KEY, and a webhook sender started without it: nothing unsigned goes out, it counts and names the key; a sender with the key then delivers",
  fast: false,
  run: (ctx) =>
    Effect.gen(function* () {
      const key = randomBytes(32).toString("base64")
      const receiver = yield* startReceiver(7)
      const webhooks = { WEBHOOK_ALLOW_LOOPBACK_HTTP: "true", WEBHOOK_RETRY_SCHEDULE_MS: "0,0,0,0", WEBHOOK_TIMEOUT_MS: "1000" }
      const api = yield* ctx.startApi("api-1", { ...webhooks, WEBHOOK_SECRETS_KEY: key, WEBHOOK_SENDER_ENABLED: "false" })
      const m = yield* ctx.merchant("webhook secrets merchant")
      const sql = yield* SqlClient.SqlClient
      yield* ctx.say.step("register an endpoint (the API has WEBHOOK_SECRETS_KEY): the secret is shown once, stored sealed")
      const created = yield* ctx.post(api, m, "/v1/webhook_endpoints", newKey("endpoint"), { url: receiver.urlFor(1), event_types: ["*"] })
      receiver.setSecret(1, field(created, "secret"))
      const stored = yield* decodeRows(Schema.Struct({ form: Schema.String }))(sql`SELECT left(secret, 27) AS form FROM webhook_endpoint_secrets`)
      yield* ctx.say.evidence("webhook_endpoint_secrets.secret", stored.map((row) => `${row.form}…`))
      yield* ctx.say.expect(stored.length === 1 && stored.every((row) => row.form.startsWith("sealed:v1:")), "the table holds the sealed form, not whsec_…")

      yield* ctx.say.step("a payment is authorized: its events become deliveries; a sender WITHOUT the key starts")
      yield* authorizedPayment(ctx, api, m, 4_200)
      const queued = (n: number) => Effect.map(countOf(sql`SELECT count(*) AS n FROM webhook_deliveries`), (count) => count >= n)
      for (let waited = 0; waited < 30_000 && !(yield* queued(2)); waited += 200) yield* Effect.sleep(200)
      yield* Effect.scoped(Effect.gen(function* () {
        const keyless = yield* startApi("sender-without-key", apiEnvironment(ctx.stack, { ...webhooks, WEBHOOK_SECRETS_KEY: "" }), "webhooks")
        const counted = yield* eventually(() => keyless.output().includes("webhook not sent"), 15_000)
        const unopenable = yield* unopenableCount(keyless.metricsUrl)
        const line = keyless.output().split("\n").find((text) => text.includes("webhook not sent")) ?? ""
        // The key that sealed the secret: its id, the third field of `sealed:v1:<key id>:…`.
        const keyId = stored[0]?.form.split(":")[2] ?? "(none)"
        yield* ctx.say.evidence("its log (the line's reason)", /"reason":"[^"]*"/.exec(line)?.[0] ?? line.slice(0, 400))
        yield* ctx.say.evidence("webhook_secrets_unopenable_total", unopenable)
        yield* ctx.say.expect(counted && unopenable >= 1, "the sender refuses to sign without the key and counts it (WebhookSecretsUnopenable pages)")
        yield* ctx.say.expect(line.includes(keyId), `its log names the key the secret was sealed under (${keyId})`, line.slice(0, 1_000))
        yield* ctx.say.expect(receiver.applied.size === 0 && receiver.refusedSignatures() === 0, "the receiver got nothing: no unsigned or wrongly signed request went out")
      }))

      yield* ctx.say.step("the sender is stopped and started again WITH the key (the leases of its claims expire)")
      const keyed = yield* startApi("sender-with-key", apiEnvironment(ctx.stack, { ...webhooks, WEBHOOK_SECRETS_KEY: key }), "webhooks")
      const delivered = yield* eventually(() => receiver.applied.size >= 2, 45_000)
      yield* ctx.say.evidence("applied by the receiver (signature verified with the secret shown once)", [...receiver.applied.values()].map((applied) => applied.type))
      yield* ctx.say.expect(delivered && receiver.refusedSignatures() === 0, "both events delivered, every signature verified", keyed.output().slice(-1_000))
      yield* checkBooks(ctx)
    })
}
