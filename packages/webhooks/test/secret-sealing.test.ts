// Webhook signing secrets at rest: with WEBHOOK_SECRETS_KEY set, the table holds a sealed form
// (AES-256-GCM, the endpoint's id as additional data) that a dump cannot sign with, the sender
// opens it to sign, secrets stored before the key (or under the key being rotated out) are sealed
// under the current key at the sender's start, and the table accepts no third form.
import { assert, describe, it, layer } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { expectSqlRefusal, makeTestDatabase } from "@pay/testkit"
import { ConfigProvider, Effect, Layer, Logger, Metric, Option, Redacted, Result, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { randomBytes } from "node:crypto"
import { Webhook } from "standardwebhooks"
import { WebhookSender } from "../src/DeliveryWorker.ts"
import { WebhookEndpoints } from "../src/Endpoints.ts"
import { defaultSenderOptions, webhookSecretsUnopenable } from "../src/Model.ts"
import { makeSecretBox, openAnswerSecret, plaintextBox, resealSecrets, SecretsKeyConfig, WebhookSecretBox, WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"
import { createMerchant, enqueue, newPaymentId, paymentEvent } from "./support/Fixtures.ts"
import { startReceiver } from "./support/Receiver.ts"

const secret = `whsec_${randomBytes(32).toString("base64")}`
const endpointId = "we_00000000000000000000000a"
/** The table's CHECK (migrations/0074), for the unit tests. */
const storedForms = /^whsec_[A-Za-z0-9+/]{43}=$|^sealed:v1:[0-9a-f]{16}:[A-Za-z0-9+/]{104}$/

describe("SecretSealing: seal and open", () => {
  it("a sealed secret opens for its endpoint only, under its key only, and any altered byte refuses it", () => {
    const key = randomBytes(32)
    const box = makeSecretBox(key)
    const sealed = box.seal(secret, endpointId)
    assert.match(sealed, storedForms)
    assert.isFalse(sealed.includes(secret.slice(6)), "the key material is not in the stored form")
    assert.notStrictEqual(box.seal(secret, endpointId), sealed, "a fresh IV each time")
    assert.deepStrictEqual(box.open(sealed, endpointId), Result.succeed(secret))

    const moved = box.open(sealed, "we_00000000000000000000000b")
    assert.isTrue(Result.isFailure(moved) && moved.failure.message.includes("moved from another endpoint"))
    const flipped = `${sealed.slice(0, -6)}${sealed.at(-6) === "A" ? "B" : "A"}${sealed.slice(-5)}`
    assert.isTrue(Result.isFailure(box.open(flipped, endpointId)), "an altered ciphertext or tag")
    const other = makeSecretBox(randomBytes(32)).open(sealed, endpointId)
    assert.isTrue(Result.isFailure(other) && other.failure.message.includes(`sealed under key ${box.keyId}`))
    const rotated = makeSecretBox(randomBytes(32), [key])
    assert.deepStrictEqual(rotated.open(sealed, endpointId), Result.succeed(secret), "the previous key still opens")

    assert.deepStrictEqual(box.open(secret, endpointId), Result.succeed(secret), "a secret stored before the key: as it is")
    assert.deepStrictEqual(plaintextBox.open(secret, endpointId), Result.succeed(secret))
    const noKey = plaintextBox.open(sealed, endpointId)
    assert.isTrue(Result.isFailure(noKey) && noKey.failure.message.includes("WEBHOOK_SECRETS_KEY is not set"))
    assert.strictEqual(plaintextBox.seal(secret, endpointId), secret)
  })

  it("openAnswerSecret: a stored answer's sealed secret opened in place, every other byte the same; other answers as they are", () => {
    const box = makeSecretBox(randomBytes(32))
    const answer = (value: string, id = endpointId) =>
      JSON.stringify({ id, object: "webhook_endpoint", url: "https://example.com/hook", event_types: ["*"], secret: value, created_at: "2026-12-03T00:00:00.000Z" })
    assert.deepStrictEqual(openAnswerSecret(box, answer(box.seal(secret, endpointId))), Result.succeed(answer(secret)))
    assert.deepStrictEqual(openAnswerSecret(box, answer(secret)), Result.succeed(answer(secret)), "stored before the key: as it is")
    const problem = JSON.stringify({ type: "/docs/problems/invalid_request", status: 400, detail: "url: must use https" })
    assert.deepStrictEqual(openAnswerSecret(box, problem), Result.succeed(problem))
    const moved = openAnswerSecret(box, answer(box.seal(secret, endpointId), "we_00000000000000000000000b"))
    assert.isTrue(Result.isFailure(moved), "a sealed secret moved into another endpoint's answer does not open")
    assert.isTrue(Result.isFailure(openAnswerSecret(plaintextBox, answer(box.seal(secret, endpointId)))), "no key here")
  })

  it.effect("WEBHOOK_SECRETS_KEY: absent or empty is None; anything but the base64 of 32 bytes is a ConfigError naming it", () =>
    Effect.gen(function* () {
      const parse = (env: Record<string, string>) => Effect.result(SecretsKeyConfig.parse(ConfigProvider.fromEnv({ env })))
      for (const env of [{}, { WEBHOOK_SECRETS_KEY: "" }]) {
        const absent = yield* parse(env)
        assert.isTrue(Result.isSuccess(absent) && Option.isNone(absent.success.key), `unset: ${JSON.stringify(env)}`)
      }
      const key = randomBytes(32)
      const given = yield* parse({ WEBHOOK_SECRETS_KEY: key.toString("base64") })
      assert.isTrue(Result.isSuccess(given) && Option.isSome(given.success.key) && Buffer.from(Redacted.value(given.success.key.value)).equals(key))
      for (const bad of ["short", randomBytes(16).toString("base64"), `${key.toString("base64")}!`]) {
        const refused = yield* parse({ WEBHOOK_SECRETS_KEY: bad })
        assert.isTrue(Result.isFailure(refused), `refused: ${JSON.stringify(bad)}`)
        if (Result.isFailure(refused)) assert.include(String(refused.failure), "WEBHOOK_SECRETS_KEY")
      }
    }))
})

const key = randomBytes(32)
const box = makeSecretBox(key)
const senderOptions = { ...defaultSenderOptions, timeout_ms: 1_000, retrySchedule_ms: [0, 0], allowLoopbackHttp: true }
const TestLayer = Layer.mergeAll(WebhookEndpoints.layerWith({ allowLoopbackHttp: true }), WebhookSender.layerWith(senderOptions)).pipe(
  Layer.provide(Layer.succeed(WebhookSecretBox, box)),
  Layer.provideMerge(makeTestDatabase({ maxConnections: 4 }))
)
const storedRows = decodeRows(Schema.Struct({ secret: Schema.String }))
const storedOf = (id: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return (yield* storedRows(sql`SELECT secret FROM webhook_endpoint_secrets WHERE endpoint_id = ${id} ORDER BY created_at`)).map((row) => row.secret)
  })

layer(TestLayer, { excludeTestServices: true })("sealed secrets in Postgres, a real sender and receiver", (it) => {
  it.effect("the table holds the sealed form; the sender opens it and the receiver verifies with the secret shown once", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ({ status: 204 }))
      const merchantId = yield* createMerchant
      const created = yield* (yield* WebhookEndpoints).create(merchantId, { url: receiver.url, event_types: ["*"] })
      const [stored] = yield* storedOf(created.endpoint.id)
      assert.isTrue(stored?.startsWith(`sealed:v1:${box.keyId}:`), stored)
      assert.isFalse(stored?.includes(created.secret.slice(6)))
      yield* enqueue(paymentEvent(merchantId, yield* newPaymentId, 1))
      assert.strictEqual(yield* (yield* WebhookSender).drain(10), 1)
      const [got] = receiver.received
      if (got === undefined) return assert.fail("nothing received")
      new Webhook(created.secret).verify(got.body, { "webhook-id": got.id, "webhook-timestamp": got.timestamp, "webhook-signature": got.signature })
    })))

  it.effect("secrets stored before the key, or under the key rotated out, are sealed under the current key by resealSecrets, and still sign", () =>
    Effect.scoped(Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* createMerchant
      const created = yield* (yield* WebhookEndpoints).create(merchantId, { url: "https://example.com/hook", event_types: ["*"] })
      // As a server without the key wrote it.
      yield* sql`UPDATE webhook_endpoint_secrets SET secret = ${created.secret} WHERE endpoint_id = ${created.endpoint.id}`
      assert.isAtLeast(yield* resealSecrets(box), 1)
      const [sealed] = yield* storedOf(created.endpoint.id)
      assert.isTrue(sealed?.startsWith(`sealed:v1:${box.keyId}:`), sealed)
      assert.deepStrictEqual(box.open(sealed ?? "", created.endpoint.id), Result.succeed(created.secret))
      assert.strictEqual(yield* resealSecrets(box), 0, "nothing left to seal")

      // Rotation: the new key seals, the old one only opens.
      const next = makeSecretBox(randomBytes(32), [key])
      assert.isAtLeast(yield* resealSecrets(next), 1)
      const [resealed] = yield* storedOf(created.endpoint.id)
      assert.isTrue(resealed?.startsWith(`sealed:v1:${next.keyId}:`), resealed)
      assert.deepStrictEqual(next.open(resealed ?? "", created.endpoint.id), Result.succeed(created.secret))
      assert.isTrue(Result.isFailure(box.open(resealed ?? "", created.endpoint.id)), "the old key alone no longer opens it")
    })))

  it.effect("a sender without the key sends nothing for a sealed secret: the delivery stays pending, counted, and goes out once a sender with the key runs", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ({ status: 204 }))
      const merchantId = yield* createMerchant
      const created = yield* (yield* WebhookEndpoints).create(merchantId, { url: receiver.url, event_types: ["*"] })
      yield* enqueue(paymentEvent(merchantId, yield* newPaymentId, 1))
      const before = (yield* Metric.value(webhookSecretsUnopenable)).count
      // A sender with no key, as a process without WEBHOOK_SECRETS_KEY.
      const keyless = yield* Effect.provide(
        Effect.gen(function* () {
          return yield* WebhookSender
        }),
        WebhookSender.layerWith({ ...senderOptions, timeout_ms: 200 }).pipe(Layer.provide(WebhookSecretBoxPlaintext))
      )
      const logged: Array<Record<string, unknown>> = []
      const capture = Logger.layer([Logger.make((options) => {
        const line = Logger.formatStructured.log(options)
        logged.push({ level: line.level, message: line.message, ...line.annotations })
      })])
      yield* keyless.drain(1).pipe(Effect.provide(capture))
      assert.strictEqual(receiver.received.length, 0, "nothing sent unsigned or wrongly signed")
      const notSent = logged.find((line) => JSON.stringify(line["message"]).includes("webhook not sent"))
      assert.strictEqual(notSent?.["level"], "ERROR", JSON.stringify(logged).slice(0, 500))
      assert.strictEqual(notSent?.["webhook_endpoint_id"], created.endpoint.id, "the line names the endpoint")
      assert.include(JSON.stringify(notSent?.["message"]), `sealed under key ${box.keyId}`, "and the key it needs")
      assert.strictEqual((yield* Metric.value(webhookSecretsUnopenable)).count, before + 1)
      const sql = yield* SqlClient.SqlClient
      // The lease would bring it back; here it is expired at once.
      yield* sql`UPDATE webhook_deliveries SET lease_token = NULL, lease_expires_at = NULL WHERE endpoint_id = ${created.endpoint.id}`
      assert.strictEqual(yield* (yield* WebhookSender).drain(10), 1)
      const [got] = receiver.received
      if (got === undefined) return assert.fail("nothing received")
      new Webhook(created.secret).verify(got.body, { "webhook-id": got.id, "webhook-timestamp": got.timestamp, "webhook-signature": got.signature })
    })))

  it.effect("raw SQL: neither a made-up sealed form nor any other text is accepted as a secret (CHECK)", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const merchantId = yield* createMerchant
      const created = yield* (yield* WebhookEndpoints).create(merchantId, { url: "https://example.com/hook", event_types: ["*"] })
      const form = { code: "23514", constraint: "webhook_endpoint_secrets_secret_form" }
      const store = (value: string) => sql`UPDATE webhook_endpoint_secrets SET secret = ${value} WHERE endpoint_id = ${created.endpoint.id}`
      yield* expectSqlRefusal(store("sealed:v1:zzzz:abc"), form)
      yield* expectSqlRefusal(store(`sealed:v1:${box.keyId}:${"A".repeat(103)}`), form)
      yield* expectSqlRefusal(store("hunter2"), form)
    }))
})
