import { decodeRows } from "@pay/infra"
import { Config, Context, Effect, Layer, Redacted, Result, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto"

/**
 * Webhook signing secrets at rest. HMAC needs the secret itself, so it cannot be hashed like an
 * API key; with `WEBHOOK_SECRETS_KEY` set it is sealed (AES-256-GCM) before it is stored, and a
 * dump of the database no longer lets anyone sign webhooks as us. Without the key the secret is
 * stored as `whsec_…` and the process says so once at start-up (a local stack, the tests).
 *
 * Stored form: `sealed:v1:<key id>:<base64 of IV (12) | ciphertext (50) | tag (16)>`, the key id
 * being the first 16 hex digits of SHA-256 over the key, and the endpoint's id as additional
 * data: a sealed secret copied onto another endpoint's row does not open. The table's CHECK
 * accepts exactly the two forms (migrations/0074).
 */
export class SecretSealingFailed extends Schema.TaggedError<SecretSealingFailed>()("SecretSealingFailed", {
  message: Schema.String
}) {}

export interface SecretBox {
  /** The key's id (what sealed rows name), or null when secrets are stored as they are. */
  readonly keyId: string | null
  /** The form to store for an endpoint's new secret. */
  readonly seal: (secret: string, endpointId: string) => string
  /** The secret of a stored form: sealed under this key (or a previous one), or stored as it is. */
  readonly open: (stored: string, endpointId: string) => Result.Result<string, SecretSealingFailed>
}

const sealedPrefix = "sealed:v1:"
const iv_bytes = 12
const tag_bytes = 16
export const SECRETS_KEY_BYTES = 32

const keyIdOf = (key: Uint8Array): string => createHash("sha256").update(key).digest("hex").slice(0, 16)

const failed = (message: string) => Result.fail(new SecretSealingFailed({ message }))

const keyIdOfStored = (stored: string): string | undefined =>
  stored.startsWith(sealedPrefix) ? stored.slice(sealedPrefix.length, sealedPrefix.length + 16) : undefined

/** No key: secrets stored as they are; a sealed one cannot be opened (the key is missing here). */
export const plaintextBox: SecretBox = {
  keyId: null,
  seal: (secret) => secret,
  open: (stored) => {
    const keyId = keyIdOfStored(stored)
    return keyId === undefined ? Result.succeed(stored) : failed(`the secret is sealed under key ${keyId}, and WEBHOOK_SECRETS_KEY is not set here`)
  }
}

const openWith = (keys: ReadonlyMap<string, Uint8Array>, stored: string, endpointId: string): Result.Result<string, SecretSealingFailed> => {
  const keyId = keyIdOfStored(stored)
  if (keyId === undefined) return Result.succeed(stored)
  const key = keys.get(keyId)
  if (key === undefined) return failed(`the secret is sealed under key ${keyId}, which is not configured here (${[...keys.keys()].join(", ")})`)
  const sealed = Buffer.from(stored.slice(sealedPrefix.length + 17), "base64")
  if (sealed.length <= iv_bytes + tag_bytes) return failed("the sealed secret is truncated")
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, iv_bytes))
    decipher.setAAD(Buffer.from(endpointId, "utf8"))
    decipher.setAuthTag(sealed.subarray(sealed.length - tag_bytes))
    return Result.succeed(Buffer.concat([decipher.update(sealed.subarray(iv_bytes, sealed.length - tag_bytes)), decipher.final()]).toString("utf8"))
  } catch {
    return failed(`the sealed secret does not open under key ${keyId} for endpoint ${endpointId} (altered, or moved from another endpoint)`)
  }
}

/** Seals with `key`; opens what `key` or one of `previous` sealed (a key rotation: `resealSecrets`). */
export const makeSecretBox = (key: Uint8Array, previous: ReadonlyArray<Uint8Array> = []): SecretBox => {
  for (const candidate of [key, ...previous]) {
    if (candidate.length !== SECRETS_KEY_BYTES) throw new RangeError(`a webhook secrets key is ${SECRETS_KEY_BYTES} bytes, got ${candidate.length}`)
  }
  const keyId = keyIdOf(key)
  const keys = new Map([...previous, key].map((candidate) => [keyIdOf(candidate), candidate] as const))
  return {
    keyId,
    seal: (secret, endpointId) => {
      const iv = randomBytes(iv_bytes)
      const cipher = createCipheriv("aes-256-gcm", key, iv)
      cipher.setAAD(Buffer.from(endpointId, "utf8"))
      const ciphertext = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()])
      return `${sealedPrefix}${keyId}:${Buffer.concat([iv, ciphertext, cipher.getAuthTag()]).toString("base64")}`
    },
    open: (stored, endpointId) => openWith(keys, stored, endpointId)
  }
}

const AnswerIdentity = Schema.fromJsonString(Schema.Struct({ id: Schema.String, secret: Schema.String }))
const answerIdentity = Schema.decodeUnknownOption(AnswerIdentity)

/**
 * An endpoint's JSON answer (`{"id": …, …, "secret": …}`) with its sealed `secret` opened: the
 * same bytes but that one string (both forms are plain JSON strings, nothing to escape), so the
 * first answer and every replay of a stored answer are still the same bytes. An answer without a
 * sealed secret is returned as it is.
 */
