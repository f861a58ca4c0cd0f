import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Webhook, WebhookVerificationError } from "standardwebhooks"
import { generateSecret, secretPattern, signature, webhookHeaders } from "../src/Signing.ts"

/**
 * Our signatures checked by a receiver written by someone else: the maintained `standardwebhooks`
 * package (the reference implementation of the specification).
 */
const body = '{"id":"0b7f3c2e-2f55-4c44-9b7e-5d0b8f7d3a10","type":"payment_settled","data":{"amount_minor":1050,"currency":"EUR"}}'
const id = "0b7f3c2e-2f55-4c44-9b7e-5d0b8f7d3a10"
const now_s = () => Math.floor(Date.now() / 1_000)

describe("Standard Webhooks signatures", () => {
  it.effect("a secret is whsec_ + base64 of 32 random bytes, different every time", () =>
    Effect.gen(function* () {
      const a = yield* generateSecret
      const b = yield* generateSecret
      assert.match(a, secretPattern)
      assert.strictEqual(Buffer.from(a.slice(6), "base64").length, 32)
      assert.notStrictEqual(a, b)
    }))

  it.effect("standardwebhooks verifies our headers and returns the body", () =>
    Effect.gen(function* () {
      const secret = yield* generateSecret
      const headers = webhookHeaders([secret], id, now_s(), body)
      assert.match(headers["webhook-signature"], /^v1,[A-Za-z0-9+/]{43}=$/)
      assert.deepStrictEqual(new Webhook(secret).verify(body, headers), JSON.parse(body))
      // And the library's own signature is ours, byte for byte.
      const timestamp = new Date(now_s() * 1_000)
      assert.strictEqual(new Webhook(secret).sign(id, timestamp, body), signature(secret, id, now_s(), body))
    }))

  it.effect("a re-serialised body (same JSON, other bytes), another id, another secret or an old timestamp fail", () =>
    Effect.gen(function* () {
      const secret = yield* generateSecret
      const headers = webhookHeaders([secret], id, now_s(), body)
      const reserialised = JSON.stringify(JSON.parse(body), null, 2)
      assert.deepStrictEqual(JSON.parse(reserialised), JSON.parse(body))
      assert.throws(() => new Webhook(secret).verify(reserialised, headers), WebhookVerificationError)
      assert.throws(() => new Webhook(secret).verify(body, { ...headers, "webhook-id": "another" }), WebhookVerificationError)
      const stranger = yield* generateSecret
      assert.throws(() => new Webhook(stranger).verify(body, headers), WebhookVerificationError)
      const old = webhookHeaders([secret], id, now_s() - 10 * 60, body)
      assert.throws(() => new Webhook(secret).verify(body, old), WebhookVerificationError)
    }))

  it.effect("during a rotation one header carries both signatures: a receiver with either secret accepts", () =>
    Effect.gen(function* () {
      const previous = yield* generateSecret
      const current = yield* generateSecret
      const headers = webhookHeaders([current, previous], id, now_s(), body)
      assert.strictEqual(headers["webhook-signature"].split(" ").length, 2)
      assert.deepStrictEqual(new Webhook(previous).verify(body, headers), JSON.parse(body))
      assert.deepStrictEqual(new Webhook(current).verify(body, headers), JSON.parse(body))
      const stranger = yield* generateSecret
      assert.throws(() => new Webhook(stranger).verify(body, headers), WebhookVerificationError)
    }))
})
