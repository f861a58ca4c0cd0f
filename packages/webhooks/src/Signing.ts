import { Effect } from "effect"
import { createHmac, randomBytes } from "node:crypto"

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com, spec v1): the signed content is
 * `{webhook-id}.{webhook-timestamp}.{body}`, the signature `v1,` + base64(HMAC-SHA256(key, content))
 * where the key is the base64-decoded part of the secret after `whsec_`. Several signatures (one
 * per live secret, during a rotation) are separated by spaces in one `webhook-signature` header;
 * a receiver accepts the request when any of them verifies.
 */
export const SECRET_PREFIX = "whsec_"
export const SECRET_BYTES = 32
export const secretPattern = /^whsec_[A-Za-z0-9+/]{43}=$/

/** A fresh secret: `whsec_` + base64 of 32 random bytes. An Effect: it draws randomness. */
export const generateSecret: Effect.Effect<string> = Effect.sync(() => `${SECRET_PREFIX}${randomBytes(SECRET_BYTES).toString("base64")}`)

const keyOf = (secret: string): Buffer => {
  if (!secretPattern.test(secret)) throw new Error("a webhook secret is whsec_ + base64 of 32 bytes")
  return Buffer.from(secret.slice(SECRET_PREFIX.length), "base64")
}

/** One `v1,<base64>` signature of the exact body bytes. */
export const signature = (secret: string, webhookId: string, timestamp_s: number, body: string): string =>
  `v1,${createHmac("sha256", keyOf(secret)).update(`${webhookId}.${timestamp_s}.`).update(body, "utf8").digest("base64")}`

/** The `webhook-signature` header: one signature per secret, space-separated. */
export const signatureHeader = (secrets: ReadonlyArray<string>, webhookId: string, timestamp_s: number, body: string): string => {
  if (secrets.length === 0) throw new Error("signatureHeader: an endpoint always has a current secret")
  return secrets.map((secret) => signature(secret, webhookId, timestamp_s, body)).join(" ")
}

/** The three headers of a webhook request (plus the content type). */
export const webhookHeaders = (secrets: ReadonlyArray<string>, webhookId: string, timestamp_s: number, body: string) => ({
  "content-type": "application/json",
  "webhook-id": webhookId,
  "webhook-timestamp": String(timestamp_s),
  "webhook-signature": signatureHeader(secrets, webhookId, timestamp_s, body)
})
