import { assert, layer } from "@effect/vitest"
import { decodeRows } from "@pay/infra"
import { acquireTestDatabase } from "@pay/testkit"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"
import { SqlClient } from "effect/sql"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Webhook } from "standardwebhooks"
import { WebhookSender } from "../src/DeliveryWorker.ts"
import { WebhookEndpoints } from "../src/Endpoints.ts"
import { defaultSenderOptions } from "../src/Model.ts"
import { createMerchant, enqueue, newPaymentId, paymentEvent } from "./support/Fixtures.ts"
import { eventually, startReceiver } from "./support/Receiver.ts"

const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url))

/**
 * The sender process's request timeout: longer than the time to notice the held request and
 * kill it; its lease is 2 x this + 5 s (leaseOf_ms), which the resend waits out.
 */
const processTimeout_ms = 2_000

const statusRows = decodeRows(Schema.Struct({ status: Schema.String }))
const delivered = (eventId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* statusRows(sql`SELECT status FROM webhook_deliveries WHERE event_id = ${eventId}::uuid`)
    return rows[0]?.status === "delivered"
  })
const attemptRows = decodeRows(Schema.Struct({ attempt_number: Schema.Int, outcome: Schema.NullOr(Schema.String) }))

/**
 * kill -9 of the sender while the receiver holds its request: nothing recorded the outcome, the
 * lease expires, and another sender delivers the same bytes with the same webhook-id.
 */
/** `node packages/webhooks/src/main.ts` on the test database, loopback allowed; killed by its pid only. */
const spawnSender = (databaseUrl: string, timeout_ms = processTimeout_ms) => {
  const child = spawn(process.execPath, ["packages/webhooks/src/main.ts"], {
    cwd: repositoryRoot,
    env: { ...process.env, DATABASE_URL: databaseUrl, WEBHOOK_ALLOW_LOOPBACK_HTTP: "true", WEBHOOK_TIMEOUT_MS: String(timeout_ms), WEBHOOK_POLL_INTERVAL_MS: "50", DATABASE_POOL_SIZE: "2" },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  return { process: child, exited, output: () => output }
}

/** The test database's URL, for the sender process. */
class DatabaseUrlTag extends Context.Service<DatabaseUrlTag, string>()("webhooks-test/DatabaseUrl") {}

const TestLayer = Layer.unwrap(Effect.gen(function* () {
  const database = yield* acquireTestDatabase
  const client = PgClient.layer({ url: Redacted.make(database.url), maxConnections: 4 })
  return Layer.mergeAll(
    WebhookEndpoints.layerWith({ allowLoopbackHttp: true }),
    WebhookSender.layerWith({ ...defaultSenderOptions, timeout_ms: 1_000, allowLoopbackHttp: true })
  ).pipe(Layer.provideMerge(client), Layer.provideMerge(Layer.succeed(DatabaseUrlTag, database.url)))
}))


layer(TestLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true })("webhook sender crash (a real process, kill -9)", (it) => {
  it.effect("killed mid-request: after its lease, the delivery is sent again with the same webhook-id, and both attempts are on record", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver((request) => (request.seenBefore === 0 ? "hold" : { status: 200 }))
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      const { secret } = yield* endpoints.create(merchantId, { url: receiver.url, event_types: ["*"] })
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)

      const child = spawnSender(yield* DatabaseUrlTag)
      const output = child.output
      const exited = child.exited
      yield* Effect.addFinalizer(() => Effect.sync(() => child.process.kill("SIGKILL")))

      yield* eventually(`the sender process's first request (output: ${output().slice(-2_000)})`, () => receiver.received.length === 1, 30_000)
      child.process.kill("SIGKILL")
      yield* Effect.promise(() => exited)

      const sql = yield* SqlClient.SqlClient
      const afterCrash = yield* attemptRows(sql`SELECT attempt_number, outcome FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.event_id = ${event.eventId}::uuid`)
      assert.deepStrictEqual(afterCrash, [{ attempt_number: 1, outcome: null }], "the cut attempt is on record, without an outcome")

      // Another sender (this test's): nothing is due until the dead sender's lease expires. It
      // drains until the delivery is recorded as delivered (never interrupted mid-request).
      const sender = yield* WebhookSender
      const deadline = Date.now() + 60_000
      while (!(yield* delivered(event.eventId))) {
        if (Date.now() > deadline) return assert.fail(`not delivered after the lease; received ${receiver.received.length}`)
        yield* sender.drain(5)
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 200)))
      }
      assert.strictEqual(receiver.received.length, 2)
      const [first, second] = receiver.received
      assert.strictEqual(first?.id, event.eventId)
      assert.strictEqual(second?.id, event.eventId, "the same webhook-id: the receiver deduplicates on it")
      assert.strictEqual(second?.body, first?.body, "the same bytes")
      assert.deepInclude(new Webhook(secret).verify(second?.body ?? "", { "webhook-id": second?.id ?? "", "webhook-timestamp": second?.timestamp ?? "", "webhook-signature": second?.signature ?? "" }), { id: event.eventId })
      const attempts = yield* attemptRows(sql`SELECT attempt_number, outcome FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.event_id = ${event.eventId}::uuid ORDER BY attempt_number`)
      assert.deepStrictEqual(attempts, [{ attempt_number: 1, outcome: null }, { attempt_number: 2, outcome: "delivered" }])
    })), { timeout: 120_000 })

  it.effect("SIGTERM mid-request: the sender waits for the answer, records it, then exits (no resend)", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ({ status: 200, delay_ms: 1_500 }))
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      yield* endpoints.create(merchantId, { url: receiver.url, event_types: ["*"] })
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      yield* enqueue(event)
      // A request timeout well above the receiver's 1.5 s: with the 2 s of the kill test, a loaded
      // machine (the answer read late) recorded a timeout instead of the answer, a flake.
      const child = spawnSender(yield* DatabaseUrlTag, 8_000)
      yield* Effect.addFinalizer(() => Effect.sync(() => child.process.kill("SIGKILL")))
      yield* eventually("the sender process's request", () => receiver.received.length === 1, 30_000)
      child.process.kill("SIGTERM")
      const code = yield* Effect.promise(() => child.exited)
      assert.strictEqual(code, 0, `a clean stop is exit 0 (it was 130); output: ${child.output().slice(-2_000)}`)
      assert.isTrue(yield* delivered(event.eventId), `recorded before exiting; output: ${child.output().slice(-2_000)}`)
      const sql = yield* SqlClient.SqlClient
      const attempts = yield* attemptRows(sql`SELECT attempt_number, outcome FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.event_id = ${event.eventId}::uuid`)
      assert.deepStrictEqual(attempts, [{ attempt_number: 1, outcome: "delivered" }])
      assert.strictEqual(receiver.received.length, 1)
    })), { timeout: 60_000 })
})