export const openAnswerSecret = (box: SecretBox, body: string): Result.Result<string, SecretSealingFailed> => {
  if (!body.includes(`"secret":"${sealedPrefix}`)) return Result.succeed(body)
  const answer = answerIdentity(body)
  if (answer._tag === "None") return failed("an answer with a sealed secret is not an endpoint's JSON")
  const { id, secret } = answer.value
  return Result.map(box.open(secret, id), (opened) => body.replace(`"secret":"${secret}"`, `"secret":"${opened}"`))
}

/**
 * The box this process seals and opens with. A service that must be provided, not a reference
 * with a default: a composition that forgot it used to store merchants' signing secrets unsealed
 * without a word (outside code review). Processes provide `WebhookSecretBoxLive` (the keys from the
 * environment, its WARN when none); tests and tools that mean plaintext say so with
 * `WebhookSecretBoxPlaintext`.
 */
export class WebhookSecretBox extends Context.Service<WebhookSecretBox, SecretBox>()("webhooks/WebhookSecretBox") {}

/** Secrets stored as they are: tests and local tools only (a process uses `WebhookSecretBoxLive`). */
export const WebhookSecretBoxPlaintext: Layer.Layer<WebhookSecretBox> = Layer.succeed(WebhookSecretBox, plaintextBox)

const KeyText = Schema.String.check(
  Schema.makeFilter((text: string) => {
    const bytes = Buffer.from(text, "base64")
    return (/^[A-Za-z0-9+/]+={0,2}$/.test(text) && bytes.length === SECRETS_KEY_BYTES) ||
      `must be the base64 of ${SECRETS_KEY_BYTES} random bytes (openssl rand -base64 32)`
  })
)
const keyConfig = (name: string) => Config.schema(KeyText, name).pipe(Config.map((text) => Redacted.make(Buffer.from(text, "base64"))))

/**
 * `WEBHOOK_SECRETS_KEY` (optional; base64 of 32 bytes) and `WEBHOOK_SECRETS_PREVIOUS_KEY`
 * (optional, the key being rotated out: still opens, never seals).
 */
export const SecretsKeyConfig = Config.all({
  key: Config.option(keyConfig("WEBHOOK_SECRETS_KEY")),
  previous: Config.option(keyConfig("WEBHOOK_SECRETS_PREVIOUS_KEY"))
})

const StoredSecret = Schema.Struct({ id: Schema.String, endpoint_id: Schema.String, secret: Schema.String })
const storedSecrets = decodeRows(StoredSecret)
/** Rows re-sealed per statement by `resealSecrets`. */
const resealBatch_rows = 500
/** Bound of `resealSecrets`' rounds: 500 × 200 = 10⁵ secrets per start, the rest at the next. */
const resealRounds_max = 200

/**
 * Brings every stored secret under the current key: those stored as they are (written before
 * the key was set) and those sealed under a previous key. Each row is rewritten only if it still
 * holds what was read (a rotation or deletion meanwhile wins). Run at start-up by the sender.
 */
export const resealSecrets = (box: SecretBox) =>
  Effect.gen(function* () {
    const current = box.keyId
    if (current === null) return 0
    const sql = yield* SqlClient.SqlClient
    let resealed = 0
    let unopened = 0
    let after = "00000000-0000-0000-0000-000000000000"
    for (let round = 0; round < resealRounds_max; round++) {
      const rows = yield* storedSecrets(sql`
        SELECT id::text AS id, endpoint_id, secret FROM webhook_endpoint_secrets
        WHERE secret NOT LIKE ${`${sealedPrefix}${current}:%`} AND id > ${after}::uuid ORDER BY id LIMIT ${resealBatch_rows}`)
      const last = rows.at(-1)
      if (last === undefined) break
      after = last.id
      for (const row of rows) {
        const opened = box.open(row.secret, row.endpoint_id)
        if (Result.isFailure(opened)) {
          unopened++
          continue
        }
        const sealed = box.seal(opened.success, row.endpoint_id)
        const updated = yield* sql`UPDATE webhook_endpoint_secrets SET secret = ${sealed} WHERE id = ${row.id}::uuid AND secret = ${row.secret} RETURNING 1`
        resealed += updated.length
      }
    }
    if (unopened > 0) {
      yield* Effect.logError("webhook secrets: stored secrets that open under no configured key cannot sign; configure the key they name").pipe(
        Effect.annotateLogs({ rows: unopened, key_id: current })
      )
    }
    if (resealed > 0) yield* Effect.logInfo("webhook secrets sealed under the current key").pipe(Effect.annotateLogs({ rows: resealed, key_id: current }))
    return resealed
  }).pipe(Effect.withSpan("webhooks.resealSecrets"))

/** The box from `WEBHOOK_SECRETS_KEY` (and the previous key), or stored as they are, said once. */
export const WebhookSecretBoxLive = Layer.effect(
  WebhookSecretBox,
  Effect.gen(function* () {
    const { key, previous } = yield* SecretsKeyConfig
    if (key._tag === "None") {
      yield* Effect.logWarning("WEBHOOK_SECRETS_KEY is not set: webhook signing secrets are stored unsealed (set it in production: docs/webhooks.md)")
      return plaintextBox
    }
    return makeSecretBox(Redacted.value(key.value), previous._tag === "Some" ? [Redacted.value(previous.value)] : [])
  })
)
